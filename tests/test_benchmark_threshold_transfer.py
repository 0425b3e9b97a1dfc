"""benchmarks/threshold_transfer.py: each threshold rule fitted on one set of clean images, measured on another."""

from __future__ import annotations

import json

import pytest

from benchmark_module import REPO, load_benchmark
from dermclean.data.manifest import read_manifest, write_manifest
from test_benchmark_lofo_fusion import setup_models


def _run(root, *extra):
    argv = ["--params", str(REPO / "params.yaml"), "--profile", "tiny", "--manifest", str(root / "manifest.csv"),
            "--segment", str(root / "seg0"), "--n-painted", "1", "--device", "cpu", *extra]
    assert load_benchmark("threshold_transfer").main(argv) == 0


def test_halvings_and_test_report_both_rules_with_their_cost(tmp_path):
    setup_models(tmp_path, n_val=6, n_test=4)
    _run(tmp_path, "--halvings", "3", "--out", str(tmp_path / "val.json"))
    val = json.loads((tmp_path / "val.json").read_text())
    assert (val["n_val"], val["n_target"], val["n_painted"], val["fusion"]) == (6, 6, 17, None)
    pixels, bound = val["rules"]["pixels"], val["rules"]["upper_bound"]
    assert bound["threshold"] >= pixels["threshold"]  # the bound only raises the threshold
    assert bound["recall"] <= pixels["recall"] and bound["fit_share"] <= pixels["fit_share"] <= 0.01
    assert 0.0 <= pixels["over_budget"] <= 1.0 and pixels["flagged_share_q90"] >= 0.0
    manifest = read_manifest(tmp_path / "manifest.csv")
    manifest.loc[manifest["image_id"] == "s9", "hair"] = 1  # one hairy clean test image
    write_manifest(manifest, tmp_path / "manifest.csv")
    _run(tmp_path, "--imagecond", str(tmp_path / "imagecond"), "--split", "test", "--out", str(tmp_path / "t.json"))
    test = json.loads((tmp_path / "t.json").read_text())
    assert (test["n_val"], test["n_target"], test["fusion"]["rule"]) == (6, 4, "mean")
    assert "over_budget" not in test["rules"]["pixels"]  # fitted once on every clean validation image
    assert test["rules"]["upper_bound"]["threshold"] >= test["rules"]["pixels"]["threshold"]
    for rule in ("pixels", "upper_bound"):
        groups = test["rules"][rule]["by_effect"]
        assert {k: g["images"] for k, g in groups.items()} == {"all": 4, "none": 3, "hair": 1}
        assert groups["all"]["flagged_share"] == pytest.approx(test["rules"][rule]["flagged_share"])
        assert groups["all"]["flagged_share"] == pytest.approx(
            (3 * groups["none"]["flagged_share"] + groups["hair"]["flagged_share"]) / 4)
