"""Boundary-tolerant pixel AP and the leave-one-family-out report, on tiny hand-worked cases."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from dermclean.detection.lofo import FamilyScore, boundary_tolerant_ap, lofo_report, tolerant_pixels


def test_one_pixel_off_tick_strip():
    """1 x 6 strip, artifact at x=2, the map peaks at x=1 (one pixel off).

    t=0: ranking 0.9 (neg, x1), 0.8 (neg, x5), 0.2 (pos) -> AP = precision at the positive = 1/3.
    t=1: x1 and x3 are the ring (dropped); the positive scores max(0.9, 0.2, 0.1) = 0.9; negatives are
    x0 0.1, x4 0.1, x5 0.8 -> the positive ranks first -> AP = 1.
    """
    scores = np.array([[0.1, 0.9, 0.2, 0.1, 0.1, 0.8]], np.float32)
    mask = np.zeros((1, 6), bool)
    mask[0, 2] = True
    assert boundary_tolerant_ap(scores, mask, tolerance_px=0) == pytest.approx(1 / 3)
    assert boundary_tolerant_ap(scores, mask, tolerance_px=1) == pytest.approx(1.0)
    pos, neg = tolerant_pixels(scores, mask, 1)
    assert pos.tolist() == pytest.approx([0.9]) and sorted(neg.tolist()) == pytest.approx([0.1, 0.1, 0.8])


def test_diagonal_neighbour_is_within_the_square_tolerance():
    """4 x 4, artifact at (1, 1) scored 0.3; 0.9 at the diagonal neighbour (0, 0); 0.5 far away at (3, 3).

    t=0: 0.9 (neg), 0.5 (neg), 0.3 (pos) -> 1/3. t=1: (0, 0) is in the ring (Chebyshev distance 1), the
    positive scores 0.9, the negatives are 0.5 and zeros -> 1.
    """
    scores = np.zeros((4, 4), np.float32)
    scores[1, 1], scores[0, 0], scores[3, 3] = 0.3, 0.9, 0.5
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    assert boundary_tolerant_ap(scores, mask, 0) == pytest.approx(1 / 3)
    assert boundary_tolerant_ap(scores, mask, 1) == pytest.approx(1.0)
    # a peak two pixels off, at (3, 3), is outside a 1 px tolerance: 0.9 (neg) then 0.3 (pos) -> 1/2
    scores[0, 0], scores[3, 3] = 0.0, 0.9
    assert boundary_tolerant_ap(scores, mask, 1) == pytest.approx(1 / 2)


def test_two_positives_and_pooling_over_images():
    """Image A 1 x 5: artifact at x=0 and x=4, scores 0.8 0 0 0 0.4 (x=2 scored 0.6 is a negative at t=1).
    Image B 1 x 5, no artifact, scores 0.5 0 0 0 0.

    t=1: A's ring is x1, x3; positives 0.8 (max(0.8, 0)), 0.4 (max(0, 0.4)); negatives A x2 0.6, B 0.5 0 0 0 0.
    Ranking 0.8 P, 0.6 N, 0.5 N, 0.4 P -> AP = (1/1 + 2/4) / 2 = 0.75.
    """
    a = np.array([[0.8, 0.0, 0.6, 0.0, 0.4]], np.float32)
    b = np.array([[0.5, 0.0, 0.0, 0.0, 0.0]], np.float32)
    ma = np.array([[True, False, False, False, True]])
    mb = np.zeros((1, 5), bool)
    assert boundary_tolerant_ap([a, b], [ma, mb], 1) == pytest.approx(0.75)
    assert boundary_tolerant_ap(np.stack([a, b]), np.stack([ma, mb]), 1) == pytest.approx(0.75)


def test_zero_tolerance_is_the_plain_pixel_ap():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 12, 12)).astype(np.float32)
    masks = rng.random((3, 12, 12)) < 0.1
    expected = average_precision_score(masks.ravel(), scores.ravel())
    assert boundary_tolerant_ap(scores, masks, 0) == pytest.approx(expected)
    # a tolerance can only drop negatives and raise positives, so the AP never falls
    assert boundary_tolerant_ap(scores, masks, 1) >= expected
    assert boundary_tolerant_ap(scores, masks, 2) >= boundary_tolerant_ap(scores, masks, 1) - 1e-12


def test_undefined_cases_are_nan_and_bad_input_raises():
    scores = np.zeros((4, 4), np.float32)
    assert math.isnan(boundary_tolerant_ap(scores, np.zeros((4, 4), bool)))  # no positives
    full = np.ones((3, 3), bool)
    assert math.isnan(boundary_tolerant_ap(np.zeros((3, 3)), full))  # no negatives
    ring_only = np.zeros((3, 3), bool)
    ring_only[1, 1] = True
    assert math.isnan(boundary_tolerant_ap(np.zeros((3, 3)), ring_only, 1))  # every other pixel in the ring
    with pytest.raises(ValueError, match="expected an integer >= 0"):
        boundary_tolerant_ap(scores, scores > 0, -1)
    with pytest.raises(ValueError, match="expected an integer >= 0"):
        boundary_tolerant_ap(scores, scores > 0, 1.5)
    with pytest.raises(ValueError, match=r"scores\[0\] has shape \(4, 4\) but masks\[0\] \(4, 5\)"):
        boundary_tolerant_ap(scores, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="2 score maps but 1 masks"):
        boundary_tolerant_ap([scores, scores], [scores > 0])


def test_lofo_report_hand_worked():
    report = lofo_report({"ruler": {"edge_ticks": 0.2, "thin_scale": 0.6}, "ink": {"pen_dots": 0.7}})
    assert report.mean == pytest.approx(0.5)
    assert report.worst == FamilyScore("ruler", "edge_ticks", 0.2)
    assert report.per_kind["ruler"].mean == pytest.approx(0.4) and report.per_kind["ruler"].n_families == 2
    assert report.per_kind["ruler"].worst.family == "edge_ticks"
    assert report.per_kind["ink"].worst == FamilyScore("ink", "pen_dots", 0.7)
    assert [r.family for r in report.rows] == ["edge_ticks", "thin_scale", "pen_dots"]
    assert report.as_dict()["worst"] == {"kind": "ruler", "family": "edge_ticks", "value": 0.2}


def test_lofo_report_rejects_missing_figures():
    with pytest.raises(ValueError, match="ruler/edge_ticks = nan; expected a finite number"):
        lofo_report({"ruler": {"edge_ticks": float("nan")}})
    with pytest.raises(ValueError, match="kind 'ink' has no family results"):
        lofo_report({"ink": {}})
    with pytest.raises(ValueError, match="got no results"):
        lofo_report({})
