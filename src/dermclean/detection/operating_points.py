"""Image-level operating points: a 0/1 flag per artifact type, fitted on validation labels only.

A detector scores every image with a probability per type (``ruler``, ``ink``, ``patches``) and an
image score (``any``). An audit needs decisions, so each score gets a threshold chosen on the
validation split's human (or generator) labels: the one with the highest F1 (ties: the higher
threshold), so that the flagged count stays close to the true count whatever the type's prevalence.
Saved as ``operating_points.json`` in the detector bundle; :meth:`OperatingPoints.flags` applies them.
A type without positives or negatives in the split has no operating point (its flags are missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dermclean.constants import OUTLIER_CLASSES

SCORE_KEYS: tuple[str, ...] = (*OUTLIER_CLASSES, "any")
"""The scores that get an operating point: one per type, and ``any`` (the detector's image score)."""


@dataclass(frozen=True)
class OperatingPoint:
    """Flag where ``score >= threshold``; its precision, recall and F1 on the images it was fitted on."""

    threshold: float
    precision: float
    recall: float
    f1: float
    n_positive: int
    n_negative: int

    @classmethod
    def fit(cls, scores: np.ndarray, labels: np.ndarray) -> "OperatingPoint | None":
        """The max-F1 threshold over ``scores`` with 0/1 ``labels``; None without both classes."""
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
        n_pos, n_neg = int(labels.sum()), int((~labels).sum())
        if n_pos == 0 or n_neg == 0:
            return None
        order = np.argsort(-scores, kind="stable")
        s, y = scores[order], labels[order]
        tp, fp = np.cumsum(y), np.cumsum(~y)
        last = np.r_[s[1:] != s[:-1], True]  # a cut can only fall after the last of tied scores
        precision, recall = tp / (tp + fp), tp / n_pos
        f1 = np.where(last, 2 * precision * recall / np.maximum(precision + recall, 1e-12), -1.0)
        best = int(np.flatnonzero(f1 == f1.max())[0])
        return cls(threshold=float(s[best]), precision=float(precision[best]), recall=float(recall[best]),
                   f1=float(f1[best]), n_positive=n_pos, n_negative=n_neg)


@dataclass(frozen=True)
class OperatingPoints:
    """One :class:`OperatingPoint` (or None) per :data:`SCORE_KEYS` entry, and what they were fitted on."""

    points: Mapping[str, OperatingPoint | None]
    fitted_on: str = ""

    @classmethod
    def fit(cls, scores: pd.DataFrame, labels: pd.DataFrame, *, fitted_on: str = "") -> "OperatingPoints":
        """``scores``: columns ruler, ink, patches, score (the image score); ``labels``: ruler, ink, patches
        (1/0, missing = unknown), same rows. ``any`` is fitted on rows whose three labels are all known."""
        points: dict[str, OperatingPoint | None] = {}
        known = labels[list(OUTLIER_CLASSES)].notna().all(axis=1).to_numpy()
        for key in SCORE_KEYS:
            if key == "any":
                values, truth = scores["score"].to_numpy(float)[known], \
                    labels.loc[known, list(OUTLIER_CLASSES)].to_numpy(float).sum(axis=1) > 0
            else:
                has = labels[key].notna().to_numpy()
                values, truth = scores[key].to_numpy(float)[has], labels.loc[has, key].to_numpy(float) > 0
            points[key] = OperatingPoint.fit(values, truth)
        return cls(points=points, fitted_on=fitted_on)

    def flags(self, scores: pd.DataFrame) -> pd.DataFrame:
        """``<key>_flag`` columns (nullable Int8 0/1; missing where the key has no operating point)."""
        out = {}
        for key in SCORE_KEYS:
            point, column = self.points.get(key), scores["score" if key == "any" else key].to_numpy(float)
            flag = pd.array([pd.NA] * len(scores), dtype="Int8") if point is None else \
                pd.array((column >= point.threshold).astype(np.int8), dtype="Int8")
            out[f"{key}_flag"] = flag
        return pd.DataFrame(out, index=scores.index)

    def to_dict(self) -> dict:
        return {"rule": "max F1 on labelled validation images", "fitted_on": self.fitted_on,
                "points": {k: (asdict(p) if p is not None else None) for k, p in self.points.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "OperatingPoints":
        points = data.get("points", {})
        return cls(points={k: (OperatingPoint(**points[k]) if points.get(k) else None) for k in SCORE_KEYS},
                   fitted_on=str(data.get("fitted_on", "")))
