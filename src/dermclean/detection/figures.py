"""Evaluation figures: a grid of image / anomaly map / mask / ground truth, and per-type PR curves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dermclean.constants import OUTLIER_CLASSES
from dermclean.detection.evaluate import EvaluationResult
from dermclean.io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(result: EvaluationResult, path: str | os.PathLike[str], *, title: str = "") -> Path | None:
    """One row per example: painted image, anomaly map, predicted mask, ground-truth mask (PNG)."""
    if not result.examples:
        return None
    plt = _plt()
    rows = len(result.examples)
    fig, axes = plt.subplots(rows, 4, figsize=(8, 2 * rows), squeeze=False)
    for r, ex in enumerate(result.examples):
        panels = [(ex.image, None, "painted (held-out style)"), (ex.detection.anomaly_map, "magma", "anomaly map"),
                  (ex.pred_mask, "gray", "mask"), (ex.gt_mask, "gray", "ground truth")]
        for c, (img, cmap, label) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(np.asarray(img), cmap=cmap) if cmap else ax.imshow(np.asarray(img))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(ex.kind, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save_png(fig, path)


def save_pr_curves(results: dict[str, EvaluationResult], path: str | os.PathLike[str]) -> Path:
    """Per-type pixel precision-recall curves, one panel per type, one line per detector (PNG)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(OUTLIER_CLASSES), figsize=(4 * len(OUTLIER_CLASSES), 3.6), squeeze=False)
    for k, kind in enumerate(OUTLIER_CLASSES):
        ax = axes[0][k]
        for name, result in results.items():
            if kind in result.curves:
                precision, recall = result.curves[kind]
                ap = result.metrics.get(f"pixel_ap_{kind}", float("nan"))
                ax.plot(recall, precision, label=f"{name} (AP {ap:.2f})")
        ax.set_title(f"{kind}: pixel PR", fontsize=9)
        ax.set_xlabel("recall"), ax.set_ylabel("precision")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    return _save_png(fig, path)


def _save_png(fig, path: str | os.PathLike[str]) -> Path:
    """Lay out ``fig``, write it as PNG atomically, close it."""
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    _plt().close(fig)
    return path
