"""benchmarks/sticker_residue.py: the patches' colours left in a cleaned dataset, beside raw and clean images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd

from benchmark_module import load_benchmark
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.images import save_png
from dermclean.data.manifest import write_manifest

SKIN = (200, 150, 120)


def _image(disc: tuple[int, int, int] | None) -> np.ndarray:
    image = np.zeros((32, 32, 3), np.uint8) + np.array(SKIN, np.uint8)
    if disc is not None:
        cv2.circle(image, (24, 16), 8, disc, -1)
    return image


def _dataset(root, images: dict[str, np.ndarray], patches: dict[str, int]) -> None:
    rows = []
    for name, image in images.items():
        save_png(root / "images" / f"{name}.png", image)
        rows.append({"image_id": name, "image_path": f"images/{name}.png", "diagnosis": "nevus", "melanoma": 0,
                     **{f: 0 for f in ARTIFACT_FLAGS}, "patches": patches[name], "split": "test", "source": "t"})
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")


def test_counts_orange_and_blue_discs_and_what_cleaning_left(tmp_path, capsys):
    labels = {"orange": 1, "blue": 1, "skin": 0}
    _dataset(tmp_path / "raw", {"orange": _image((240, 130, 30)), "blue": _image((40, 110, 220)), "skin": _image(None)},
             labels)
    _dataset(tmp_path / "half", {"orange": _image(None), "blue": _image((40, 110, 220)), "skin": _image(None)}, labels)
    out = tmp_path / "residue.json"
    assert load_benchmark("sticker_residue").main([
        "--manifest", str(tmp_path / "raw" / "manifest.csv"), "--cleaned", f"half={tmp_path / 'half'}",
        "--out", str(out)]) == 0
    groups = json.loads(out.read_text())["groups"]
    disc = np.pi * 8 ** 2 / 32 ** 2  # one disc's share of an image, two images in the group
    raw, half = groups["patches"]["raw"], groups["patches"]["half"]
    assert raw["n_images"] == 2 and abs(raw["orange"] - disc / 2) < 0.02 and abs(raw["blue"] - disc / 2) < 0.02
    assert half["orange"] == 0.0 and half["blue"] == raw["blue"] and half["images_blue_over_half_percent"] == 1
    assert groups["clean"]["raw"] == {"n_images": 1, "orange": 0.0, "blue": 0.0, "images_orange_over_half_percent": 0,
                                      "images_blue_over_half_percent": 0}
    assert load_benchmark("sticker_residue").main([
        "--manifest", str(tmp_path / "raw" / "manifest.csv"), "--cleaned", str(tmp_path / "half"),
        "--out", str(tmp_path / "other.json")]) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err and not (tmp_path / "other.json").exists()
