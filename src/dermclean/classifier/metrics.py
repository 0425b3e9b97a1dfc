"""Binary classification metrics used by training and by the shortcut evidence (numpy, no torch).

:func:`auroc` is the Mann-Whitney form (ties count one half), fast enough to run thousands of
times inside a bootstrap. :func:`fit_operating_threshold` chooses the operating point on
*validation* data only (docs/method.md, "Measuring honestly").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

THRESHOLD_METHODS = ("youden", "sensitivity")


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve of scores ``p`` (N,) for labels ``y`` (N,) in {0, 1}; NaN with one class."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True, kw_only=True)
class OperatingThreshold:
    """``p_malignant >= threshold`` means "malignant". Sensitivity/specificity are on validation data."""

    threshold: float
    method: str
    sensitivity: float
    specificity: float
    n_val: int


def fit_operating_threshold(p_val: np.ndarray, y_val: np.ndarray, *, method: str = "youden",
                            target_sensitivity: float = 0.9) -> OperatingThreshold:
    """Choose the operating threshold on validation predictions.

    - ``youden``: maximise Youden's J = sensitivity + specificity - 1 over every candidate
      threshold (each distinct score; ties broken towards the higher threshold);
    - ``sensitivity``: the highest threshold whose sensitivity reaches ``target_sensitivity``.

    The threshold is a score value itself, so ``p >= threshold`` reproduces the reported rates.
    Raises ``ValueError`` when validation holds a single class (no operating point can be fitted).
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold method {method!r}; expected one of {THRESHOLD_METHODS}")
    p = np.asarray(p_val, dtype=np.float64)
    y = np.asarray(y_val).astype(bool)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"p_val {p.shape} and y_val {y.shape} must be equal-length vectors")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"validation data has {n_pos} malignant and {n_neg} benign images; "
                         f"an operating threshold needs both")
    candidates = np.unique(p)[::-1]  # high -> low
    sens = np.array([(p[y] >= t).mean() for t in candidates])
    spec = np.array([(p[~y] < t).mean() for t in candidates])
    if method == "youden":
        best = int(np.argmax(sens + spec - 1.0))  # first max = highest threshold
    else:
        reaching = np.flatnonzero(sens >= target_sensitivity)
        best = int(reaching[0])
    return OperatingThreshold(threshold=float(candidates[best]), method=method, sensitivity=float(sens[best]),
                              specificity=float(spec[best]), n_val=int(p.size))
