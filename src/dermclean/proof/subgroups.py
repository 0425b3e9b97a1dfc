"""Subgroup performance on human artifact labels: AUROC with and without each artifact.

For a test table with ``melanoma``, the artifact flags (``constants.ARTIFACT_FLAGS``) and a
classifier's ``p_malignant``, the subgroup ``with <flag>`` is the rows labelled 1, ``without`` the
rows labelled 0; unlabelled rows (``<NA>``) belong to neither. The gap is ``with - without``: a
classifier that learned "patches => benign" ranks melanomas with patches too low, so the gap is
negative (Bissoto et al. 2020 report the same comparison on these labels). ``clean`` is the rows
carrying none of ruler/ink/patches (:func:`dermclean.data.manifest.clean_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dermclean.classifier.metrics import auroc
from dermclean.constants import OUTLIER_CLASSES
from dermclean.proof.stats import Statistic


@dataclass(frozen=True, kw_only=True)
class SubgroupAUROC:
    """AUROC in the subgroup with the artifact and the one without, and their counts."""

    flag: str
    auroc_with: float
    auroc_without: float
    gap: float
    n_with: int
    n_with_melanoma: int
    n_without: int
    n_without_melanoma: int


def flag_values(df: pd.DataFrame, flag: str) -> np.ndarray:
    """``(N,)`` float: 1 / 0 for labelled rows, NaN where the flag is unknown."""
    if flag not in df.columns:
        raise ValueError(f"test table has no column {flag!r}; expected the manifest's artifact flags")
    return pd.to_numeric(df[flag], errors="coerce").astype("float64").to_numpy()


def auroc_stat(y: np.ndarray, p: np.ndarray, member: np.ndarray | None = None) -> Statistic:
    """Statistic: AUROC of ``p`` against ``y`` on the selected images that are ``member``s."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    member = np.ones(y.shape, dtype=bool) if member is None else np.asarray(member, dtype=bool)

    def stat(idx: np.ndarray) -> float:
        idx = idx[member[idx]]
        return auroc(y[idx], p[idx])

    return stat


def gap_stat(y: np.ndarray, p: np.ndarray, flag: np.ndarray) -> Statistic:
    """Statistic: AUROC(with flag) - AUROC(without flag) on the same resample."""
    with_ = auroc_stat(y, p, flag == 1)
    without = auroc_stat(y, p, flag == 0)
    return lambda idx: with_(idx) - without(idx)


def subgroup_aurocs(df: pd.DataFrame, p: np.ndarray, *, flags: Sequence[str] = OUTLIER_CLASSES) -> list[SubgroupAUROC]:
    """One :class:`SubgroupAUROC` per flag for predictions ``p`` ``(N,)`` aligned with ``df``'s rows."""
    y = df["melanoma"].astype(int).to_numpy()
    p = np.asarray(p, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} test rows; expected one per row")
    out = []
    for flag in flags:
        f = flag_values(df, flag)
        w, wo = f == 1, f == 0
        a_w, a_wo = auroc(y[w], p[w]), auroc(y[wo], p[wo])
        out.append(SubgroupAUROC(flag=flag, auroc_with=a_w, auroc_without=a_wo, gap=a_w - a_wo,
                                 n_with=int(w.sum()), n_with_melanoma=int(y[w].sum()),
                                 n_without=int(wo.sum()), n_without_melanoma=int(y[wo].sum())))
    return out
