"""benchmarks/lofo_imagecond.py: a fold's families held out of training and flagged in the result, the
pipeline's styles recipe with every family held out, on four 32 px images and a 2-step model."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from benchmark_module import REPO, load_benchmark
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.families import FAMILIES, family_names, fold_exclusion
from dermclean.data.images import save_png
from dermclean.data.manifest import write_manifest
from dermclean.modelio import read_model_config
from test_removal_imagecond import skin_images


def _setup(root):
    rows = []
    for i, img in enumerate(skin_images(6, size=32, seed=4)):
        split = "train" if i < 3 else "val"
        save_png(root / "images" / f"s{i}.png", img)
        rows.append({"image_id": f"s{i}", "image_path": f"images/s{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     **{f: 0 for f in ARTIFACT_FLAGS}, "split": split, "source": "test"})
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["data"]["image_size"] = 16
    params["imagecond"]["unet"]["block_out_channels"] = [8, 16]
    params["imagecond"]["train"] = {**params["imagecond"]["train"], "steps": 2, "batch_size": 2,
                                    "checkpoint_every": 1}
    params["imagecond"]["sample"] = {"steps": 1, "noise_level": None}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _run(root, *extra):
    out = root / f"result{len(list(root.glob('result*')))}.json"
    argv = ["--params", str(root / "params.yaml"), "--profile", "tiny", "--manifest", str(root / "manifest.csv"),
            "--n-images", "2", "--device", "cpu", "--out", str(out), *extra]
    assert load_benchmark("lofo_imagecond").main(argv) == 0
    return json.loads(out.read_text())


def test_a_fold_is_held_out_of_training_and_marked_in_the_result(tmp_path):
    _setup(tmp_path)
    run = _run(tmp_path, "--fold", "1", "--work", str(tmp_path / "f1"))
    held = family_names(fold_exclusion(1))
    assert run["painter"] == "families" and run["train_steps"] == 2 and run["train_images"] == 3
    assert {f"{r['kind']}/{r['family']}" for r in run["families"] if r["held_out"]} == set(held)
    assert len(run["families"]) == len(family_names(FAMILIES))
    model = read_model_config(tmp_path / "f1" / "model")
    assert model["meta"]["exclude_families"] == held and model["meta"]["fold"] == 1
    styles = _run(tmp_path, "--painter", "styles", "--work", str(tmp_path / "styles"))
    assert all(r["held_out"] for r in styles["families"])  # the pipeline's recipe paints no family
    assert read_model_config(tmp_path / "styles" / "model")["meta"]["painter"] == "styles"
