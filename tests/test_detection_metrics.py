"""Threshold, metrics and the classical baseline on tiny hand-worked cases."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dermclean.detection import Threshold
from dermclean.detection import metrics as M
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.config import DetectionConfig
from dermclean.methods.classical.rules import type_maps


# ------------------------------------------------------------------ threshold
def test_threshold_fit_on_hand_worked_maps():
    maps = [np.array([[0, 1], [2, 3]], float), np.array([[4, 5], [6, 7]], float)]
    th = Threshold.fit(maps, fpr_budget=0.25)  # 8 pixels, 2 may stay above: 6 and 7
    assert th.value == 5.0 and th.n_pixels == 8 and th.n_images == 2
    assert th.apply(maps[1]).tolist() == [[False, False], [True, True]]
    assert Threshold.fit(maps, fpr_budget=0.1).value == 7.0  # 0.8 pixel allowed -> none flagged
    flat = Threshold.fit([np.zeros((4, 4))], fpr_budget=0.5)
    assert not flat.apply(np.zeros((4, 4))).any()  # ties never push the clean FP rate above the budget
    assert Threshold.from_dict(th.to_dict()) == th


def test_upper_bound_rule_guards_against_the_few_images_that_carry_the_flagged_area():
    rng = np.random.default_rng(0)
    even = [rng.random((10, 10)) for _ in range(20)]  # every clean image alike
    pixels = Threshold.fit(even, fpr_budget=0.05)
    bound = Threshold.fit(even, fpr_budget=0.05, rule="upper_bound")
    share = np.mean([bound.apply(m).mean() for m in even])
    assert bound.value >= pixels.value and 0.025 <= share <= 0.05  # little to guard against: near the budget
    heavy = even[:19] + [1.0 + rng.random((10, 10))]  # one image carries every value above the others
    pixels = Threshold.fit(heavy, fpr_budget=0.05)
    assert pixels.value == pytest.approx(max(m.max() for m in heavy[:19]))  # flags exactly the heavy image
    bound = Threshold.fit(heavy, fpr_budget=0.05, rule="upper_bound")
    flagged = bound.apply(heavy[-1]).sum()
    # drawn 3 times in 20 (about 7 % of resamples), the heavy image may flag at most 33 of 2,000 pixels
    assert bound.value > 1.0 and 0 < flagged <= 33 and not any(bound.apply(m).any() for m in heavy[:19])
    assert (bound.rule, bound.confidence, pixels.rule, pixels.confidence) == ("upper_bound", 0.95, "pixels", None)
    assert Threshold.from_dict(bound.to_dict()) == bound
    assert Threshold.fit(heavy, fpr_budget=0.05, rule="upper_bound").value == bound.value  # seeded
    assert Threshold.fit(heavy, fpr_budget=0.05, rule="upper_bound", confidence=0.5).value < bound.value
    with pytest.raises(ValueError, match="rule"):
        Threshold.fit(heavy, fpr_budget=0.05, rule="quantile")
    with pytest.raises(ValueError, match="threshold_rule"):
        DetectionConfig(threshold_rule="quantile")


def test_threshold_refuses_bad_input():
    with pytest.raises(ValueError, match="no clean maps"):
        Threshold.fit([], fpr_budget=0.01)
    with pytest.raises(ValueError, match="fpr_budget"):
        Threshold.fit([np.zeros((2, 2))], fpr_budget=1.5)
    with pytest.raises(ValueError, match="missing"):
        Threshold.from_dict({"value": 1.0})


# ------------------------------------------------------------------ metrics
PRED = [np.array([[0.9, 0.8], [0.7, 0.1]], np.float32)]
GT = [np.array([[1, 0], [1, 0]], bool)]


def test_pixel_ap_and_auroc_by_hand():
    # ranks 0.9(+) 0.8(-) 0.7(+) 0.1(-): AP = 0.5 * 1 + 0.5 * 2/3; AUROC = 3 of 4 pairs ordered
    assert M.pixel_average_precision(PRED, GT) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert M.pixel_auroc(PRED, GT) == pytest.approx(0.75)
    assert math.isnan(M.pixel_average_precision(PRED, [np.zeros((2, 2), bool)]))
    precision, recall = M.pixel_pr_curve(PRED, GT, bins=5)
    assert recall.max() == 1.0 and precision.min() >= 0.5


def test_pixel_metrics_pool_images_of_different_sizes():
    maps = PRED + [np.array([[0.95, 0.0, 0.0]], np.float32)]
    gts = GT + [np.array([[1, 0, 0]], bool)]
    # ranks 0.95(+) 0.9(+) 0.8(-) 0.7(+): AP = 1/3 + 1/3 + 1/3 * 3/4
    assert M.pixel_average_precision(maps, gts) == pytest.approx(2 / 3 + 0.25)
    with pytest.raises(ValueError, match="shape"):
        M.pixel_auroc(PRED, [np.zeros((3, 3), bool)])


def test_dice_fp_area_image_auroc_by_hand():
    pred = [np.array([[1, 1], [0, 0]], bool)]
    assert M.dice(pred, GT) == pytest.approx(0.5)  # 2*1 / (2 + 2)
    assert M.mean_dice(pred + [np.zeros((1, 1), bool)], GT + [np.zeros((1, 1), bool)]) == pytest.approx(0.5)
    assert math.isnan(M.dice([np.zeros((2, 2), bool)], [np.zeros((2, 2), bool)]))
    assert M.false_positive_area([np.array([[1, 0], [0, 0]], bool), np.zeros((3, 3), bool)]) == pytest.approx(0.125)
    assert M.image_auroc([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1]) == pytest.approx(0.75)
    assert math.isnan(M.image_auroc([0.1, 0.2], [0, 0]))


def test_size_buckets():
    mask = np.zeros((100, 100), bool)
    assert M.size_bucket(mask) == "small"
    mask[:10, :30] = True  # 3 %
    assert M.size_bucket(mask) == "medium"
    mask[:50] = True
    assert M.size_bucket(mask) == "large"


# ------------------------------------------------------------------ classical baseline
def _skin(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    base = np.array([205, 150, 125], np.float32)
    return np.clip(base + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)


def test_classical_fires_on_a_violet_line_and_not_on_skin():
    rng = np.random.default_rng(0)
    skin = _skin(rng)
    inked = skin.copy()
    cv2.line(inked, (5, 10), (58, 50), (130, 30, 170), 3)
    line = np.zeros(skin.shape[:2], np.uint8)
    cv2.line(line, (5, 10), (58, 50), 1, 1)
    maps = type_maps(inked, ClassicalDetector().config)
    assert maps["ink"][line > 0].mean() > 0.5
    assert type_maps(skin, ClassicalDetector().config)["ink"].max() < 0.1
    det = ClassicalDetector()
    clean, painted = det.detect([skin, inked], ["skin", "inked"])
    assert painted.type_scores["ink"] > 0.5 > clean.type_scores["ink"]
    assert painted.score > clean.score and clean.anomaly_map.max() < 0.2
    assert painted.anomaly_map.shape == (64, 64) and 0 <= painted.anomaly_map.min() <= painted.anomaly_map.max() <= 1


def test_classical_fires_on_thin_dark_lines_and_green_stickers():
    rng = np.random.default_rng(1)
    skin = _skin(rng)
    ruler = skin.copy()
    ruler[30:32, 4:60] = 20
    sticker = skin.copy()
    cv2.circle(sticker, (50, 50), 8, (40, 190, 70), -1)
    cfg = ClassicalDetector().config
    assert type_maps(ruler, cfg)["ruler"][30:32, 10:55].mean() > 0.8
    assert type_maps(skin, cfg)["ruler"].mean() < 0.2
    assert type_maps(sticker, cfg)["patches"][46:54, 46:54].mean() > 0.5
    assert type_maps(skin, cfg)["patches"].max() < 0.1
    th = Threshold.fit([ClassicalDetector().anomaly_map(skin)], fpr_budget=0.01)
    det = ClassicalDetector(threshold=th)
    (found,) = det.detect([sticker])
    assert found.mask[48:52, 48:52].all() and found.mask.mean() < 0.1


def test_labelled_image_aurocs_any_and_each_type_against_clean_images():
    # rows: clean, clean, ruler, ink, ruler+patches, unknown (left out)
    labels = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 1], [np.nan, 0, 0]])
    any_scores = [0.1, 0.6, 0.9, 0.5, 0.8, 0.0]
    type_scores = np.array([[0.1, 0.2, 0.3], [0.7, 0.1, 0.1], [0.9, 0.0, 0.0], [0.0, 0.9, 0.0],
                            [0.2, 0.0, 0.8], [1.0, 1.0, 1.0]])
    out = M.labelled_image_aurocs(any_scores, type_scores, labels)
    assert out["images"] == 5
    assert out["any"] == pytest.approx(M.image_auroc([0.1, 0.6, 0.9, 0.5, 0.8], [0, 0, 1, 1, 1]))  # 5 / 6
    assert out["any"] == pytest.approx(5 / 6)
    assert out["ruler"] == pytest.approx(0.75)  # rulers 0.9, 0.2 against clean 0.1, 0.7
    assert out["ink"] == pytest.approx(1.0) and out["patches"] == pytest.approx(1.0)
    none_of_a_type = M.labelled_image_aurocs(any_scores[:2], type_scores[:2], labels[:2])
    assert math.isnan(none_of_a_type["any"]) and math.isnan(none_of_a_type["ruler"])
    with pytest.raises(ValueError, match="shape"):
        M.labelled_image_aurocs(any_scores, type_scores[:, :2], labels)
