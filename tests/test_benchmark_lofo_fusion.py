"""benchmarks/lofo_fusion.py: fused maps per fold, and the single maps' ranking at full weight."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark_module import REPO, load_benchmark
from dermclean.config import load_params
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.families import family_names, fold_exclusion
from dermclean.data.images import save_png
from dermclean.data.manifest import write_manifest
from dermclean.detection.config import imagecond_detection_config
from dermclean.detection.storage import build_detector
from dermclean.detection.family_eval import clean_split_images, evaluate_families
from dermclean.diffusion.unet import DermUNet
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.segment.model import SEGMENTER_KIND, Segmenter, SegmenterConfig
from dermclean.modelio import save_model_dir
from test_removal_imagecond import skin_images


def setup_models(root, n_val: int = 4, n_test: int = 0):
    """``n_val`` clean validation and ``n_test`` clean test images in ``root/manifest.csv``, an untrained
    image-conditioned model (``root/imagecond``) and two untrained segmenters (``root/seg0``, ``root/seg1``)."""
    rows = []
    for i, img in enumerate(skin_images(n_val + n_test, size=40, seed=3)):
        save_png(root / "images" / f"s{i}.png", img)
        rows.append({"image_id": f"s{i}", "image_path": f"images/s{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     **{f: 0 for f in ARTIFACT_FLAGS}, "split": "val" if i < n_val else "test", "source": "test"})
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    torch.manual_seed(0)
    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16])
    save_model_dir(root / "imagecond", kind="unet", config=cfg, module=DermUNet(cfg), meta={})
    for fold in (0, 1):
        seg = SegmenterConfig(image_size=32, widths=[4, 8])
        save_model_dir(root / f"seg{fold}", kind=SEGMENTER_KIND, config=seg, module=Segmenter(seg))


def test_each_fold_scores_its_own_held_out_families_and_full_weight_ranks_as_one_map(tmp_path):
    setup_models(tmp_path)
    out = tmp_path / "fusion"
    assert load_benchmark("lofo_fusion").main([
        "--params", str(REPO / "params.yaml"), "--profile", "tiny", "--manifest", str(tmp_path / "manifest.csv"),
        "--imagecond", str(tmp_path / "imagecond"), "--segment", str(tmp_path / "seg0"), str(tmp_path / "seg1"),
        "--fusions", "mean:1", "mean:0.5", "--skip", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mean0.5_f0.json", "mean0.5_f1.json", "mean1_f0.json",
                                                     "mean1_f1.json"]
    for fold in (0, 1):
        run = json.loads((out / f"mean0.5_f{fold}.json").read_text())
        assert run["n_images"] == 3 and run["skip"] == 1 and run["weight"] == 0.5
        held = {f"{r['kind']}/{r['family']}" for r in run["families"] if r["held_out"]}
        assert held == set(family_names(fold_exclusion(fold)))
    # at full weight the fused map ranks pixels as the image-conditioned map alone does (up to the float32
    # rounding of the rarity: this untrained model's map values lie within a few float32 steps of each other)
    params = load_params(REPO / "params.yaml", profile="tiny")
    alone = build_detector(detector_kind="imagecond", unet_dir=tmp_path / "imagecond",
                           config=imagecond_detection_config(params), device="cpu")
    images = clean_split_images(tmp_path / "manifest.csv", "val")[1:]
    expected = {r.family: r.pixel_ap for r in evaluate_families(alone, images, seed=0).results}
    fused = json.loads((out / "mean1_f0.json").read_text())["families"]
    assert {r["family"]: r["pixel_ap"] for r in fused} == pytest.approx(expected, abs=1e-3)
    assert np.isfinite([r["pixel_ap"] for r in fused]).all()


def test_a_bad_fusion_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="expected mean:W"):
        load_benchmark("lofo_fusion").main(["--imagecond", "x", "--segment", "a", "b", "--fusions", "median",
                                            "--out", str(tmp_path / "o")])


def test_a_joined_segment_entry_is_saved_once_as_an_ensemble(tmp_path):
    setup_models(tmp_path)
    out = tmp_path / "fusion"
    joined = f"{tmp_path / 'seg0'}+{tmp_path / 'seg1'}"
    argv = ["--params", str(REPO / "params.yaml"), "--profile", "tiny", "--manifest", str(tmp_path / "manifest.csv"),
            "--imagecond", str(tmp_path / "imagecond"), "--fusions", "mean:0", "--n-images", "1", "--device", "cpu",
            "--out", str(out)]
    bench = load_benchmark("lofo_fusion")
    assert bench.main([*argv, "--segment", joined, str(tmp_path / "seg1")]) == 0
    config = json.loads((out / "ensemble_0" / "config.json").read_text())
    assert config["config"]["members"] == 2
    assert config["meta"]["joined_from"] == [str(tmp_path / "seg0"), str(tmp_path / "seg1")]
    assert not (out / "ensemble_1").exists()
    assert bench.main([*argv, "--segment", joined, str(tmp_path / "seg1")]) == 0  # a rerun reuses it
    with pytest.raises(SystemExit, match="holds the ensemble of"):
        bench.main([*argv, "--segment", f"{tmp_path / 'seg1'}+{tmp_path / 'seg0'}", str(tmp_path / "seg1")])


def test_two_imagecond_models_serve_their_own_folds_and_the_rules_join_as_a_third_map(tmp_path):
    setup_models(tmp_path)
    torch.manual_seed(1)
    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16])
    save_model_dir(tmp_path / "imagecond1", kind="unet", config=cfg, module=DermUNet(cfg), meta={})
    argv = ["--params", str(REPO / "params.yaml"), "--profile", "tiny", "--manifest", str(tmp_path / "manifest.csv"),
            "--imagecond", str(tmp_path / "imagecond"), str(tmp_path / "imagecond1"),
            "--segment", str(tmp_path / "seg0"), str(tmp_path / "seg1"), "--fusions", "mean:1", "--skip", "1",
            "--device", "cpu"]
    bench = load_benchmark("lofo_fusion")
    assert bench.main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert bench.main([*argv, "--classical", "1", "--out", str(tmp_path / "rules")]) == 0
    params = load_params(REPO / "params.yaml", profile="tiny")
    images = clean_split_images(tmp_path / "manifest.csv", "val")[1:]
    per_fold = []
    for fold, name in enumerate(("imagecond", "imagecond1")):
        alone = build_detector(detector_kind="imagecond", unet_dir=tmp_path / name,
                               config=imagecond_detection_config(params), device="cpu")
        expected = {r.family: r.pixel_ap for r in evaluate_families(alone, images, seed=0).results}
        plain = json.loads((tmp_path / "plain" / f"mean1_f{fold}.json").read_text())
        assert plain["classical"] is None and plain["classical_calibrations"] is None
        assert {r["family"]: r["pixel_ap"] for r in plain["families"]} == pytest.approx(expected, abs=1e-3)
        rules = json.loads((tmp_path / "rules" / f"mean1_c1_f{fold}.json").read_text())
        assert rules["classical"] == 1.0 and len(rules["classical_calibrations"]) == 2
        assert rules["calibrations"] == plain["calibrations"]  # the pair's own, the rules' apart
        assert {r["family"]: r["pixel_ap"] for r in rules["families"]} == pytest.approx(expected, abs=1e-3)
        per_fold.append(expected)
    assert per_fold[0] != per_fold[1]  # the folds were scored with different models


def test_three_imagecond_models_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="expected one, or two"):
        load_benchmark("lofo_fusion").main(["--imagecond", "x", "y", "z", "--segment", "a", "b",
                                            "--out", str(tmp_path / "o")])
