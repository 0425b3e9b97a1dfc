"""The detector bundles of the pipeline: built from the trained models, fitted on validation, run over
the manifest (what the ``detect`` stage runs).

:func:`build_bundles` makes, given the diffusion model, the guided bundle (the class-conditional UNet and
the noise-aware classifier when there is one) and, given the image-conditioned model, the imagecond bundle (same
``detection`` settings, its DDIM steps and start level ``imagecond.sample``) and, given the segmenter, the
segment bundle (its maps are the segmenter's probabilities, its type scores its own), and given both, the
fused bundle (their maps on a common scale, combined as ``detection.fusion`` says:
:mod:`~dermclean.detection.fusion`). :func:`fit_and_save` fits each
one's pixel threshold and image score on validation (:func:`~dermclean.detection.evaluate.fit_on_validation`),
then its per-type flag thresholds (:func:`~dermclean.detection.evaluate.fit_operating_points`), and saves
it. :func:`detect_manifest` writes the ``detect`` contract over every manifest image with
the bundle ``detection.pipeline_detector`` names, keyed by image id, and returns the stage's figures.
:func:`fit_and_detect` does both, as the stage does, with one :class:`~dermclean.detection.memo.MapMemo`
shared by the bundles, so that each model maps each image once: the fits read the same validation
images several times, a fused bundle's members are the other bundles, and the manifest holds the
validation split again.
With ``detection.image_score: fitted`` or ``stacked`` the ``val_*`` image AUROCs are in-sample (the
image score was fitted on those labels; a stacked score's map model on the train split's); the
``test_*`` ones are not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb
from dermclean.data.manifest import image_paths, read_manifest
from dermclean.detection.config import DetectionConfig, detection_config, fusion_settings, imagecond_detection_config
from dermclean.detection.contract import detect_to_folder, run_info
from dermclean.detection.detector import Detector
from dermclean.detection.storage import build_detector, save_detector
from dermclean.detection.evaluate import fit_on_validation, fit_operating_points
from dermclean.detection.family_eval import clean_split_images
from dermclean.detection.fusion import FusedDetector
from dermclean.detection.memo import remembering
from dermclean.detection.metrics import labelled_image_aurocs
from dermclean.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A pipeline detector and the folder it is saved to."""

    detector: Detector | FusedDetector
    out: Path


def build_bundles(params: dict[str, Any], *, diffusion: Path | None, imagecond: Path | None, out_model: Path,
                  out_model_imagecond: Path | None = None, device: str | None = None, segmenter: Path | None = None,
                  out_model_segment: Path | None = None,
                  out_model_fused: Path | None = None,
                  chosen: str | None = None) -> tuple[dict[str, Bundle], str]:
    """``{"guided": ..., "imagecond": ..., "segment": ..., "fused": ...}`` bundles (unfitted; imagecond and
    segment when their model is given, fused (their maps combined, ``detection.fusion``) when both are) and
    the name ``chosen`` gives, else ``detection.pipeline_detector``. Without ``diffusion`` there is no
    guided bundle and no noise-aware classifier, so the imagecond bundle scores images as the segment
    bundle does (:func:`segment_config`)."""
    config, pipeline = detection_config(params)
    chosen = chosen or pipeline
    bundles: dict[str, Bundle] = {}
    classifier_dir = None
    if diffusion is not None:
        classifier_dir = diffusion / "noisy_classifier"
        classifier_dir = classifier_dir if (classifier_dir / "config.json").is_file() else None
        bundles["guided"] = Bundle(detector=build_detector(detector_kind="guided", unet_dir=diffusion / "unet",
                                                           config=config, classifier_dir=classifier_dir, device=device),
                                   out=out_model)
    if imagecond is not None:
        imagecond_config = imagecond_detection_config(params)
        if diffusion is None:
            imagecond_config = segment_config(imagecond_config)
        bundles["imagecond"] = Bundle(
            detector=build_detector(detector_kind="imagecond", unet_dir=imagecond, config=imagecond_config,
                                    classifier_dir=classifier_dir, device=device),
            out=out_model_imagecond or out_model.with_name(out_model.name + "_imagecond"))
    if segmenter is not None:
        bundles["segment"] = Bundle(
            detector=build_detector(detector_kind="segment", unet_dir=segmenter, config=segment_config(config),
                                    device=device),
            out=out_model_segment or out_model.with_name(out_model.name + "_segment"))
    rule, weight = fusion_settings(params)
    if imagecond is not None and segmenter is not None:
        bundles["fused"] = Bundle(
            detector=FusedDetector([bundles["imagecond"].detector, bundles["segment"].detector], weight=weight,
                                   rule=rule),
            out=out_model_fused or out_model.with_name(out_model.name + "_fused"))
    if chosen not in bundles:
        raise ConfigError(f"the detector to use is {chosen!r}; expected one of {sorted(bundles)} "
                          f"(imagecond needs the image-conditioned model, segment the segmenter, fused both)")
    return bundles, chosen


def segment_config(config: DetectionConfig) -> DetectionConfig:
    """The segment bundle's config: the segmenter scores types itself, without a noisy classifier, so a
    ``fitted`` or ``stacked`` image score (which reads that classifier) becomes ``auto``."""
    return config.replace(image_score="auto") if config.image_score in ("fitted", "stacked") else config


def fit_and_save(bundles: dict[str, Bundle], manifest: Path, *, seed: int, meta: dict[str, Any]) -> dict[str, Any]:
    """Fit every bundle's threshold and image score on the validation split, save it; returns the figures.

    A fused bundle is fitted after its members (its calibrations and threshold on the clean validation
    images; its scores are its first member's)."""
    metrics: dict[str, Any] = {}
    for name, bundle in bundles.items():
        detector = bundle.detector
        if isinstance(detector, FusedDetector):
            detector.fit(clean_split_images(manifest, "val"), fitted_on=f"val clean images of {manifest.name}")
            save_detector(detector, bundle.out, meta=meta)
            metrics[f"{name}_threshold"] = detector.threshold.value
            log.info("%s detector saved to %s (threshold %.4f)", name, bundle.out, detector.threshold.value)
            continue
        detector.threshold, detector.image_scorer = fit_on_validation(detector, manifest, split="val", seed=seed)
        detector.operating_points = fit_operating_points(detector, manifest, split="val")
        save_detector(detector, bundle.out, meta=meta)
        metrics[f"{name}_threshold"] = detector.threshold.value
        if detector.image_scorer is not None:
            w_classifier, w_map = detector.image_scorer.weights
            metrics.update({f"{name}_image_score_w_classifier": w_classifier, f"{name}_image_score_w_map": w_map})
            if detector.image_scorer.map_model is not None:
                metrics[f"{name}_map_model_n_train"] = detector.image_scorer.map_model.n_images
        log.info("%s detector saved to %s (threshold %.4f)", name, bundle.out, detector.threshold.value)
    return metrics


def fit_and_detect(bundles: dict[str, Bundle], chosen: str, manifest: Path, out: Path, *, seed: int,
                   meta: dict[str, Any]) -> dict[str, Any]:
    """:func:`fit_and_save` every bundle, then :func:`detect_manifest` with ``bundles[chosen]``, each image
    mapped once per model (the manifest pass reads what the fits mapped and keeps nothing new)."""
    with remembering(b.detector for b in bundles.values()) as memo:
        metrics = fit_and_save(bundles, manifest, seed=seed, meta=meta)
        with memo.frozen():
            metrics.update(detect_manifest(bundles[chosen], chosen, manifest, out))
    log.info("maps computed %d times, reused %d times (%d kept, %.0f MB)", memo.misses, memo.hits, len(memo),
             memo.nbytes / 2**20)
    return metrics


def split_aurocs(scores: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, float]:
    """Image AUROC per split from the scores of every manifest image (labelled rows only)."""
    df = manifest.merge(scores, on="image_id", suffixes=("", "_score"))
    out = {}
    for split in ("val", "test"):
        part = df[df["split"] == split]
        labels = part[list(OUTLIER_CLASSES)].to_numpy(dtype=float, na_value=np.nan)  # nullable Int8, <NA> unknown
        figures = labelled_image_aurocs(part["score"].to_numpy(float),
                                        part[[f"{k}_score" for k in OUTLIER_CLASSES]].to_numpy(float), labels)
        out.update({f"{split}_image_auroc_{k}": v for k, v in figures.items() if k != "images"})
    return out


def detect_manifest(bundle: Bundle, name: str, manifest_path: Path, out: Path) -> dict[str, Any]:
    """The ``detect`` contract over every manifest image (keyed by image id) with ``bundle``; its figures."""
    detector = bundle.detector
    manifest = read_manifest(manifest_path)
    paths = image_paths(manifest, manifest_path)
    items = ((iid, p.name, load_rgb(p)) for iid, p in zip(manifest["image_id"], paths))
    log.info("detecting over %d manifest images with the %s bundle", len(paths), name)
    info = run_info(detector, model=str(bundle.out), device=detector.device, seconds=0.0, n_images=len(paths))
    scores, seconds = detect_to_folder(detector, items, out, n_total=len(paths), extra_columns=("image_id",), info=info)
    metrics: dict[str, Any] = {"pipeline_detector": name, "image_score": detector.image_score_kind,
                               "n_images": len(scores), "seconds_per_image": seconds / max(len(scores), 1)}
    metrics["mean_mask_area"] = float(np.mean([(np.load(out / "maps" / f"{i}.npy") > detector.threshold.value).mean()
                                               for i in scores["image_id"]]))
    metrics.update(split_aurocs(scores, manifest))
    return metrics
