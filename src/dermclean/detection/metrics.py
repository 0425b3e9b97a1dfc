"""Detection metrics (torchmetrics where it fits), reported the honest way (docs/method.md, "Measuring honestly"):
pixel average precision first, pixel AUROC (inflated by the large background), Dice at the fitted
threshold, false-positive area on clean images, image-level AUROC.

Every function returns ``nan`` when the metric is undefined (no positives or no negatives), so a
missing artifact type shows up as missing, never as a perfect score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc, binary_average_precision, binary_precision_recall_curve,
)

from dermclean.constants import OUTLIER_CLASSES

NAN = float("nan")


def _flatten(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    for i, (m, g) in enumerate(zip(maps, masks)):
        if np.shape(m) != np.shape(g):
            raise ValueError(f"map {i} has shape {np.shape(m)} but its mask {np.shape(g)}; expected equal shapes")
    if not maps:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    preds = torch.from_numpy(np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps]))
    target = torch.from_numpy(np.concatenate([np.asarray(g, dtype=bool).ravel() for g in masks])).long()
    return preds, target


def _defined(target: torch.Tensor) -> bool:
    positives = int(target.sum())
    return 0 < positives < target.numel()


def pixel_average_precision(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Average precision (area under the PR curve, step-wise) over all pixels of all images pooled."""
    preds, target = _flatten(maps, masks)
    return float(binary_average_precision(preds, target)) if _defined(target) else NAN


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """ROC AUC over all pixels pooled."""
    preds, target = _flatten(maps, masks)
    return float(binary_auroc(preds, target)) if _defined(target) else NAN


def pixel_pr_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, bins: int = 200
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """(precision, recall) at ``bins`` thresholds spanning the map values (for figures); None if undefined."""
    preds, target = _flatten(maps, masks)
    if not _defined(target):
        return None
    lo, hi = float(preds.min()), float(preds.max())
    thresholds = torch.linspace(lo, hi if hi > lo else lo + 1e-6, bins)
    precision, recall, _ = binary_precision_recall_curve(preds, target, thresholds=thresholds)
    return precision.numpy(), recall.numpy()


def dice(pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> float:
    """Pooled Dice ``2 |P & G| / (|P| + |G|)`` over all images; nan when both are empty everywhere."""
    _flatten(pred_masks, gt_masks)
    inter = sum(int(np.logical_and(p, g).sum()) for p, g in zip(pred_masks, gt_masks))
    total = sum(int(np.asarray(p, bool).sum()) + int(np.asarray(g, bool).sum()) for p, g in zip(pred_masks, gt_masks))
    return 2.0 * inter / total if total else NAN


def mean_dice(pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> float:
    """Mean of per-image Dice over images whose ground truth is not empty."""
    values = [dice([p], [g]) for p, g in zip(pred_masks, gt_masks) if np.asarray(g, bool).any()]
    return float(np.mean(values)) if values else NAN


def false_positive_area(pred_masks: Sequence[np.ndarray]) -> float:
    """Mean fraction of flagged pixels over images that carry no artifact (each image weighs the same)."""
    if not pred_masks:
        return NAN
    return float(np.mean([np.asarray(p, bool).mean() for p in pred_masks]))


def image_auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC of image-level ``scores`` against 0/1 ``labels``; nan without both classes."""
    target = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    preds = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if preds.shape != target.shape:
        raise ValueError(f"{preds.numel()} scores but {target.numel()} labels")
    if not _defined(target) or torch.isnan(preds).any():
        return NAN
    return float(binary_auroc(preds, target))


def labelled_image_aurocs(any_scores: Sequence[float], type_scores: np.ndarray | Sequence[Sequence[float]],
                          labels: np.ndarray | Sequence[Sequence[float]]) -> dict[str, float | int]:
    """Image AUROC on human labels, as the ``detect`` stage and the benchmarks report it.

    ``labels`` (N, K) holds 0/1 per outlier class in ``OUTLIER_CLASSES`` order, NaN where unknown;
    rows with any unknown label are left out. ``any`` scores ``any_scores`` (N,) on images with at least
    one class against images with none; each class name scores its column of ``type_scores`` (N, K) on
    images with that class against the same clean images. ``images`` counts the rows kept.
    """
    labels = np.asarray(labels, dtype=np.float64)
    type_scores = np.asarray(type_scores, dtype=np.float64)
    any_scores = np.asarray(any_scores, dtype=np.float64)
    k = len(OUTLIER_CLASSES)
    if labels.ndim != 2 or labels.shape[1] != k or type_scores.shape != labels.shape \
            or any_scores.shape != labels.shape[:1]:
        raise ValueError(f"labelled_image_aurocs: expected labels and type_scores of shape (N, {k}) and any_scores "
                         f"(N,); got {labels.shape}, {type_scores.shape} and {any_scores.shape}")
    known = ~np.isnan(labels).any(axis=1)
    y, per_type, overall = labels[known], type_scores[known], any_scores[known]
    clean = y.sum(axis=1) == 0
    out: dict[str, float | int] = {"images": int(known.sum()), "any": image_auroc(overall, (~clean).astype(int))}
    for j, name in enumerate(OUTLIER_CLASSES):
        keep = clean | (y[:, j] == 1)
        out[name] = image_auroc(per_type[keep, j], y[keep, j].astype(int))
    return out


SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (("small", 0.0, 0.01), ("medium", 0.01, 0.05),
                                                      ("large", 0.05, 1.01))
"""Artifact size buckets by mask area as a fraction of the image: < 1 %, 1-5 %, >= 5 %."""


def size_bucket(mask: np.ndarray) -> str:
    frac = float(np.asarray(mask, bool).mean())
    for name, lo, hi in SIZE_BUCKETS:
        if lo <= frac < hi:
            return name
    return SIZE_BUCKETS[-1][0]
