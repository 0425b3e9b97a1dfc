"""Evidently report per data variant: its classifiers' test predictions by artifact subgroup, beside raw's.

The composition -- the reference variant, the subgroup columns, the metrics computed in every
subgroup and the whole-set presets -- is defined in a data file,
``monitoring/evidently/shortcut_report.yaml`` (:data:`DEFAULT_DEFINITION`), read by
:func:`load_report_definition`.

:func:`variant_table` turns a variant's classifiers (one per seed) into one prediction table over
the raw test split: ``p_malignant`` is the mean over seeds, ``error`` whether it is on the wrong
side of the mean of the seeds' operating thresholds, and each subgroup column (``patches``,
``ruler``, ``ink``) reads ``with`` / ``without`` from the human labels, from the pipeline detector's
flags where a row has none (``unlabelled`` where neither is known). :func:`variant_report` runs ``Report(...).run(current_data=variant,
reference_data=reference variant)`` -- the same images, so Evidently shows the cleaned variant's
figures side by side with raw's -- and the reference variant's own report runs without reference.

Evidently's HTML carries a 3.4 MB JavaScript bundle; the reports of one folder share it as
``evidently.js`` beside them (each page a few hundred kB), while the self-contained copy (the one
attached to MLflow runs) keeps it inline.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dermclean.io import atomic_path
from dermclean.values import json_ready

DEFAULT_DEFINITION = Path(__file__).resolve().parents[3] / "monitoring" / "evidently" / "shortcut_report.yaml"
BUNDLE = "evidently.js"
LABELS = ("with", "without", "unlabelled")
REFERENCE_ONLY = {"ValueDrift", "DataDriftPreset"}  # need a reference dataset


@dataclass(frozen=True, kw_only=True)
class ReportDefinition:
    """The parsed YAML definition (see ``monitoring/evidently/shortcut_report.yaml``)."""

    name: str
    reference_variant: str
    target: str
    prediction: str
    error: str
    group_by: list[str]
    grouped_metrics: list[dict[str, Any]] = field(default_factory=list)
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
        cols = raw["columns"]
        definition = ReportDefinition(
            name=str(raw.get("name", path.stem)), reference_variant=str(raw["reference_variant"]),
            target=str(cols["target"]), prediction=str(cols["prediction"]), error=str(cols["error"]),
            group_by=[str(c) for c in raw["group_by"]], grouped_metrics=list(raw.get("grouped_metrics") or []),
            presets=list(raw.get("presets") or []), metrics=list(raw.get("metrics") or []))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: missing or malformed key {exc}; expected reference_variant, "
                         f"columns.target/prediction/error, group_by, grouped_metrics, presets, metrics") from exc
    for item in definition.grouped_metrics + definition.presets + definition.metrics:
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{path}: every metric and preset needs a 'name'; got {item!r}")
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


def variant_table(test: pd.DataFrame, probabilities: list[np.ndarray], thresholds: list[float], *,
                  definition: ReportDefinition, flags: pd.DataFrame | None = None) -> tuple[pd.DataFrame, float]:
    """One variant's prediction table over ``test`` (see the module docstring) and its threshold.

    ``flags`` (``image_id`` and 0/1 columns named like the subgroup columns, e.g. the pipeline
    detector's flags at its operating points) fill the subgroup of rows without a human label;
    ``<column>_source`` says which rows took a flag."""
    if not probabilities or any(len(p) != len(test) for p in probabilities):
        raise ValueError(f"{len(probabilities)} prediction arrays for {len(test)} test rows; expected one per seed")
    p = np.mean(np.stack(probabilities), axis=0)
    threshold = float(np.mean(thresholds))
    y = test["melanoma"].astype(int).to_numpy()
    table = pd.DataFrame({"image_id": test["image_id"].to_numpy(), definition.target: y, definition.prediction: p,
                          definition.error: ((p >= threshold) != y.astype(bool)).astype(int)})
    detected = None if flags is None else flags.set_index("image_id").reindex(test["image_id"].to_numpy())
    for column in definition.group_by:
        flag = pd.to_numeric(test[column], errors="coerce").to_numpy(dtype=float)
        source = np.where(np.isnan(flag), "none", "human")
        if detected is not None and column in detected:
            guess = pd.to_numeric(detected[column], errors="coerce").to_numpy(dtype=float)
            fill = np.isnan(flag) & ~np.isnan(guess)
            flag, source = np.where(fill, guess, flag), np.where(fill, "detector", source)
        table[column] = np.where(flag == 1, "with", np.where(flag == 0, "without", "unlabelled"))
        table[f"{column}_source"] = source
    return table, threshold


@dataclass(frozen=True, kw_only=True)
class VariantReport:
    """The HTML written and the numbers behind it (``numbers`` is JSON-ready)."""

    html_path: Path
    numbers: dict[str, Any]


def _grouped_values(snapshot: Any) -> dict[str, dict[str, dict[str, float]]]:
    """``{column: {label: {metric: value}}}`` of the report's GroupBy results."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in snapshot.dict()["metrics"]:
        config = m.get("config") or {}
        if config.get("type", "").endswith("GroupByMetric"):
            inner = config["metric"]
            name = inner["type"].rsplit(":", 1)[-1] + (f"[{inner['column']}]" if inner.get("column") else "")
            out.setdefault(config["column_name"], {}).setdefault(str(config["label"]), {})[name] = float(m["value"])
    return out


def _top_values(snapshot: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in snapshot.dict()["metrics"]:
        if (m.get("config") or {}).get("type", "").endswith("GroupByMetric"):
            continue
        name = m["metric_name"].split("(", 1)[0]
        if name == "ValueDrift":
            method = re.search(r"method=([^,)]+)", m["metric_name"])
            name = f"ValueDrift[{method.group(1) if method else ''}]"
        value = m["value"]
        out[name] = {str(k): float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)
    return out


def _counts(table: pd.DataFrame, definition: ReportDefinition) -> dict[str, dict[str, dict[str, int]]]:
    def count(c: str, label: str) -> dict[str, int]:
        rows = table[c] == label
        out = {"n": int(rows.sum()), "melanoma": int(table.loc[rows, definition.target].sum())}
        if f"{c}_source" in table:
            out["from_detector"] = int((rows & (table[f"{c}_source"] == "detector")).sum())
        return out

    return {c: {label: count(c, label) for label in LABELS if (table[c] == label).any()} for c in definition.group_by}


def _share_bundle(page: str, folder: Path) -> str:
    """``page`` with its largest inline script moved to ``folder/evidently.js`` (written once per content)."""
    scripts = list(re.finditer(r"<script>(.*?)</script>", page, flags=re.S))
    if not scripts:
        return page
    biggest = max(scripts, key=lambda m: len(m.group(1)))
    bundle = folder / BUNDLE
    if not bundle.is_file() or bundle.read_text() != biggest.group(1):
        with atomic_path(bundle) as tmp:
            tmp.write_text(biggest.group(1))
    return page[:biggest.start()] + f'<script src="{BUNDLE}"></script>' + page[biggest.end():]


def variant_report(current: pd.DataFrame, reference: pd.DataFrame | None, html_path: str | os.PathLike[str], *,
                   threshold: float, title: str, definition: ReportDefinition | None = None,
                   self_contained_copy: str | os.PathLike[str] | None = None) -> VariantReport:
    """Run the defined report on ``current`` (beside ``reference``, same rows, when given); write ``html_path``
    (sharing the script bundle with its folder) and, when given, ``self_contained_copy`` (bundle inline)."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import GroupBy

    definition = definition or load_report_definition()
    cols = [definition.target, definition.prediction, definition.error, *definition.group_by]
    for name, frame in (("current", current), ("reference", reference)):
        missing = [] if frame is None else [c for c in cols if c not in frame]
        if missing:
            raise ValueError(f"{title}: {name} prediction table lacks columns {missing}")
    data_def = DataDefinition(numerical_columns=[definition.prediction, definition.error],
                              categorical_columns=list(definition.group_by),
                              classification=[BinaryClassification(target=definition.target,
                                                                   prediction_probas=definition.prediction)])

    def dataset(frame: pd.DataFrame) -> Any:
        table = frame[cols].astype({definition.target: int, definition.prediction: float, definition.error: int})
        return Dataset.from_pandas(table.reset_index(drop=True), data_definition=data_def)

    items = [GroupBy(_build(m, threshold), column) for column in definition.group_by for m in definition.grouped_metrics]
    items += [_build(d, threshold) for d in definition.presets + definition.metrics
              if reference is not None or d["name"] not in REFERENCE_ONLY]
    snapshot = Report(items).run(current_data=dataset(current),
                                 reference_data=None if reference is None else dataset(reference))
    counts = _counts(current, definition)
    numbers: dict[str, Any] = {"n": len(current), "threshold": float(threshold),
                               "reference": definition.reference_variant if reference is not None else None,
                               "subgroups": {c: {label: {**counts[c][label], **values} for label, values in groups.items()
                                                 if label in counts[c]}
                                             for c, groups in _grouped_values(snapshot).items()},
                               "overall": _top_values(snapshot)}
    sizes = "; ".join(f"{c}: " + ", ".join(f"{label} {v['n']} ({v['melanoma']} melanoma"
                                           + (f", {v['from_detector']} by detector flag" if v.get("from_detector") else "")
                                           + ")" for label, v in counts[c].items())
                      for c in definition.group_by)
    beside = (f"reference = the <b>{html.escape(definition.reference_variant)}</b> variant's classifiers on the same "
              f"images" if reference is not None else "no reference: this is the reference variant")
    header = (f'<div style="font-family:sans-serif;padding:12px;border-bottom:1px solid #ccc">'
              f"<h2>{html.escape(title)}</h2><p>current = this variant's classifiers (p_malignant = mean over "
              f"seeds; error at the mean operating threshold {threshold:.3f}); {beside}. Every grouped metric is "
              f"computed in each subgroup of {', '.join(definition.group_by)} (human labels; the pipeline "
              f"detector's flags where a row has none).</p>"
              f"<p>Subgroups: {html.escape(sizes)}</p></div>")
    page = snapshot.get_html_str(as_iframe=False).replace("<body>", "<body>" + header, 1)
    out = Path(html_path)
    if self_contained_copy is not None:
        with atomic_path(self_contained_copy) as tmp:
            tmp.write_text(page)
    with atomic_path(out) as tmp:
        tmp.write_text(_share_bundle(page, out.parent))
    return VariantReport(html_path=out, numbers=json_ready(numbers))
