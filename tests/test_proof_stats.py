"""Bootstrap intervals (per seed and combined across seeds) and the Evidently subgroup report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dermclean.proof.evidently_report import BUNDLE, load_report_definition, variant_report, variant_table
from dermclean.proof.stats import bootstrap_ci, bootstrap_indices, mean_of, ratio_of, seed_interval


def test_bootstrap_ci_contains_the_true_mean():
    values = np.tile([0.0, 1.0], 50)  # mean exactly 0.5
    ci = bootstrap_ci(mean_of(values), len(values), n_boot=500, seed=0)
    assert ci.mean == 0.5 and ci.low < 0.5 < ci.high
    assert 0.35 < ci.low and ci.high < 0.65  # binomial sd of a mean of 100 coin flips is 0.05
    const = bootstrap_ci(mean_of(np.full(20, 0.3)), 20, n_boot=50, seed=0)
    assert (const.low, const.mean, const.high) == pytest.approx((0.3, 0.3, 0.3))


def test_combining_seeds_averages_paired_replicates():
    idx = bootstrap_indices(40, n_boot=300, seed=1)
    seed_a, seed_b = np.full(40, 1.0), np.full(40, 3.0)
    combined = seed_interval([mean_of(seed_a), mean_of(seed_b)], idx)
    assert combined.mean == 2.0 and combined.low == 2.0 and combined.high == 2.0
    assert combined.per_seed == [1.0, 3.0] and combined.seed_std == pytest.approx(np.sqrt(2.0))
    # two seeds with identical noisy figures: the combined interval equals the single-seed one
    noisy = np.random.default_rng(0).random(40)
    one = seed_interval([mean_of(noisy)], idx)
    two = seed_interval([mean_of(noisy), mean_of(noisy)], idx)
    assert (one.low, one.high) == pytest.approx((two.low, two.high))
    # independent seeds: averaging narrows the interval
    other = np.random.default_rng(1).random(40)
    both = seed_interval([mean_of(noisy), mean_of(other)], idx)
    assert both.high - both.low < max(one.high - one.low, seed_interval([mean_of(other)], idx).high
                                      - seed_interval([mean_of(other)], idx).low)


def test_ratio_statistic_and_undefined_replicates():
    num, den = np.array([1.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])
    stat = ratio_of(num, den)
    assert stat(np.arange(4)) == 0.5 and np.isnan(stat(np.array([2, 3])))
    ci = bootstrap_ci(stat, 4, n_boot=200, seed=0)
    assert ci.n_valid < 200 and 0.0 <= ci.low <= 0.5 <= ci.high <= 1.0


def predictions(seed: int, n: int = 60, shift: float = 0.0) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """A test table (patches on every third image, ruler unlabelled on the last four) and two seeds' predictions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    patches = (np.arange(n) % 3 == 0).astype(int)
    ruler = pd.array([0] * (n - 4) + [None] * 4, dtype="Int64")
    test = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "melanoma": y, "patches": patches, "ruler": ruler,
                         "ink": 0})
    probs = [np.clip(0.4 * y + 0.3 + 0.2 * rng.random(n) + shift, 0, 1) for _ in range(2)]
    return test, probs


def test_evidently_variant_report_beside_the_reference(tmp_path):
    definition = load_report_definition()
    assert definition.reference_variant == "raw" and definition.group_by == ["patches", "ruler", "ink"]
    test, probs = predictions(0)
    raw, t_raw = variant_table(test, probs, [0.5, 0.6], definition=definition)
    assert t_raw == pytest.approx(0.55) and raw["p_malignant"].to_numpy() == pytest.approx(np.mean(probs, axis=0))
    assert (raw["error"] == ((raw["p_malignant"] >= 0.55) != raw["melanoma"].astype(bool))).all()
    assert raw["ruler"].tolist()[-5:] == ["without"] + ["unlabelled"] * 4
    cleaned, t = variant_table(test, predictions(0, shift=0.2)[1], [0.5, 0.5], definition=definition)
    out = variant_report(cleaned, raw, tmp_path / "telea.html", threshold=t, title="telea", definition=definition,
                         self_contained_copy=tmp_path / "copy" / "telea.html")
    page = out.html_path.read_text()
    assert "telea" in page and "<b>raw</b> variant" in page and f'<script src="{BUNDLE}">' in page
    assert len(page) < 1_000_000 and (tmp_path / BUNDLE).stat().st_size > 1_000_000
    assert (tmp_path / "copy" / "telea.html").stat().st_size > 1_000_000  # the MLflow copy keeps the bundle inline
    groups = out.numbers["subgroups"]["patches"]
    assert groups["with"]["n"] == 20 and groups["without"]["n"] == 40
    with_patch = cleaned[cleaned["patches"] == "with"]
    assert groups["with"]["MeanValue[p_malignant]"] == pytest.approx(with_patch["p_malignant"].mean())
    assert groups["with"]["MeanValue[error]"] == pytest.approx(with_patch["error"].mean())
    assert out.numbers["subgroups"]["ruler"]["unlabelled"]["n"] == 4
    assert out.numbers["reference"] == "raw" and any(k.startswith("ValueDrift") for k in out.numbers["overall"])
    flagged, _ = variant_table(test, probs, [0.5, 0.6], definition=definition,  # detector flags where unlabelled
                               flags=pd.DataFrame({"image_id": ["i0", "i56", "i57"], "ruler": [1, 1, 0]}))
    assert flagged["ruler"].tolist()[-5:] == ["without", "with", "without", "unlabelled", "unlabelled"]
    assert flagged["ruler"].iloc[0] == "without"  # i0's human 0 stands against the detector's 1
    assert flagged["ruler_source"].tolist()[:1] + flagged["ruler_source"].tolist()[-4:] == [
        "human", "detector", "detector", "none", "none"]  # a human label is never overridden (i0)
    alone = variant_report(raw, None, tmp_path / "raw.html", threshold=t_raw, title="raw", definition=definition)
    assert alone.numbers["reference"] is None and not any(k.startswith("ValueDrift") for k in alone.numbers["overall"])
    assert "this is the reference variant" in alone.html_path.read_text()


def test_report_definition_refuses_unknown_names(tmp_path):
    bad = tmp_path / "d.yaml"
    bad.write_text("reference_variant: raw\ngroup_by: [ink]\n"
                   "columns: {target: melanoma, prediction: p_malignant, error: error}\npresets: [{name: NoSuchPreset}]\n")
    with pytest.raises(ValueError, match="NoSuchPreset"):
        load_report_definition(bad)
