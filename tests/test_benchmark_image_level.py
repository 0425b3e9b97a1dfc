"""benchmarks/image_level.py on a 24-image manifest: both models train from the params profile, score val and test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from PIL import Image

from dermclean.data.manifest import write_manifest
from benchmark_module import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def _manifest(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(24):
        kind = i % 4  # 0 clean, 1 ruler, 2 ink, 3 patches: every split holds each type and clean images
        flags = [int(kind == 1), int(kind == 2), int(kind == 3)]
        img = rng.integers(100, 200, (40, 40, 3), dtype=np.uint8)
        if flags[0]:
            img[30:34, :, :] = 20
        Image.fromarray(img).save(tmp_path / "images" / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "image_path": f"images/im{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     "ruler": flags[0], "ink": flags[1], "patches": flags[2], "hair": 0, "dark_corner": 0,
                     "gel_bubble": 0, "gel_border": 0, "split": ("train", "val", "test")[i // 8 % 3],
                     "source": "test"})
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    return tmp_path / "manifest.csv"


def _bench():
    return load_benchmark("image_level")


# quick's classifier (depth 4, 2 blocks, BatchNorm) admits both layouts; 64 px and 2 steps keep it fast.
@pytest.mark.parametrize("argv", [["--model", "noisy", "--arch", "resnet", "--width", "8"],
                                  ["--model", "noisy", "--arch", "preact", "--width", "8"],
                                  ["--model", "supervised"]])
def test_image_level_benchmark_runs_and_reports_both_splits(tmp_path, argv):
    out, probs_out = tmp_path / "result.json", tmp_path / "probs.csv"
    manifest = _manifest(tmp_path)
    assert _bench().main(["--params", str(REPO / "params.yaml"), "--profile", "quick",
                          "--manifest", str(manifest), *argv, "--input-size", "64", "--steps", "2",
                          "--eval-every", "1", "--threads", "1", "--device", "cpu", "--out", str(out),
                          "--probs-out", str(probs_out)]) == 0
    result = json.loads(out.read_text())
    assert [row["step"] for row in result["curve"]] == [1]
    assert result["profile"] == "quick" and result["recipe"]["steps"] == 2
    if argv[1] == "noisy":  # the profile's layout, with the command line's overrides
        assert result["classifier"]["arch"] == argv[3] and result["classifier"]["width"] == 8
        assert result["classifier"]["blocks"] == 2 and result["classifier"]["input_scale"] == 1
        assert result["recipe"]["t_zero_fraction"] == 0.5 and result["recipe"]["max_timestep"] == 400
    for split in ("val", "test"):
        figures = result[split]
        assert figures["images"] == 8
        for key in ("any", "ruler", "ink", "patches"):
            assert 0.0 <= figures[key] <= 1.0 and not math.isnan(figures[key])
    # the per-image probabilities reproduce the reported figures, image by image from the manifest's labels
    probs = pd.read_csv(probs_out).merge(pd.read_csv(manifest), on=["image_id", "split"], suffixes=("", "_label"))
    for split in ("val", "test"):
        rows = probs[probs["split"] == split]
        assert sorted(rows["image_id"]) == sorted(pd.read_csv(manifest).query("split == @split")["image_id"])
        p_any = 1 - np.prod(1 - rows[["ruler", "ink", "patches"]].to_numpy(), axis=1)
        has = rows[["ruler_label", "ink_label", "patches_label"]].to_numpy().any(axis=1)
        assert roc_auc_score(has, p_any) == pytest.approx(result[split]["any"], abs=1e-6)


def test_image_level_benchmark_refuses_a_bad_input_size_or_layout(tmp_path):
    manifest = str(_manifest(tmp_path))
    params = str(REPO / "params.yaml")
    with pytest.raises(SystemExit):  # not a multiple of data.image_size
        _bench().main(["--params", params, "--profile", "quick", "--manifest", manifest, "--input-size", "100"])
    with pytest.raises(SystemExit):  # tiny's classifier (depth 3, GroupNorm) has no torchvision layout
        _bench().main(["--params", params, "--profile", "tiny", "--manifest", manifest, "--arch", "resnet"])
