"""Detector bundles on disk: build one from trained model folders, save it, load it, score files with it.

Layout (``kind: detector`` so MLflow's pyfunc wrapper serves it with :func:`predict_paths`)::

    detector/
      config.json        {"kind": "detector", "detector_kind": "guided" | "imagecond" | "segment",
                          "config": {DetectionConfig}, "meta": {...}}
      unet/              modelio folder: the class-conditional UNet (guided, Wolleb et al. 2022)
                         or the image-conditioned model (imagecond, Baugh et al. 2024)
                         or the artifact segmenter (segment: dermclean.methods.segment)
      noisy_classifier/  optional modelio folder: classifier guidance and per-type scores
      threshold.json     :class:`~dermclean.detection.threshold.Threshold` fitted on validation data
      image_score.json   with ``image_score: fitted`` or ``stacked`` only: the
                         :class:`~dermclean.detection.image_score.ImageScore` fitted on validation labels
                         (stacked: with its map model, trained on the training split's labels)
      operating_points.json  a 0/1 flag threshold per type score and for the image score, fitted on
                         validation labels (:mod:`dermclean.detection.operating_points`; what ``audit`` flags with)

A fused bundle (:class:`~dermclean.detection.fusion.FusedDetector`, ``detector_kind: fused``) holds two
bundles and how their maps combine::

    detector_fused/
      config.json        {"kind": "detector", "detector_kind": "fused", "fusion": {rule, weight,
                          calibrations}, "meta": {...}}
      first/ second/     detector bundles as above (the first gives the scores and the config)
      threshold.json     fitted on the fused maps of clean validation images
      operating_points.json  the first bundle's (the scores are its)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from dermclean.config import from_dict
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb
from dermclean.detection.config import DetectionConfig
from dermclean.detection.detector import Component, Detector, NotADetectorError
from dermclean.detection.fusion import FusedDetector, MapCalibration
from dermclean.detection.image_score import ImageScore
from dermclean.detection.operating_points import OperatingPoints
from dermclean.detection.threshold import Threshold
from dermclean.env import pick_device
from dermclean.io import atomic_path, read_json, write_json
from dermclean.modelio import load_model_dir, read_model_config, save_model_dir
from dermclean.tracking.models import resolve_model


def _load_component(path: Path, device: torch.device) -> Component:
    module, _, meta = load_model_dir(path, device=device)
    return Component(module, read_model_config(path)["kind"], meta)


def build_detector(*, detector_kind: str, unet_dir: str | os.PathLike[str], config: DetectionConfig,
                   classifier_dir: str | os.PathLike[str] | None = None, device: str | torch.device | None = None,
                   threshold: Threshold | None = None) -> Detector:
    """A detector from trained model folders (``config.image_size`` is taken from the UNet)."""
    dev = pick_device(str(device) if device is not None else None)
    unet = _load_component(Path(unet_dir), dev)
    classifier = _load_component(Path(classifier_dir), dev) if classifier_dir else None
    size = getattr(unet.module.config, "image_size", config.image_size)
    return Detector(detector_kind=detector_kind, config=config.replace(image_size=int(size)), unet=unet,
                    classifier=classifier, threshold=threshold, device=dev, source=str(unet_dir))


def save_detector(detector: Detector | FusedDetector, path: str | os.PathLike[str], *,
                  meta: dict | None = None) -> Path:
    """Write the bundle folder atomically (replacing an existing one); the threshold must be fitted."""
    if detector.threshold is None:
        raise ValueError("save_detector: fit the threshold on validation data first (detection.evaluate.fit_threshold)")
    path = Path(path)
    if isinstance(detector, FusedDetector):
        return _save_fused(detector, path, meta)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        write_json(tmp / "config.json", {"kind": "detector", "detector_kind": detector.detector_kind,
                                         "config": detector.config.to_dict(), "meta": {**detector.meta, **(meta or {})}})
        parts = {"unet": detector.unet, "noisy_classifier": detector.classifier}
        for name, part in parts.items():
            if part is not None:
                save_model_dir(tmp / name, kind=part.kind, config=part.module.config, module=part.module,
                               meta=part.meta)
        write_json(tmp / "threshold.json", detector.threshold.to_dict())
        if detector.image_scorer is not None:
            write_json(tmp / "image_score.json", detector.image_scorer.to_dict())
        if detector.operating_points is not None:
            write_json(tmp / "operating_points.json", detector.operating_points.to_dict())
    return path


_MEMBERS = ("first", "second")


def _save_fused(detector: FusedDetector, path: Path, meta: dict | None) -> Path:
    if detector.calibrations is None:
        raise ValueError("save_detector: fit the fused detector on clean validation images first (FusedDetector.fit)")
    with atomic_path(path) as tmp:
        tmp.mkdir()
        for name, member in zip(_MEMBERS, detector.detectors, strict=True):
            save_detector(member, tmp / name, meta=meta)
        write_json(tmp / "config.json", {"kind": "detector", "detector_kind": FusedDetector.detector_kind,
                                         "fusion": detector.settings(), "meta": {**detector.meta, **(meta or {})}})
        write_json(tmp / "threshold.json", detector.threshold.to_dict())
        if detector.operating_points is not None:  # the first member's: what `audit` flags with
            write_json(tmp / "operating_points.json", detector.operating_points.to_dict())
    return path


def _load_fused(folder: Path, record: dict, threshold: Threshold, device: torch.device, source: str) -> FusedDetector:
    fusion = record.get("fusion") or {}
    try:
        calibrations = [MapCalibration.from_dict(c) for c in fusion["calibrations"]]
        weight, rule = float(fusion["weight"]), str(fusion["rule"])
    except (KeyError, TypeError) as exc:
        raise NotADetectorError(f"{folder}/config.json: a fused bundle needs fusion.rule, fusion.weight and "
                                f"fusion.calibrations ({exc})") from exc
    members = [load_detector(folder / name, device=device) for name in _MEMBERS]
    return FusedDetector(members, calibrations, weight=weight, rule=rule, threshold=threshold, source=source,
                         meta=record.get("meta", {}))


def _is_uri(text: str) -> bool:
    return text.startswith(("models:/", "runs:/")) or re.fullmatch(r"m-[0-9a-f]+", text) is not None


def load_detector(path_or_uri: str | os.PathLike[str], *,
                  device: str | torch.device | None = None) -> Detector | FusedDetector:
    """Load a bundle from a local folder or an MLflow model URI (``models:/dermclean-detector@champion``)."""
    text = str(path_or_uri)
    if _is_uri(text) or not (Path(text) / "config.json").is_file():
        folder = resolve_model(text)
    else:
        folder = Path(text)
    record = read_json(folder / "config.json")
    if record.get("kind") != "detector":
        raise NotADetectorError(f"{folder} holds a model of kind {record.get('kind')!r}, not a detector bundle; "
                                f"build one with pipelines/detect.py (dvc repro) or pass a detector folder")
    threshold_file = folder / "threshold.json"
    if not threshold_file.is_file():
        raise NotADetectorError(f"{folder}: threshold.json is missing; the bundle is incomplete")
    dev = pick_device(str(device) if device is not None else None)
    if record.get("detector_kind") == FusedDetector.detector_kind:
        return _load_fused(folder, record, Threshold.from_dict(read_json(threshold_file)), dev, text)
    classifier_dir = folder / "noisy_classifier"
    score_file, points_file = folder / "image_score.json", folder / "operating_points.json"
    return Detector(detector_kind=record["detector_kind"],
                    config=from_dict(DetectionConfig, record["config"], where=f"{folder}/config.json"),
                    unet=_load_component(folder / "unet", dev),
                    classifier=_load_component(classifier_dir, dev) if classifier_dir.is_dir() else None,
                    threshold=Threshold.from_dict(read_json(threshold_file)),
                    image_scorer=ImageScore.from_dict(read_json(score_file)) if score_file.is_file() else None,
                    device=dev, source=text, meta=record.get("meta", {}),
                    operating_points=OperatingPoints.from_dict(read_json(points_file)) if points_file.is_file() else None)


def predict_paths(model_dir: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]], *,
                  device: str | None = None, batch_size: int | None = None) -> pd.DataFrame:
    """Scores of image files: DataFrame ``image`` (file name), ``score``, ``ruler``, ``ink``, ``patches``."""
    detector = load_detector(model_dir, device=device)
    if batch_size:
        detector = detector.with_config(batch_size=int(batch_size))
    paths = [Path(p) for p in paths]
    results = detector.detect([load_rgb(p) for p in paths], [p.name for p in paths])
    return pd.DataFrame([{"image": r.image_name, "score": r.score, **r.type_scores} for r in results],
                        columns=["image", "score", *OUTLIER_CLASSES])
