"""Two detectors' maps fused on the rarity scale (real detectors: the classical rules and tiny untrained
guided ones)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dermclean.clean import _detector_unet
from dermclean.detection import metrics as M
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.contract import run_detect_dir
from dermclean.detection.config import fusion_settings
from dermclean.detection.storage import load_detector, save_detector
from dermclean.detection.family_eval import evaluate_families
from dermclean.detection.fusion import FusedDetector, MapCalibration, fuse_rarity
from dermclean.errors import ConfigError
from dermclean.methods.classical.rules import ClassicalConfig
from tests.test_detection_contract import tiny_detector


def skin(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(np.array([205, 160, 135]) + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
            for _ in range(n)]


def test_calibration_reads_rarity_among_clean_pixels():
    rng = np.random.default_rng(0)
    clean = [rng.uniform(0, 1, (50, 40)) for _ in range(5)]  # 10,000 pixels, uniform on [0, 1]
    cal = MapCalibration.fit(clean)
    assert np.all(np.diff(cal.values) > 0) and np.all(np.diff(cal.rarity) >= 0)
    got = cal.apply(np.array([0.9, 0.99, 0.5]))
    assert got[0] == pytest.approx(1.0, abs=0.05)  # 10 % of clean pixels lie above 0.9
    assert got[1] == pytest.approx(2.0, abs=0.1)  # 1 % above 0.99: the usual threshold
    assert got[2] == pytest.approx(-np.log10(0.5), abs=0.03)
    top = cal.apply(np.array([1.0, 1.5, 3.0]))
    assert top[0] < top[1] < top[2]  # beyond every clean pixel, stronger evidence still ranks higher
    low = cal.apply(np.array([-5.0, -1.0, float(cal.values[0])]))
    assert low[0] < low[1] < low[2] == pytest.approx(0.0, abs=1e-3)  # below every clean pixel, order kept too
    again = MapCalibration.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.apply(clean[0]), cal.apply(clean[0]))


def test_calibration_needs_clean_maps():
    with pytest.raises(ValueError, match="no clean maps"):
        MapCalibration.fit([])


def test_fusion_rules():
    a, b = np.array([0.0, 2.0, 4.0]), np.array([3.0, 1.0, 0.0])
    np.testing.assert_allclose(fuse_rarity([a, b], weight=0.25, rule="mean"), [2.25, 1.25, 1.0])
    np.testing.assert_allclose(fuse_rarity([a, b], weight=0.5, rule="max"), [3.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="fusion rule"):
        fuse_rarity([a, b], weight=0.5, rule="median")
    with pytest.raises(ValueError, match="fusion weight"):
        FusedDetector([ClassicalDetector(), ClassicalDetector()], weight=1.5)


def test_full_weight_ranks_pixels_as_that_detector_alone():
    first, second = ClassicalDetector(), ClassicalDetector(config=ClassicalConfig(blackhat_kernel=3))
    fused = FusedDetector([first, second], weight=1.0).fit(skin(6))
    painted = skin(3, seed=1)
    for im in painted:
        im[10:14, 4:28] = (30, 30, 30)  # a dark bar
    truth = [np.zeros(im.shape[:2], bool) for im in painted]
    for t in truth:
        t[10:14, 4:28] = True
    alone = M.pixel_average_precision([d.anomaly_map for d in first.detect(painted)], truth)
    assert M.pixel_average_precision([d.anomaly_map for d in fused.detect(painted)], truth) == pytest.approx(alone)
    assert alone > 0.5


def test_fused_detector_fits_a_threshold_and_runs_the_family_evaluation():
    detectors = [ClassicalDetector(), ClassicalDetector(config=ClassicalConfig(blackhat_kernel=3))]
    clean = skin(6)
    fused = FusedDetector(detectors, weight=0.5)
    with pytest.raises(ValueError, match="fit it on clean validation images first"):
        fused.detect(clean)
    fused.fit(clean)
    assert fused.threshold.fpr_budget == 0.01 and fused.threshold.n_images == 6
    flagged = np.mean([d.mask.mean() for d in fused.detect(clean)])
    assert flagged <= 0.01 + 1e-9  # fitted on these clean images at a 1 % budget
    result = evaluate_families(fused, clean[:3], seed=2)
    assert all(0.0 <= r.pixel_ap <= 1.0 for r in result.results)
    assert fused.name == "classical+classical (mean 0.5)"
    with pytest.raises(ValueError, match="two of each"):
        FusedDetector(detectors[:1])


def test_fused_bundle_round_trip_and_the_detect_contract(tmp_path):
    guided, unguided = tiny_detector(), tiny_detector(guidance="none")
    rng = np.random.default_rng(3)
    clean = [rng.integers(0, 255, (40, 36, 3), dtype=np.uint8) for _ in range(4)]
    fused = FusedDetector([guided, unguided], weight=0.25).fit(clean)
    saved = save_detector(fused, tmp_path / "detector_fused", meta={"note": "test"})
    record = json.loads((saved / "config.json").read_text())
    assert record["detector_kind"] == "fused" and record["fusion"]["weight"] == 0.25
    assert record["fusion"]["members"] == ["guided", "guided"] and record["meta"]["note"] == "test"
    loaded = load_detector(saved, device="cpu")
    assert isinstance(loaded, FusedDetector) and loaded.threshold == fused.threshold
    np.testing.assert_array_equal(loaded.detect(clean)[0].anomaly_map, fused.detect(clean)[0].anomaly_map)
    assert loaded.with_config(batch_size=1).detect(clean)[1].score == pytest.approx(fused.detect(clean)[1].score)
    with pytest.raises(ValueError, match="only batch_size"):
        loaded.with_config(noise_level=10)
    images = tmp_path / "images"
    images.mkdir()
    for i, im in enumerate(clean):
        Image.fromarray(im).save(images / f"im{i}.png")
    assert _detector_unet(loaded, "inpaint") is loaded.first.unet.module  # `clean --detector` fills with its model
    out, skipped = run_detect_dir(images, tmp_path / "out", model=saved, device="cpu", progress=False)
    run = json.loads((out / "run.json").read_text())
    assert not skipped and run["detector_kind"] == "fused" and run["fusion"]["rule"] == "mean"
    assert np.load(out / "maps" / "im0.npy").shape == (40, 36)


def test_fusion_settings_are_read_from_params_and_bad_ones_refused():
    assert fusion_settings({"detection": {}}) == ("mean", 0.5)
    assert fusion_settings({"detection": {"fusion": {"rule": "max", "weight": 1}}}) == ("max", 1.0)
    for bad, match in [({"rule": "median"}, "fusion rule 'median'"), ({"weight": 2.0}, "fusion weight 2.0"),
                       ({"weight": True}, "fusion weight True"), ({"share": 0.5}, "unknown keys")]:
        with pytest.raises(ConfigError, match=match):
            fusion_settings({"detection": {"fusion": bad}})
