"""Leave-one-family-out evaluation: a boundary-tolerant pixel AP and the per-family report.

A detector trained without one renderer family (``dermclean.data.families.family_folds``) is scored on
that family; :func:`lofo_report` summarises such scores by their mean, the worst family and per kind.

Boundary-tolerant pixel AP (:func:`boundary_tolerant_ap`), with tolerance ``t`` px, per image:

- *near* pixels are those within Chebyshev distance ``t`` of a true artifact pixel (the mask dilated by
  a (2t+1) x (2t+1) square); the *ring* is near pixels that are not artifact pixels;
- each artifact pixel is a positive scored by the **maximum** score over its (2t+1) x (2t+1) window, so
  a peak up to ``t`` px off a 1 px tick still finds it;
- pixels farther than ``t`` px from every artifact pixel are negatives scored by their own score;
- ring pixels are neither: a prediction there is not a false positive, and is not counted twice.

The positives and negatives of all images are pooled and scored with scikit-learn's
``average_precision_score`` (step-wise area under the precision-recall curve, ties as one threshold).
``t = 0`` is the plain pixel AP. ``nan`` when there is no positive or no negative pixel, so a missing
kind shows up as missing, never as a perfect score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from sklearn.metrics import average_precision_score

NAN = float("nan")


def _as_maps(name: str, values: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """An H x W array is one image; N x H x W or a sequence of H x W arrays is N images."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return [values]
    maps = [np.asarray(v) for v in values]
    for i, m in enumerate(maps):
        if m.ndim != 2:
            raise ValueError(f"{name}[{i}] has shape {m.shape}; expected H x W (or pass an N x H x W array)")
    return maps


def tolerant_pixels(score: np.ndarray, mask: np.ndarray, tolerance_px: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's (positive scores, negative scores), 1-D float32, by the module's definition."""
    score = np.asarray(score, np.float32)
    mask = np.asarray(mask, bool)
    if tolerance_px == 0:
        return score[mask], score[~mask]
    window = np.ones((2 * tolerance_px + 1,) * 2, np.uint8)
    near = cv2.dilate(mask.astype(np.uint8), window).astype(bool)
    pooled = cv2.dilate(score, window, borderType=cv2.BORDER_REPLICATE)
    return pooled[mask], score[~near]


def boundary_tolerant_ap(scores: np.ndarray | Sequence[np.ndarray], masks: np.ndarray | Sequence[np.ndarray],
                         tolerance_px: int = 1) -> float:
    """Pixel AP with a ``tolerance_px`` boundary tolerance (module docstring), over images pooled.

    ``scores``: anomaly maps, float H x W, N x H x W or a sequence of H x W; ``masks``: bool, same shapes.
    """
    if isinstance(tolerance_px, bool) or not isinstance(tolerance_px, (int, np.integer)) or tolerance_px < 0:
        raise ValueError(f"boundary_tolerant_ap: got tolerance_px={tolerance_px!r}; expected an integer >= 0")
    score_maps, mask_maps = _as_maps("scores", scores), _as_maps("masks", masks)
    if len(score_maps) != len(mask_maps):
        raise ValueError(f"boundary_tolerant_ap: {len(score_maps)} score maps but {len(mask_maps)} masks")
    positives, negatives = [], []
    for i, (s, m) in enumerate(zip(score_maps, mask_maps)):
        if s.shape != m.shape:
            raise ValueError(f"boundary_tolerant_ap: scores[{i}] has shape {s.shape} but masks[{i}] {m.shape}; "
                             f"expected equal shapes")
        pos, neg = tolerant_pixels(s, m, int(tolerance_px))
        positives.append(pos)
        negatives.append(neg)
    pos, neg = np.concatenate(positives or [np.zeros(0)]), np.concatenate(negatives or [np.zeros(0)])
    if len(pos) == 0 or len(neg) == 0:
        return NAN
    labels = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    return float(average_precision_score(labels, np.concatenate([pos, neg])))


@dataclass(frozen=True)
class FamilyScore:
    """One held-out family's figure (e.g. boundary-tolerant pixel AP of a detector trained without it)."""

    kind: str
    family: str
    value: float


@dataclass(frozen=True)
class KindSummary:
    """A kind's families: unweighted ``mean``, the ``worst`` one, and how many there are."""

    mean: float
    worst: FamilyScore
    n_families: int


@dataclass(frozen=True)
class LofoReport:
    """``mean`` over every family (unweighted), the ``worst`` family, ``per_kind`` summaries, all ``rows``."""

    mean: float
    worst: FamilyScore
    per_kind: dict[str, KindSummary]
    rows: tuple[FamilyScore, ...]

    def as_dict(self) -> dict:
        """Plain nested dicts/lists, for JSON."""
        return asdict(self)


def _summary(rows: Sequence[FamilyScore]) -> tuple[float, FamilyScore]:
    return float(np.mean([r.value for r in rows])), min(rows, key=lambda r: r.value)


def lofo_report(per_family_results: Mapping[str, Mapping[str, float]]) -> LofoReport:
    """Summarise ``{kind: {family: value}}`` (higher is better): overall mean, worst family, per-kind figures.

    Every value must be a finite number; a kind with no families, or no kinds at all, is an error.
    """
    rows = []
    for kind, families in per_family_results.items():
        if not families:
            raise ValueError(f"lofo_report: kind {kind!r} has no family results; expected {{family: value}}")
        for family, value in families.items():
            if not isinstance(value, (int, float, np.number)) or not math.isfinite(float(value)):
                raise ValueError(f"lofo_report: {kind}/{family} = {value!r}; expected a finite number (a family "
                                 f"with no test pixels must be left out or fixed, not reported)")
            rows.append(FamilyScore(kind=str(kind), family=str(family), value=float(value)))
    if not rows:
        raise ValueError("lofo_report: got no results; expected {kind: {family: value}}")
    per_kind = {}
    for kind in dict.fromkeys(r.kind for r in rows):
        mine = [r for r in rows if r.kind == kind]
        mean, worst = _summary(mine)
        per_kind[kind] = KindSummary(mean=mean, worst=worst, n_families=len(mine))
    mean, worst = _summary(rows)
    return LofoReport(mean=mean, worst=worst, per_kind=per_kind, rows=tuple(rows))
