"""Pixel AP per renderer family: how well a detector's maps find artifacts painted by each family.

Each family of :data:`dermclean.data.families.FAMILIES` is painted once onto every given clean image
(:func:`~dermclean.data.families.paint_family`, with its image degradation; one artifact per image,
seeded per image and family), the detector maps the painted images, and per family we report the
strict pixel AP, the boundary-tolerant AP (:func:`~dermclean.detection.lofo.boundary_tolerant_ap`)
and the false-positive area of the fitted mask on the same images before painting. A detector
trained with some families held out (``imagecond.corruption.exclude_families``, ``segment.data.exclude_families``) is judged on those families
apart (``held_out``): the leave-one-family-out figure.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.families import FAMILIES, paint_family
from dermclean.data.images import load_rgb
from dermclean.data.manifest import clean_mask, effect_groups, image_paths, in_split, labelled_rows, read_manifest
from dermclean.detection import metrics as M
from dermclean.detection.lofo import LofoReport, boundary_tolerant_ap, lofo_report
from dermclean.proof.stats import bootstrap_ci
from dermclean.proof.subgroups import auroc_stat


@dataclass(frozen=True, kw_only=True)
class FamilyResult:
    """One family's figures over the painted images."""

    kind: str
    family: str
    pixel_ap: float
    tolerant_ap: float
    n_images: int
    held_out: bool


@dataclass(frozen=True, kw_only=True)
class FamilyEvaluation:
    """Every family's result, the clean-image false-positive area, and the held-out families' report."""

    results: tuple[FamilyResult, ...]
    fp_area_clean: float
    held_out_report: LofoReport | None
    seen_report: LofoReport | None

    def as_dict(self) -> dict[str, Any]:
        return {"families": [r.__dict__ for r in self.results], "fp_area_clean": self.fp_area_clean,
                "held_out": self.held_out_report.as_dict() if self.held_out_report else None,
                "seen": self.seen_report.as_dict() if self.seen_report else None}


def _report(results: Sequence[FamilyResult], field: str) -> LofoReport | None:
    table: dict[str, dict[str, float]] = {}
    for r in results:
        value = getattr(r, field)
        if np.isfinite(value):
            table.setdefault(r.kind, {})[r.family] = value
    return lofo_report(table) if table else None


def clean_split_rows(manifest: str | os.PathLike[str], split: str, n_images: int | None = None) -> pd.DataFrame:
    """The manifest rows of the first ``n_images`` (all when ``None``) images of ``split`` labelled free of
    ruler/ink/patches."""
    df = read_manifest(manifest)
    rows = df[in_split(df, split) & clean_mask(df).to_numpy()]
    return rows.head(n_images) if n_images else rows


def clean_split_images(manifest: str | os.PathLike[str], split: str, n_images: int | None = None) -> list[np.ndarray]:
    """The images of :func:`clean_split_rows`."""
    return [load_rgb(p) for p in image_paths(clean_split_rows(manifest, split, n_images), manifest)]


def evaluate_families(detector: Any, images: Sequence[np.ndarray], *, seed: int = 0, tolerance_px: int = 1,
                      kinds: Sequence[str] = OUTLIER_CLASSES, held_out: Collection[str] = (),
                      report_on: str = "tolerant_ap") -> FamilyEvaluation:
    """Paint every family of ``kinds`` onto ``images`` (uint8 ``H x W x 3``, clean) and score ``detector``.

    ``held_out``: ``"kind/family"`` names the detector never saw in training; the reports summarise
    ``report_on`` (``tolerant_ap`` or ``pixel_ap``) over those and over the rest apart.
    """
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("evaluate_families: no clean images; expected at least one")
    clean = detector.detect(images)
    fp_area = M.false_positive_area([d.mask for d in clean])
    results = []
    for kind in kinds:
        for f_index, family in enumerate(FAMILIES[kind]):
            painted = [paint_family(im, kind, family, np.random.default_rng([seed, i, OUTLIER_CLASSES.index(kind),
                                                                            f_index]))
                       for i, im in enumerate(images)]
            dets = detector.detect([p.image for p in painted])
            maps, masks = [d.anomaly_map for d in dets], [p.mask for p in painted]
            results.append(FamilyResult(kind=kind, family=family, pixel_ap=M.pixel_average_precision(maps, masks),
                                        tolerant_ap=boundary_tolerant_ap(maps, masks, tolerance_px=tolerance_px),
                                        n_images=len(images), held_out=f"{kind}/{family}" in set(held_out)))
    return FamilyEvaluation(results=tuple(results), fp_area_clean=float(fp_area),
                            held_out_report=_report([r for r in results if r.held_out], report_on),
                            seen_report=_report([r for r in results if not r.held_out], report_on))



def type_auroc_intervals(labels: np.ndarray, type_scores: np.ndarray, *, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, dict[str, float | int]]:
    """Per outlier class: image AUROC of its score, images with that class against images with none of
    the three, with a bootstrap 95 % interval over all ``N`` rows.

    ``labels`` (N, 3) holds 0/1 in ``OUTLIER_CLASSES`` order, NaN where unknown: a row with an unknown
    label is never clean, but still counts as a positive of a class it carries. ``type_scores`` (N, 3).
    Returns ``{class: {auroc, low, high, positives, images}}`` (``images``: the rows compared).
    """
    labels, type_scores = np.asarray(labels, dtype=np.float64), np.asarray(type_scores, dtype=np.float64)
    clean = ~np.isnan(labels).any(axis=1) & (np.nan_to_num(labels, nan=1.0).sum(axis=1) == 0)
    out = {}
    for j, name in enumerate(OUTLIER_CLASSES):
        y = labels[:, j] == 1
        member = clean | y
        ci = bootstrap_ci(auroc_stat(y.astype(int), type_scores[:, j], member), len(labels), n_boot=n_boot, seed=seed)
        out[name] = {"auroc": ci.mean, "low": ci.low, "high": ci.high, "positives": int(y.sum()),
                     "images": int(member.sum())}
    return out


def real_label_report(detector: Any, manifest: str | os.PathLike[str], split: str, *, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """Image AUROC per type on the human labels of ``split`` (bootstrap 95 % CI over images), and the
    flagged area of the fitted mask on its clean images, overall and per acquisition effect.

    ``fp_area[effect]``: mean flagged share over the clean images labelled with ``effect`` (``none``:
    with none of them); ``flagged_images``: share of clean images with any flagged pixel.
    """
    manifest = Path(manifest)
    df = read_manifest(manifest)
    rows, _ = labelled_rows(df[in_split(df, split)])
    if rows.empty:
        raise ValueError(f"{manifest}: no {split!r} images with complete ruler/ink/patches labels")
    dets = detector.detect([load_rgb(p) for p in image_paths(rows, manifest)], list(rows["image_id"]))
    labels = rows[list(OUTLIER_CLASSES)].to_numpy(dtype=np.float64)
    types = np.array([[d.type_scores[c] for c in OUTLIER_CLASSES] for d in dets])
    scores = np.array([d.score for d in dets])
    clean = labels.sum(axis=1) == 0
    ci = bootstrap_ci(auroc_stat((~clean).astype(int), scores), len(rows), n_boot=n_boot, seed=seed)
    aurocs = {"any": {"auroc": ci.mean, "low": ci.low, "high": ci.high, "positives": int((~clean).sum())},
              **type_auroc_intervals(labels, types, n_boot=n_boot, seed=seed)}
    area = np.array([d.mask.mean() for d in dets])[clean]
    groups = effect_groups(rows.loc[clean])
    fp = {name: float(area[sel].mean()) if sel.any() else float("nan") for name, sel in groups.items()}
    counts = {name: int(sel.sum()) for name, sel in groups.items()}
    return {"split": split, "images": len(rows), "image_auroc": aurocs, "fp_area": fp, "fp_images": counts,
            "flagged_images": float((area > 0).mean()) if area.size else float("nan")}
