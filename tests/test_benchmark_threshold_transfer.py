"""benchmarks/threshold_transfer.py: each threshold rule fitted on one set of clean images, measured on another."""

from __future__ import annotations

import json

import pandas as pd
import torch

from benchmark_module import REPO, load_benchmark
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.images import save_png
from dermclean.data.manifest import write_manifest
from dermclean.diffusion.unet import DermUNet
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.segment.model import SEGMENTER_KIND, Segmenter, SegmenterConfig
from dermclean.modelio import save_model_dir
from test_removal_imagecond import skin_images


def _setup(root):
    rows = []
    for i, img in enumerate(skin_images(10, size=40, seed=4)):
        save_png(root / "images" / f"s{i}.png", img)
        rows.append({"image_id": f"s{i}", "image_path": f"images/s{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     **{f: 0 for f in ARTIFACT_FLAGS}, "split": "val" if i < 6 else "test", "source": "test"})
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    torch.manual_seed(0)
    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16])
    save_model_dir(root / "imagecond", kind="unet", config=cfg, module=DermUNet(cfg), meta={})
    seg = SegmenterConfig(image_size=32, widths=[4, 8])
    save_model_dir(root / "seg", kind=SEGMENTER_KIND, config=seg, module=Segmenter(seg))


def _run(root, *extra):
    argv = ["--params", str(REPO / "params.yaml"), "--profile", "tiny", "--manifest", str(root / "manifest.csv"),
            "--segment", str(root / "seg"), "--n-painted", "1", "--device", "cpu", *extra]
    assert load_benchmark("threshold_transfer").main(argv) == 0


def test_halvings_and_test_report_both_rules_with_their_cost(tmp_path):
    _setup(tmp_path)
    _run(tmp_path, "--halvings", "3", "--out", str(tmp_path / "val.json"))
    val = json.loads((tmp_path / "val.json").read_text())
    assert (val["n_val"], val["n_target"], val["n_painted"], val["fusion"]) == (6, 6, 17, None)
    pixels, bound = val["rules"]["pixels"], val["rules"]["upper_bound"]
    assert bound["threshold"] >= pixels["threshold"]  # the bound only raises the threshold
    assert bound["recall"] <= pixels["recall"] and bound["fit_share"] <= pixels["fit_share"] <= 0.01
    assert 0.0 <= pixels["over_budget"] <= 1.0 and pixels["flagged_share_q90"] >= 0.0
    _run(tmp_path, "--imagecond", str(tmp_path / "imagecond"), "--split", "test", "--out", str(tmp_path / "t.json"))
    test = json.loads((tmp_path / "t.json").read_text())
    assert (test["n_val"], test["n_target"], test["fusion"]["rule"]) == (6, 4, "mean")
    assert "over_budget" not in test["rules"]["pixels"]  # fitted once on every clean validation image
    assert test["rules"]["upper_bound"]["threshold"] >= test["rules"]["pixels"]["threshold"]
