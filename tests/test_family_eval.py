"""Pixel AP per renderer family, on the classical rules detector (a real detector, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from dermclean.data.families import FAMILIES
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.family_eval import evaluate_families
from dermclean.detection.threshold import Threshold


def skin(n: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.clip(np.array([205, 160, 135]) + rng.normal(0, 4, (size, size, 3)), 0, 255).astype(np.uint8)
            for _ in range(n)]


def test_every_family_is_scored_and_held_out_families_are_reported_apart():
    detector = ClassicalDetector(threshold=Threshold(value=0.5, fpr_budget=0.01, n_images=1, n_pixels=1))
    held = ["ruler/edge_ticks", "ink/pen_text", "patches/glossy"]
    result = evaluate_families(detector, skin(3), seed=1, held_out=held)
    assert {(r.kind, r.family) for r in result.results} == {(k, f) for k, fs in FAMILIES.items() for f in fs}
    assert all(0.0 <= r.pixel_ap <= 1.0 and r.n_images == 3 for r in result.results)
    assert all(r.tolerant_ap >= r.pixel_ap - 1e-9 for r in result.results)  # tolerance never lowers AP here
    assert {f"{r.kind}/{r.family}" for r in result.results if r.held_out} == set(held)
    assert result.held_out_report.per_kind.keys() == {"ruler", "ink", "patches"}
    assert result.seen_report.mean == pytest.approx(np.mean([r.tolerant_ap for r in result.results if not r.held_out]))
    stickers = [r.pixel_ap for r in result.results if r.kind == "patches"]
    assert np.mean(stickers) > 0.5  # saturated stickers on plain skin: the colour rule finds them
    assert 0.0 <= result.fp_area_clean <= 1.0
    assert evaluate_families(detector, skin(3), seed=1, held_out=held).as_dict() == result.as_dict()


def test_no_images_is_refused():
    with pytest.raises(ValueError, match="no clean images"):
        evaluate_families(ClassicalDetector(), [])
