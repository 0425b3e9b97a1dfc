"""What the promote stage reads: the trained models' ``mlflow_run.json`` and the metrics files.

Model records (written by the training stages after logging to MLflow)::

    models/detector/mlflow_run.json                      {"run_id": ..., "model_uri": ...}  kind guided
    models/detector_imagecond/mlflow_run.json            (optional)                         kind imagecond
    models/classifiers/<variant>/seed<k>/mlflow_run.json                                    variant, seed

An optional ``"kind"`` (or ``"bundle"``) key in a detector's record overrides the kind implied by its folder.

Metrics read (numbers may be plain floats or ``{"mean"|"value"|"point": float, ...}``):

``metrics/detection_eval.json`` — validation figures per detector kind (preferred layout first)::

    {"guided": {"val": {"pixel_ap": 0.41, "image_auroc": 0.77}, "test": {...}}, "imagecond": {...}}
    {"val": {"guided": {"pixel_ap": ..., "image_auroc": ...}}}           # also accepted
    {"val": {"pixel_ap": ..., "image_auroc": ...}}                        # single detector = guided

When no validation section exists, the layout ``pipelines/evaluate_detection.py`` writes is used:
``{"configured": "guided_cfg", "split": "test", "detectors": {"guided_cfg": {...}, "imagecond": {...}}}``
(guided = the ``configured`` entry). Its figures are from the split it names (``test`` unless it
says otherwise); the metrics record that split and every gate message names it, so a promotion
decided on test figures says so.

``metrics/shortcut.json`` — per classifier variant and seed, on the raw test / trap images::

    {"classifiers": {"raw": {"seed0": {"id_auroc": 0.86, "trap_auroc": 0.61, "flip_rate": 0.34}}, ...}}
    {"raw": {"seed0": {...}}}  or  {"raw": {"seeds": {"0": {...}}}}                # also accepted

``flip_rate`` may be a number or a dict; for a dict the ``overall`` value is used, else the larger
of ``benign_to_malignant`` and ``malignant_to_benign`` (the worse direction). Accepted synonyms:
``auroc``/``test_auroc``/``in_distribution_auroc`` for ``id_auroc``; ``auroc_trap`` for
``trap_auroc``; ``ap_pixel``/``pixel_average_precision`` for ``pixel_ap``; ``auroc_image``/
``image_auroc_any`` for ``image_auroc``. Anything missing makes the gates that need it fail (never pass by default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermclean.tracking.promotion.gates import ClassifierMetrics, DetectorMetrics

DETECTOR_FOLDERS = {"detector": "guided", "detector_imagecond": "imagecond"}
DETECTOR_MODEL = "dermclean-detector"
CLASSIFIER_MODEL = "dermclean-classifier-{variant}"
RAW_VARIANT = "raw"


class PromotionInputError(ValueError):
    """A model record or metrics file that cannot be read; the message names the file."""


@dataclass(frozen=True, kw_only=True)
class TrainedModel:
    """One trained model to register: where its record is and how to tag its version."""

    registered_name: str
    run_id: str
    model_uri: str
    record: Path
    tags: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    variant: str = ""
    seed: int | None = None


def read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PromotionInputError(f"{path}: cannot read the MLflow run record ({exc})") from exc
    if not isinstance(data, Mapping) or not data.get("run_id") or not data.get("model_uri"):
        raise PromotionInputError(f"{path}: expected a JSON object with 'run_id' and 'model_uri'; got {data!r}")
    return dict(data)


def discover_models(models_dir: str | Path) -> list[TrainedModel]:
    """Every trained model with an ``mlflow_run.json`` under ``models_dir`` (layout in module doc)."""
    models_dir = Path(models_dir)
    found: list[TrainedModel] = []
    for folder, default_kind in DETECTOR_FOLDERS.items():
        record_path = models_dir / folder / "mlflow_run.json"
        if record_path.is_file():
            record = read_record(record_path)
            kind = str(record.get("kind") or record.get("bundle") or default_kind)
            found.append(TrainedModel(registered_name=DETECTOR_MODEL, run_id=record["run_id"],
                                      model_uri=record["model_uri"], record=record_path,
                                      tags={"kind": kind}, kind=kind))
    for record_path in sorted((models_dir / "classifiers").glob("*/seed*/mlflow_run.json")):
        match = re.fullmatch(r"seed(\d+)", record_path.parent.name)
        if not match:
            continue
        variant, seed = record_path.parent.parent.name, int(match.group(1))
        record = read_record(record_path)
        found.append(TrainedModel(registered_name=CLASSIFIER_MODEL.format(variant=variant),
                                  run_id=record["run_id"], model_uri=record["model_uri"], record=record_path,
                                  tags={"variant": variant, "seed": str(seed)}, variant=variant, seed=seed))
    return found


def read_metrics_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when absent (gates needing it then fail, saying so)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PromotionInputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise PromotionInputError(f"{path}: expected a JSON object; got {type(data).__name__}")
    return dict(data)


def _number(value: Any) -> float | None:
    if isinstance(value, Mapping):
        for key in ("mean", "value", "point", "overall"):
            if key in value:
                return _number(value[key])
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _pick(section: Any, names: tuple[str, ...]) -> float | None:
    for name in names:
        value = _number(_get(section, name))
        if value is not None:
            return value
    return None


def detector_metrics(data: Mapping[str, Any], kind: str) -> DetectorMetrics | None:
    """Validation metrics of detector ``kind`` from ``detection_eval.json`` content (module doc)."""
    candidates = [(_get(data, kind, "val"), "val"), (_get(data, "val", kind), "val"),
                  (_get(data, "detectors", kind, "val"), "val")]
    if kind == "guided":
        candidates += [(_get(data, "val"), "val"), (data, "val")]
    split = str(data.get("split") or "test")
    name = data.get("configured") if kind == "guided" and isinstance(data.get("configured"), str) else kind
    candidates.append((_get(data, "detectors", name), split))
    for section, where in candidates:
        pixel_ap = _pick(section, ("pixel_ap", "ap_pixel", "pixel_average_precision"))
        image_auroc = _pick(section, ("image_auroc", "auroc_image", "image_auroc_any"))
        if pixel_ap is not None or image_auroc is not None:
            return DetectorMetrics(pixel_ap=pixel_ap, image_auroc=image_auroc, split=where)
    return None


def _flip_rate(section: Any) -> float | None:
    value = _get(section, "flip_rate")
    if isinstance(value, Mapping):
        if _number(value) is not None:
            return _number(value)
        directions = [_number(value.get(k)) for k in ("benign_to_malignant", "malignant_to_benign")]
        directions = [d for d in directions if d is not None]
        return max(directions) if directions else None
    return _number(value)


def classifier_metrics(data: Mapping[str, Any], variant: str, seed: int) -> ClassifierMetrics | None:
    """Test metrics of ``variant`` / ``seed`` from ``shortcut.json`` content (module doc)."""
    for root in (_get(data, "classifiers"), data):
        per_variant = _get(root, variant)
        for section in (_get(per_variant, f"seed{seed}"), _get(per_variant, str(seed)),
                        _get(per_variant, "seeds", str(seed)), _get(per_variant, "seeds", f"seed{seed}")):
            if isinstance(section, Mapping):
                return ClassifierMetrics(
                    id_auroc=_pick(section, ("id_auroc", "in_distribution_auroc", "test_auroc", "auroc")),
                    trap_auroc=_pick(section, ("trap_auroc", "auroc_trap")),
                    flip_rate=_flip_rate(section),
                    excess_flip_rate=_pick(section, ("excess_flip_rate",)))
    return None
