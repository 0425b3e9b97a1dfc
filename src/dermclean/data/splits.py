"""Deterministic train/val/test splits, stratified by melanoma and the three outlier flags.

Strata are the combinations of ``melanoma`` x ``ruler`` x ``ink`` x ``patches`` where an unknown
value (<NA>) is a level of its own, so unlabelled images are spread like labelled ones. Inside each
stratum the rows are shuffled (seeded) and cut by systematic sampling with a random offset: a
stratum of ``n`` rows gets ``floor`` or ``ceil`` of ``n * test`` test rows and of ``n * val`` val
rows, and the expected counts over all strata are exactly proportional (small strata do not all
round to train).

Rows that already carry a split (``split`` filled, e.g. from a labels file) keep it; only rows
whose ``split`` is empty/<NA> are assigned, and the fractions apply to those rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dermclean.constants import OUTLIER_CLASSES, SPLITS

STRATA_COLUMNS: tuple[str, ...] = ("melanoma", *OUTLIER_CLASSES)


def strata(df: pd.DataFrame) -> pd.Series:
    """One key per row, e.g. ``"1|0|NA|1"`` for melanoma|ruler|ink|patches."""
    missing = [c for c in STRATA_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"assign_splits: manifest lacks columns {missing}; expected {list(STRATA_COLUMNS)}")
    parts = [df[c].astype("string").fillna("NA") for c in STRATA_COLUMNS]
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key.astype(str)


def assign_splits(df: pd.DataFrame, *, val: float, test: float, seed: int) -> pd.DataFrame:
    """Return a copy of ``df`` with ``split`` filled for every row (see the module docstring).

    ``val`` and ``test`` are fractions in ``[0, 1)`` with ``val + test < 1``; the same ``df`` and
    ``seed`` always give the same splits.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"assign_splits: got val={val}, test={test}; expected fractions >= 0 with val + test < 1 "
                         f"(data.splits in params.yaml)")
    out = df.copy()
    existing = out["split"].astype("string") if "split" in out.columns else pd.Series(pd.NA, index=out.index,
                                                                                        dtype="string")
    bad = existing.notna() & ~existing.isin(SPLITS)
    if bad.any():
        rows = [int(i) for i in np.flatnonzero(bad.to_numpy())[:10]]
        raise ValueError(f"assign_splits: rows {rows} have split {sorted(existing[bad].unique())}; "
                         f"expected one of {list(SPLITS)} or empty")
    todo = existing.isna().to_numpy()
    keys = strata(out).to_numpy()
    rng = np.random.default_rng(seed)
    result = existing.to_numpy(dtype=object, na_value=None)
    for key in sorted(set(keys[todo])):
        rows = np.flatnonzero(todo & (keys == key))
        rows = rows[rng.permutation(len(rows))]
        position = (np.arange(len(rows)) + rng.random()) / len(rows)
        labels = np.where(position < test, "test", np.where(position < test + val, "val", "train"))
        result[rows] = labels
    out["split"] = pd.Series(result, index=out.index, dtype="string")
    return out


def split_counts(df: pd.DataFrame) -> dict[str, int]:
    """Rows per split, every split named (0 when empty)."""
    counts = df["split"].value_counts()
    return {name: int(counts.get(name, 0)) for name in SPLITS}
