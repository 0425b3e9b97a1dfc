"""``dermclean audit``: which non-skin content does a collection hold, and does it go with the diagnosis?

``run_audit(IMAGES_DIR, LABELS, REPORT_DIR, ...)`` detects every image (or reads an earlier ``detect``
output, ``detections``) and writes::

    REPORT_DIR/flags.csv          image, ruler, ink, patches, any, ruler_flag, ink_flag, patches_flag,
                                  any_flag, mask_area (see dermclean.audit.flags)
    REPORT_DIR/shortcut_risk.csv  artifact, n_label1, n_label0, prevalence_label1, prevalence_label0,
                                  odds_ratio, ci_low, ci_high, risk (see dermclean.audit.risk)
    REPORT_DIR/report.html        risk table, prevalence bars, gallery with masks (self-contained)
    REPORT_DIR/audit.json         provenance and counts; with human artifact labels in LABELS, their
                                  risk table and the flags' agreement with them
    REPORT_DIR/detections/        the ``detect`` output it read (maps left out), unless ``detections`` was given

The folder is built beside REPORT_DIR and renamed into place at the end; a run killed halfway
resumes its detection when run again with the same arguments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermclean import __version__
from dermclean.audit.flags import load_operating_points, read_flags
from dermclean.audit.labels import AuditLabels, read_audit_labels
from dermclean.audit.report import write_report
from dermclean.audit.risk import shortcut_risk
from dermclean.batch import ERRORS_FILE, Skipped, read_errors
from dermclean.constants import DEFAULT_DETECTOR, OUTLIER_CLASSES
from dermclean.detection.contract import run_detect_dir
from dermclean.detection.family_eval import type_auroc_intervals
from dermclean.io import building_dir, check_output, fingerprint, read_json, write_json

COMMAND = "audit"


@dataclass
class AuditResult:
    """Where the audit went, its risk table, and the inputs detection skipped."""

    out_dir: Path
    risk: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)


def agreement(flags: pd.DataFrame, human: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per type with human labels: image AUROC of the probability (that type against images with none
    of the three, bootstrap 95 % CI) and precision / recall of the flag over images with that label."""
    labels = human.reindex(columns=list(OUTLIER_CLASSES)).to_numpy(dtype=np.float64, na_value=np.nan)
    aurocs = type_auroc_intervals(labels, flags[list(OUTLIER_CLASSES)].to_numpy(float), n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {}
    for j, kind in enumerate(OUTLIER_CLASSES):
        y = labels[:, j] == 1
        if y.sum() == 0 or aurocs[kind]["images"] == y.sum():  # no images of that class, or no clean ones
            continue
        has = ~np.isnan(labels[:, j]) & flags[f"{kind}_flag"].notna().to_numpy()
        flag, truth = flags[f"{kind}_flag"].to_numpy()[has].astype(int) == 1, y[has]
        out[kind] = {**aurocs[kind], "precision": float((flag & truth).sum() / max(flag.sum(), 1)),
                     "recall": float((flag & truth).sum() / max(truth.sum(), 1))}
    return out


def _summary(flags: pd.DataFrame, labels: AuditLabels, risk: pd.DataFrame, *, images_dir: Path, model: str,
             detections: Path, skipped: list[Skipped]) -> dict[str, Any]:
    known = labels.label.notna()
    summary: dict[str, Any] = {
        "command": COMMAND, "images_dir": str(images_dir), "model": model, "detections": str(detections),
        "label_column": labels.column, "n_images": len(flags), "n_labelled": int(known.sum()),
        "n_label1": int((labels.label[known] == 1).sum()), "n_unlabelled_images": int((~known).sum()),
        "n_label_rows_without_image": labels.n_unmatched_rows, "n_skipped": len(skipped),
        "risk": risk.to_dict(orient="records"), "dermclean_version": __version__,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not labels.human.empty and labels.human.notna().any().any():
        summary["human_risk"] = shortcut_risk(labels.human, labels.label,
                                              kinds=tuple(labels.human.columns)).to_dict(orient="records")
        summary["agreement"] = agreement(flags, labels.human)
    return summary


def _detect(images_dir: Path, build: Path, *, model: str, options: dict[str, Any]) -> tuple[Path, list[Skipped]]:
    """The ``detect`` output inside the build folder (resumed, or reused when a killed run finished it)."""
    target = build / "detections"
    if not (target / "scores.csv").is_file():
        run_detect_dir(images_dir, target, model=model, maps="none", **options)
    return target, read_errors(target / ERRORS_FILE)


def run_audit(images_dir: str | os.PathLike[str], labels: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
              label_column: str = "melanoma", model: str | None = None,
              detections: str | os.PathLike[str] | None = None, address: str | None = None,
              workers: int | None = None, device: str | None = None, batch_size: int | None = None,
              recursive: bool = False, overwrite: bool = False, on_error: str = "stop", progress: bool = True,
              n_gallery: int = 8) -> AuditResult:
    """The ``dermclean audit`` contract (see module docstring)."""
    images_dir, labels, out_dir = Path(images_dir), Path(labels), Path(out_dir)
    detections = Path(detections) if detections is not None else None
    check_output(out_dir, command=COMMAND, overwrite=overwrite,
                 inputs={"IMAGES_DIR": images_dir, "--labels": labels, "--detections": detections, "--model": model})
    if model is None and detections is not None and (detections / "run.json").is_file():
        model = read_json(detections / "run.json").get("model_uri")
    model = str(model or DEFAULT_DETECTOR)
    points = load_operating_points(model)
    options = {"device": device, "batch_size": batch_size, "recursive": recursive, "address": address,
               "workers": workers, "on_error": on_error, "progress": progress}
    key = fingerprint({"images": str(images_dir.resolve()), "labels": str(labels.resolve()), "model": model,
                       "detections": str(detections), **options, "progress": None, "version": __version__})
    with building_dir(out_dir, owner=COMMAND, key=key) as build:
        if detections is None:
            source, skipped = _detect(images_dir, build, model=model, options=options)
        else:
            source, skipped = detections, read_errors(detections / ERRORS_FILE)
        flags = read_flags(source, points)
        audit_labels = read_audit_labels(labels, list(flags["image"]), label_column=label_column)
        risk = shortcut_risk(flags, audit_labels.label)
        flags.to_csv(build / "flags.csv", index=False)
        risk.to_csv(build / "shortcut_risk.csv", index=False)
        summary = _summary(flags, audit_labels, risk, images_dir=images_dir, model=model,
                           detections=detections or out_dir / "detections", skipped=skipped)
        summary["operating_points"] = points.to_dict()
        write_json(build / "audit.json", summary)
        write_report(build / "report.html", risk=risk, flags=flags, human=audit_labels.human, images_dir=images_dir,
                     detections=source, summary=summary, n_gallery=n_gallery)
    return AuditResult(out_dir=out_dir, risk=risk, skipped=skipped)
