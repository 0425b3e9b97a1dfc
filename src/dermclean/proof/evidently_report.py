"""Evidently report per classifier: artifact subgroup vs clean subgroup of its test predictions.

The composition -- which subgroups, which presets and metrics -- is defined in a data file,
``monitoring/evidently/shortcut_report.yaml`` (:data:`DEFAULT_DEFINITION`), read by
:func:`load_report_definition`. :func:`subgroup_report` builds two Evidently ``Dataset`` s from a
prediction table (``melanoma``, ``p_malignant`` and the artifact flags), runs
``Report(...).run(current_data=artifact, reference_data=clean)``, writes the HTML (with a header
naming both subgroups and their sizes) and returns the numbers behind it for DVC metrics:
classification quality in each subgroup (the reference subgroup's figures come from the same
metrics run on it alone) and the drift of ``p_malignant`` between them.

Evidently's classification metrics need both classes in a subgroup; when one subgroup holds a
single class, the classification presets are left out of that report and ``skipped`` says why.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dermclean.io import atomic_path
from dermclean.values import json_ready

DEFAULT_DEFINITION = Path(__file__).resolve().parents[3] / "monitoring" / "evidently" / "shortcut_report.yaml"
CLASSIFICATION_PRESETS = {"ClassificationPreset"}


@dataclass(frozen=True, kw_only=True)
class ReportDefinition:
    """The parsed YAML definition (see ``monitoring/evidently/shortcut_report.yaml``)."""

    name: str
    current_label: str
    current_any_of: list[str]
    reference_label: str
    reference_none_of: list[str]
    target: str
    prediction: str
    presets: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)


def load_report_definition(path: str | os.PathLike[str] | None = None) -> ReportDefinition:
    """Read and check a report definition file (default :data:`DEFAULT_DEFINITION`)."""
    path = Path(path) if path is not None else DEFAULT_DEFINITION
    if not path.is_file():
        raise FileNotFoundError(f"Evidently report definition {path} not found; expected "
                                f"monitoring/evidently/shortcut_report.yaml in the repository")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        cur, ref, cols = raw["subgroups"]["current"], raw["subgroups"]["reference"], raw["columns"]
        definition = ReportDefinition(
            name=str(raw.get("name", path.stem)), current_label=str(cur["label"]), current_any_of=list(cur["any_of"]),
            reference_label=str(ref["label"]), reference_none_of=list(ref["none_of"]),
            target=str(cols["target"]), prediction=str(cols["prediction"]),
            presets=list(raw.get("presets") or []), metrics=list(raw.get("metrics") or []))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed key {exc}; expected subgroups.current.any_of, "
                         f"subgroups.reference.none_of, columns.target/prediction, presets, metrics") from exc
    for item in definition.presets + definition.metrics:
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{path}: every preset/metric needs a 'name'; got {item!r}")
        _lookup(item["name"], path)
    return definition


def _lookup(name: str, where: Any) -> type:
    import evidently.metrics
    import evidently.presets

    for module in (evidently.presets, evidently.metrics):
        if hasattr(module, name):
            return getattr(module, name)
    raise ValueError(f"{where}: {name!r} is neither an evidently preset nor an evidently metric")


def _build(item: dict[str, Any], threshold: float) -> Any:
    args = {k: (threshold if v == "operating" else v) for k, v in (item.get("args") or {}).items()}
    return _lookup(item["name"], "report definition")(**args)


def split_subgroups(df: pd.DataFrame, definition: ReportDefinition) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(current, reference)`` rows of ``df`` by the definition's human-label rules."""
    cur = pd.concat([pd.to_numeric(df[f], errors="coerce") for f in definition.current_any_of], axis=1)
    ref = pd.concat([pd.to_numeric(df[f], errors="coerce") for f in definition.reference_none_of], axis=1)
    current = cur.eq(1).any(axis=1)
    reference = ref.eq(0).all(axis=1)
    return df[current.to_numpy()], df[reference.to_numpy()]


@dataclass(frozen=True, kw_only=True)
class SubgroupReport:
    """The HTML written and the numbers behind it (``numbers`` is JSON-ready)."""

    html_path: Path
    numbers: dict[str, Any]


def _metric_values(snapshot: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in snapshot.dict()["metrics"]:
        name = m["metric_name"]
        short = name.split("(", 1)[0]
        if short == "ValueDrift":
            method = re.search(r"method=([^,)]+)", name)
            short = f"ValueDrift[{method.group(1) if method else ''}]"
        value = m["value"]
        out[short] = ({str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else float(value))
    return out


def subgroup_report(predictions: pd.DataFrame, html_path: str | os.PathLike[str], *, threshold: float,
                    title: str, definition: ReportDefinition | None = None) -> SubgroupReport:
    """Run the defined Evidently report on ``predictions`` and write ``html_path`` atomically."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report

    definition = definition or load_report_definition()
    cols = [definition.target, definition.prediction]
    missing = [c for c in cols + definition.current_any_of + definition.reference_none_of if c not in predictions]
    if missing:
        raise ValueError(f"prediction table for {title} lacks columns {missing}")
    current, reference = split_subgroups(predictions, definition)
    sizes = {definition.current_label: len(current), definition.reference_label: len(reference)}
    if len(current) < 2 or len(reference) < 2:
        raise ValueError(f"{title}: subgroups {sizes}; an Evidently comparison needs at least 2 images in each")
    data_def = DataDefinition(numerical_columns=[definition.prediction], classification=[
        BinaryClassification(target=definition.target, prediction_probas=definition.prediction)])

    def dataset(frame: pd.DataFrame) -> Any:
        table = frame[cols].astype({definition.target: int, definition.prediction: float}).reset_index(drop=True)
        return Dataset.from_pandas(table, data_definition=data_def)

    two_classes = all(f[definition.target].astype(int).nunique() == 2 for f in (current, reference))
    skipped = None if two_classes else (
        f"classification presets left out: a subgroup holds a single class "
        f"({definition.current_label}: {int(current[definition.target].astype(int).sum())} melanoma of {len(current)}, "
        f"{definition.reference_label}: {int(reference[definition.target].astype(int).sum())} of {len(reference)})")
    items = [d for d in definition.presets + definition.metrics
             if two_classes or d["name"] not in CLASSIFICATION_PRESETS]
    snapshot = Report([_build(d, threshold) for d in items]).run(current_data=dataset(current),
                                                                 reference_data=dataset(reference))
    numbers: dict[str, Any] = {"n": sizes, "melanoma": {
        definition.current_label: int(current[definition.target].astype(int).sum()),
        definition.reference_label: int(reference[definition.target].astype(int).sum())},
        "threshold": float(threshold), "skipped": skipped}
    values = _metric_values(snapshot)
    drift_keys = [k for k in values if "Drift" in k]
    numbers["drift"] = {k: values.pop(k) for k in drift_keys}
    if two_classes:
        numbers[definition.current_label] = values  # the same classification metrics on the reference subgroup alone
        cls_items = [_build(d, threshold) for d in definition.presets if d["name"] in CLASSIFICATION_PRESETS]
        ref_values = _metric_values(Report(cls_items).run(current_data=dataset(reference)))
        numbers[definition.reference_label] = ref_values
    header = (f'<div style="font-family:sans-serif;padding:12px;border-bottom:1px solid #ccc">'
              f"<h2>{html.escape(title)}</h2><p>current = <b>{html.escape(definition.current_label)}</b> subgroup "
              f"({' | '.join(definition.current_any_of)}; n={sizes[definition.current_label]}), reference = "
              f"<b>{html.escape(definition.reference_label)}</b> subgroup (none of "
              f"{', '.join(definition.reference_none_of)}; n={sizes[definition.reference_label]}); "
              f"operating threshold {threshold:.3f}</p>"
              + (f"<p>{html.escape(skipped)}</p>" if skipped else "") + "</div>")
    page = snapshot.get_html_str(as_iframe=False)
    page = page.replace("<body>", "<body>" + header, 1)
    out = Path(html_path)
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return SubgroupReport(html_path=out, numbers=json_ready(numbers))
