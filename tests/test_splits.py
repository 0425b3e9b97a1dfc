"""data.splits: disjoint, proportional, deterministic, stratified, existing splits kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.splits import assign_splits, split_counts, strata


def _frame(n: int = 600, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(n)],
                       "melanoma": pd.array(rng.random(n) < 0.2, dtype="Int8")})
    for flag, rate in zip(OUTLIER_CLASSES, (0.45, 0.15, 0.07)):
        values = pd.array((rng.random(n) < rate).astype(int), dtype="Int8")
        values[rng.random(n) < 0.1] = pd.NA  # unlabelled rows: their own stratum
        df[flag] = values
    df["split"] = pd.array([pd.NA] * n, dtype="string")
    return df


def test_every_row_gets_exactly_one_split_and_fractions_hold():
    out = assign_splits(_frame(), val=0.2, test=0.1, seed=0)
    assert out["split"].notna().all() and set(out["split"]) == {"train", "val", "test"}
    counts = split_counts(out)
    assert sum(counts.values()) == 600
    # systematic sampling per stratum: each stratum is off by at most one row per split
    n_strata = strata(out).nunique()
    assert abs(counts["val"] - 120) <= n_strata and abs(counts["test"] - 60) <= n_strata
    assert abs(counts["val"] / 600 - 0.2) < 0.03 and abs(counts["test"] / 600 - 0.1) < 0.03
    assert out["image_id"].tolist() == _frame()["image_id"].tolist()  # order and ids untouched
    ids = {name: set(out.loc[out["split"] == name, "image_id"]) for name in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])


def test_deterministic_and_seed_dependent():
    a = assign_splits(_frame(), val=0.2, test=0.2, seed=3)
    b = assign_splits(_frame(), val=0.2, test=0.2, seed=3)
    c = assign_splits(_frame(), val=0.2, test=0.2, seed=4)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()


def test_each_stratum_is_spread_proportionally():
    df = _frame(1200)
    out = assign_splits(df, val=0.25, test=0.25, seed=0)
    keys = strata(out)
    for key, rows in out.groupby(keys):
        n = len(rows)
        for name, frac in (("val", 0.25), ("test", 0.25)):
            got = int((rows["split"] == name).sum())
            assert np.floor(n * frac) <= got <= np.ceil(n * frac), (key, name, n, got)
    # so the melanoma rate and each flag's rate (NA included) match across splits
    for col in ("melanoma", *OUTLIER_CLASSES):
        rates = out.groupby("split")[col].apply(lambda s: s.fillna(2).mean())
        assert rates.max() - rates.min() < 0.1, col


def test_na_is_its_own_stratum():
    df = _frame(40)
    df["ruler"] = pd.array([pd.NA] * 20 + [0] * 20, dtype="Int8")
    df["melanoma"] = pd.array([0] * 40, dtype="Int8")
    df["ink"] = pd.array([0] * 40, dtype="Int8")
    df["patches"] = pd.array([0] * 40, dtype="Int8")
    out = assign_splits(df, val=0.25, test=0.25, seed=0)
    for half in (out.iloc[:20], out.iloc[20:]):
        assert (half["split"] == "test").sum() == 5 and (half["split"] == "val").sum() == 5


def test_existing_splits_are_kept_and_only_empty_rows_assigned():
    df = _frame(100)
    df.loc[:9, "split"] = "test"
    out = assign_splits(df, val=0.2, test=0.2, seed=0)
    assert (out["split"][:10] == "test").all()
    rest = out["split"][10:]
    assert rest.notna().all() and abs((rest == "test").sum() - 18) <= strata(out[10:]).nunique()


def test_bad_fractions_and_bad_existing_split():
    with pytest.raises(ValueError, match="val \\+ test < 1"):
        assign_splits(_frame(10), val=0.6, test=0.5, seed=0)
    df = _frame(10)
    df.loc[3, "split"] = "holdout"
    with pytest.raises(ValueError, match=r"rows \[3\] have split \['holdout'\]"):
        assign_splits(df, val=0.2, test=0.2, seed=0)


def test_missing_strata_column_is_named():
    with pytest.raises(ValueError, match="patches"):
        assign_splits(_frame(10).drop(columns=["patches"]), val=0.2, test=0.2, seed=0)
