"""Evaluate a detector on a manifest split, honestly (docs/method.md, "Measuring honestly").

(a) **Painted artifacts, exact masks**: images of the split whose labels say they carry none of
    ruler/ink/patches get one artifact each (kinds in turn) painted by the insertion renderers in
    styles *held out from training* (``dermclean.data.artifacts.HELDOUT_STYLES``). Pixel AP overall /
    per type / by size bucket, pixel AUROC, Dice at the fitted threshold, and the false-positive
    area on the same images before painting.
(b) **Human labels**: image AUROC of the image score for any of the three (artifact images against
    clean images) and of each per-type score (images with that type against clean images).
(c) **Synthetic ground truth**: when ``masks/<image_id>.png`` lies beside the manifest (the embedded
    generator's uint8 bit-field, bit i = ``ARTIFACT_FLAGS[i]``), pixel AP of the labelled artifact
    images against the union of their ruler/ink/patches bits.

The threshold is the detector's (fitted on validation). When a detection config override changes
the maps (a sweep trial) it is refitted on the validation split's clean images; on ``split="val"``
these are the images (a) paints, so Dice and FP area are then optimistic, while pixel AP (the
sweep's objective) does not depend on a threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from dermclean.constants import ARTIFACT_FLAGS, OUTLIER_CLASSES
from dermclean.data.artifacts import HELDOUT_STYLES, paint_artifact
from dermclean.data.images import load_rgb, resize_map
from dermclean.data.manifest import clean_mask, image_paths, labelled_rows, read_manifest
from dermclean.detection import metrics as M
from dermclean.detection.detector import Detection
from dermclean.detection.storage import load_detector
from dermclean.detection.image_score import ImageScore, MapModel, any_artifact_probability
from dermclean.detection.memo import timed_detect
from dermclean.detection.operating_points import OperatingPoints
from dermclean.detection.threshold import Threshold, threshold_settings
from dermclean.values import plain


@dataclass
class EvalExample:
    """One painted validation/test image for the figure grid."""

    image: np.ndarray
    gt_mask: np.ndarray
    kind: str
    detection: Detection
    pred_mask: np.ndarray


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    examples: list[EvalExample] = field(default_factory=list)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    threshold: Threshold | None = None


def _as_detector(detector_like: Any, device: str | None):
    if isinstance(detector_like, (str, os.PathLike)):
        return load_detector(detector_like, device=device)
    if not hasattr(detector_like, "detect"):
        raise TypeError(f"expected a detector (with .detect) or a bundle path/URI; got {type(detector_like).__name__}")
    return detector_like


def _split_rows(manifest_path: Path, split: str) -> pd.DataFrame:
    df = read_manifest(manifest_path)
    df = df[df["split"] == split].reset_index(drop=True)
    if df.empty:
        raise ValueError(f"{manifest_path}: no rows with split {split!r}; run the prepare stage with splits")
    df["abs_path"] = [str(p) for p in image_paths(df, manifest_path)]
    return df


def _cap(df: pd.DataFrame, n_max: int | None, seed: int) -> pd.DataFrame:
    if n_max is None or len(df) <= n_max:
        return df
    return df.sample(n=n_max, random_state=seed).sort_index()


def _load(df: pd.DataFrame) -> list[np.ndarray]:
    return [load_rgb(p) for p in df["abs_path"]]


def fit_threshold(detector: Any, manifest_path: str | os.PathLike[str], *, split: str = "val",
                  n_max: int | None = None, seed: int = 0) -> Threshold:
    """Fit the detector's pixel threshold on the clean images of ``split`` (validation only)."""
    df = _split_rows(Path(manifest_path), split)
    clean = _cap(df[clean_mask(df).to_numpy()], n_max, seed)
    dets = detector.detect(_load(clean), list(clean["image_id"]))
    return _threshold_of(detector, dets, manifest_path, split)


def _threshold_of(detector: Any, clean_dets: list[Detection], manifest_path: str | os.PathLike[str],
                  split: str) -> Threshold:
    return Threshold.fit([d.anomaly_map for d in clean_dets], **threshold_settings(detector.config),
                         fitted_on=f"{split} clean images of {Path(manifest_path).name}")


def fit_map_model(detector: Any, manifest_path: str | os.PathLike[str], *, split: str = "train",
                  n_max: int | None = None, seed: int = 0) -> MapModel:
    """The stacked image score's :class:`MapModel`, trained on the detector's maps of the ``split`` images
    whose labels are complete (at most ``n_max``, a seeded draw)."""
    manifest_path = Path(manifest_path)
    rows, has_artifact = labelled_rows(_split_rows(manifest_path, split))
    if n_max is not None and len(rows) > n_max:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=n_max, replace=False))
        rows, has_artifact = rows.iloc[pick], has_artifact[pick]
    dets = detector.detect(_load(rows), list(rows["image_id"]))
    return MapModel.fit(np.stack([d.map_features for d in dets]), has_artifact,
                        fitted_on=f"{split} images of {manifest_path.name} with complete labels")


def fit_on_validation(detector: Any, manifest_path: str | os.PathLike[str], *, split: str = "val",
                      seed: int = 0) -> tuple[Threshold, ImageScore | None]:
    """The pixel threshold and, with ``detection.image_score: fitted`` or ``stacked``, the :class:`ImageScore`.

    Without a fitted image score this is :func:`fit_threshold`. With one, a single detection pass over
    the images of ``split`` whose labels are complete gives both: the threshold from the clean ones
    (the same images :func:`fit_threshold` uses), the image score from all of them (any of ruler / ink /
    patches against none). ``stacked`` first trains its map model on the ``train`` split
    (:func:`fit_map_model`, ``detection.map_model_images`` of them at most).
    """
    kind = detector.config.image_score
    if kind not in ("fitted", "stacked"):
        return fit_threshold(detector, manifest_path, split=split, seed=seed), None
    if detector.classifier is None:
        raise ValueError(f"detection.image_score {kind!r} needs a noisy classifier in the bundle "
                         "(diffusion.noisy_classifier); use auto or map without one")
    manifest_path = Path(manifest_path)
    map_model = (fit_map_model(detector, manifest_path, n_max=detector.config.map_model_images, seed=seed)
                 if kind == "stacked" else None)
    rows, has_artifact = labelled_rows(_split_rows(manifest_path, split))
    clean = clean_mask(rows).to_numpy()
    dets = detector.detect(_load(rows), list(rows["image_id"]))
    threshold = _threshold_of(detector, [d for d, c in zip(dets, clean) if c], manifest_path, split)
    p_any = any_artifact_probability(np.array([[d.type_scores[k] for k in OUTLIER_CLASSES] for d in dets]))
    scorer = ImageScore.fit(p_any, np.array([d.map_peak for d in dets]), has_artifact, map_model=map_model,
                            features=np.stack([d.map_features for d in dets]),
                            fitted_on=f"{split} images of {manifest_path.name} with complete labels")
    return threshold, scorer


def fit_operating_points(detector: Any, manifest_path: str | os.PathLike[str], *,
                         split: str = "val") -> OperatingPoints:
    """Per-type and image-score flag thresholds on the ``split`` images with any known label (validation only;
    run after the image score is fitted, since the ``any`` point reads it)."""
    df = _split_rows(Path(manifest_path), split)
    labels = df[list(OUTLIER_CLASSES)].astype("Float64")
    labelled = labels.notna().any(axis=1).to_numpy()
    df, labels = df[labelled], labels[labelled]
    dets = detector.detect(_load(df), list(df["image_id"]))
    scores = pd.DataFrame([{"score": d.score, **d.type_scores} for d in dets], index=df.index)
    return OperatingPoints.fit(scores, labels, fitted_on=f"{split} images of {Path(manifest_path).name} with labels")


def _heldout_style(kind: str, rng: np.random.Generator) -> str | None:
    """A held-out renderer style for ``kind`` (None when the renderer holds none out for it)."""
    if isinstance(HELDOUT_STYLES, dict):
        styles = list(HELDOUT_STYLES.get(kind, ()))
    else:
        styles = [s.split("/", 1)[1] if "/" in s else s for s in HELDOUT_STYLES
                  if "/" not in s or s.split("/", 1)[0] == kind]
    return str(rng.choice(styles)) if styles else None


def paint_heldout(images: list[np.ndarray], *, seed: int) -> list[Any]:
    """One artifact per image (ruler, ink, patches in turn), held-out styles, exact masks (``Painted``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, image in enumerate(images):
        kind = OUTLIER_CLASSES[i % len(OUTLIER_CLASSES)]
        out.append(paint_artifact(image, kind, rng, style=_heldout_style(kind, rng)))
    return out


def _synthetic_masks(df: pd.DataFrame, manifest_path: Path) -> list[np.ndarray] | None:
    """Union of the ruler/ink/patches bits of ``masks/<image_id>.png`` per row, or None if absent."""
    folder = manifest_path.parent / "masks"
    files = [folder / f"{i}.png" for i in df["image_id"]]
    if df.empty or not all(f.is_file() for f in files):
        return None
    bits = sum(1 << ARTIFACT_FLAGS.index(c) for c in OUTLIER_CLASSES)
    return [(np.asarray(Image.open(f)) & bits) > 0 for f in files]


def _pixel_block(prefix: str, maps: list[np.ndarray], gts: list[np.ndarray], kinds: list[str],
                 preds: list[np.ndarray]) -> dict[str, float]:
    out = {f"{prefix}pixel_ap": M.pixel_average_precision(maps, gts), f"{prefix}pixel_auroc": M.pixel_auroc(maps, gts),
           f"{prefix}dice": M.dice(preds, gts), f"{prefix}mean_dice": M.mean_dice(preds, gts)}
    for kind in OUTLIER_CLASSES:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        out[f"{prefix}pixel_ap_{kind}"] = M.pixel_average_precision([maps[i] for i in idx], [gts[i] for i in idx])
        out[f"{prefix}dice_{kind}"] = M.dice([preds[i] for i in idx], [gts[i] for i in idx])
    return out


def evaluate_detector_full(detector_like: Any, manifest_path: str | os.PathLike[str], *, split: str = "val",
                           seed: int = 0, n_max: int | None = None, overrides: dict[str, Any] | None = None,
                           device: str | None = None, n_examples: int = 6) -> EvaluationResult:
    """:func:`evaluate_detector` plus examples for the figure grid and per-type PR curves."""
    manifest_path = Path(manifest_path)
    det = _as_detector(detector_like, device)
    if overrides:
        det = det.with_config(**overrides)
    if n_max is None:
        n_max = getattr(det.config, "eval_max_images", None)
    df = _split_rows(manifest_path, split)
    clean_df = _cap(df[clean_mask(df).to_numpy()], n_max, seed)
    labels = df[list(OUTLIER_CLASSES)]
    art_df = _cap(df[(labels.notna().all(axis=1) & (labels.fillna(0).sum(axis=1) > 0)).to_numpy()], n_max, seed)
    if clean_df.empty:
        raise ValueError(f"{manifest_path}: split {split!r} has no clean images (none of {OUTLIER_CLASSES}); "
                         f"cannot paint artifacts or measure false positives")
    seconds, n_detected = 0.0, 0

    def run(images: list[np.ndarray], names: list[str]) -> list[Detection]:
        nonlocal seconds, n_detected
        result, spent = timed_detect(det, images, names)
        seconds += spent
        n_detected += len(images)
        return result

    clean_imgs = _load(clean_df)
    clean_dets = run(clean_imgs, list(clean_df["image_id"]))
    threshold = det.threshold
    fitted_on = (threshold.fitted_on or "detector bundle (validation)") if threshold is not None else ""
    if threshold is None:
        if split == "val":
            threshold = _threshold_of(det, clean_dets, manifest_path, split)
        else:
            threshold = fit_threshold(det, manifest_path, split="val", n_max=n_max, seed=seed)
        fitted_on = threshold.fitted_on

    painted = paint_heldout(clean_imgs, seed=seed)
    painted_dets = run([p.image for p in painted], [f"{i}_painted" for i in clean_df["image_id"]])
    maps = [d.anomaly_map for d in painted_dets]
    gts = [np.asarray(p.mask, bool) for p in painted]
    kinds = [p.kind for p in painted]
    preds = [threshold.apply(m) for m in maps]
    metrics: dict[str, Any] = {"detector": getattr(det, "name", type(det).__name__), "split": split,
                               "image_score": getattr(det, "image_score_kind", "classical"),
                               "threshold": threshold.value, "threshold_fitted_on": fitted_on,
                               "n_clean": len(clean_df), "n_painted": len(painted), "n_artifact_images": len(art_df)}
    metrics.update(_pixel_block("", maps, gts, kinds, preds))
    buckets = [M.size_bucket(g) for g in gts]
    for name, _, _ in M.SIZE_BUCKETS:
        idx = [i for i, b in enumerate(buckets) if b == name]
        metrics[f"pixel_ap_size_{name}"] = M.pixel_average_precision([maps[i] for i in idx], [gts[i] for i in idx])
        metrics[f"n_size_{name}"] = len(idx)
    metrics["fp_area_clean"] = M.false_positive_area([threshold.apply(d.anomaly_map) for d in clean_dets])

    art_dets = run(_load(art_df), list(art_df["image_id"])) if len(art_df) else []
    metrics.update(_labelled_block(art_df, art_dets, clean_dets, manifest_path, threshold))
    metrics["seconds_per_image"] = seconds / max(n_detected, 1)
    examples = [EvalExample(image=p.image, gt_mask=g, kind=p.kind, detection=d, pred_mask=pm)
                for p, g, d, pm in list(zip(painted, gts, painted_dets, preds))[:n_examples]]
    return EvaluationResult(metrics={k: plain(v) for k, v in metrics.items()}, examples=examples,
                            curves=_pr_curves(maps, gts, kinds), threshold=threshold)


def _labelled_block(art_df: pd.DataFrame, art_dets: list[Detection], clean_dets: list[Detection],
                    manifest_path: Path, threshold: Threshold) -> dict[str, Any]:
    """Image AUROC per type on the labelled artifact images against the clean ones, and the pixel figures on
    the labelled images' own masks when the data set has them (synthetic)."""
    both = art_dets + clean_dets
    art_labels = art_df[list(OUTLIER_CLASSES)].to_numpy(dtype=float, na_value=np.nan)
    figures = M.labelled_image_aurocs([d.score for d in both],
                                      np.array([[d.type_scores[k] for k in OUTLIER_CLASSES] for d in both]),
                                      np.vstack([art_labels, np.zeros((len(clean_dets), len(OUTLIER_CLASSES)))]))
    out: dict[str, Any] = {"image_auroc_any": figures["any"]}
    for k, kind in enumerate(OUTLIER_CLASSES):
        out[f"n_images_{kind}"] = int((art_labels[:, k] == 1).sum())
        out[f"image_auroc_{kind}"] = figures[kind]
    synth = _synthetic_masks(art_df, manifest_path) if len(art_df) else None
    if synth is not None:
        kinds_lab = [next((c for c in OUTLIER_CLASSES if int(r[c]) == 1)) for _, r in art_df.iterrows()]
        s_maps = [d.anomaly_map for d in art_dets]
        s_gts = [g if g.shape == m.shape else _resize_mask(g, m.shape) for g, m in zip(synth, s_maps)]
        out.update(_pixel_block("labelled_", s_maps, s_gts, kinds_lab, [threshold.apply(m) for m in s_maps]))
    return out


def _pr_curves(maps: list[np.ndarray], gts: list[np.ndarray], kinds: list[str]) -> dict[str, Any]:
    """Pixel PR curve per outlier type over the painted images (types without a positive pixel left out)."""
    curves = {}
    for kind in OUTLIER_CLASSES:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        curve = M.pixel_pr_curve([maps[i] for i in idx], [gts[i] for i in idx])
        if curve is not None:
            curves[kind] = curve
    return curves


def _resize_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return resize_map(mask, tuple(shape[:2]))


def evaluate_detector(detector_like: Any, manifest_path: str | os.PathLike[str], *, split: str = "val",
                      seed: int = 0, n_max: int | None = None, overrides: dict[str, Any] | None = None,
                      device: str | None = None) -> dict[str, Any]:
    """Metrics dict for a detector (bundle path/URI, :class:`Detector` or :class:`ClassicalDetector`).

    ``overrides`` (e.g. ``{"noise_level": 300, "guidance_scale": 5.0, "guidance": "cfg", "steps": 10}``)
    change the detection config without re-saving anything (Ray Tune trials call this). Keys:
    ``pixel_ap`` (first), ``pixel_ap_<type>``, ``pixel_ap_size_<small|medium|large>``, ``pixel_auroc``,
    ``dice``, ``mean_dice``, ``dice_<type>``, ``fp_area_clean``, ``image_auroc_any``,
    ``image_auroc_<type>``, ``labelled_*`` (synthetic masks), ``seconds_per_image``, counts.
    """
    return evaluate_detector_full(detector_like, manifest_path, split=split, seed=seed, n_max=n_max,
                                  overrides=overrides, device=device, n_examples=0).metrics
