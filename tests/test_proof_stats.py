"""Bootstrap intervals (per seed and combined across seeds) and the Evidently subgroup report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def predictions(seed: int, n: int = 60, one_class_artifact: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    ruler = (np.arange(n) % 3 == 0).astype(int)
    if one_class_artifact:
        y[ruler == 1] = 0
    return pd.DataFrame({"melanoma": y, "p_malignant": np.clip(0.4 * y + 0.3 + 0.2 * rng.random(n), 0, 1),
                         "ruler": ruler, "ink": 0, "patches": 0})


def test_evidently_report_has_both_subgroups(tmp_path):
    from dermclean.proof.evidently_report import load_report_definition, subgroup_report

    definition = load_report_definition()
    assert definition.current_label == "artifact" and definition.reference_label == "clean"
    out = subgroup_report(predictions(0), tmp_path / "r.html", threshold=0.5, title="raw seed0",
                          definition=definition)
    page = out.html_path.read_text()
    assert "<b>artifact</b> subgroup" in page and "<b>clean</b> subgroup" in page and "raw seed0" in page
    assert out.numbers["n"] == {"artifact": 20, "clean": 40}
    assert 0.0 <= out.numbers["artifact"]["RocAuc"] <= 1.0 and 0.0 <= out.numbers["clean"]["RocAuc"] <= 1.0
    assert any(k.startswith("ValueDrift") for k in out.numbers["drift"])


def test_evidently_report_single_class_subgroup_says_so(tmp_path):
    from dermclean.proof.evidently_report import subgroup_report

    out = subgroup_report(predictions(1, one_class_artifact=True), tmp_path / "r.html", threshold=0.5, title="x")
    assert "single class" in out.numbers["skipped"] and "artifact" not in out.numbers
    assert out.numbers["drift"]


def test_report_definition_refuses_unknown_names(tmp_path):
    from dermclean.proof.evidently_report import load_report_definition

    bad = tmp_path / "d.yaml"
    bad.write_text("subgroups: {current: {label: a, any_of: [ink]}, reference: {label: c, none_of: [ink]}}\n"
                   "columns: {target: melanoma, prediction: p_malignant}\npresets: [{name: NoSuchPreset}]\n")
    with pytest.raises(ValueError, match="NoSuchPreset"):
        load_report_definition(bad)
