"""MLflow records of the detection stages (experiment ``dermclean-detector``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow

from dermclean.io import write_json
from dermclean.tracking.models import log_model_folder
from dermclean.tracking.runs import start_run
from dermclean.values import flat_metrics

EXPERIMENT = "dermclean-detector"


def log_detect_run(params: dict[str, Any], manifest: Path, bundles: Mapping[str, Path], metrics: dict[str, Any]) -> None:
    """The ``detect`` run: its figures and every bundle (name -> folder) as a model; each bundle folder gets
    ``mlflow_run.json``."""
    with start_run(EXPERIMENT, "detect", params=params, data_paths=[manifest.parent], tags={"stage": "detect"}) as run:
        mlflow.log_metrics(flat_metrics(metrics))
        for name, out in bundles.items():
            uri = log_model_folder(out, name="model" if name == "guided" else f"model_{name}")
            write_json(out / "mlflow_run.json", {"run_id": run.info.run_id, "model_uri": uri,
                                                  "experiment": EXPERIMENT, "bundle": name})


def log_evaluation_run(params: dict[str, Any], manifest: Path, per_detector: dict[str, Any], summary: dict[str, Any],
                       figures: list[Path]) -> None:
    """The ``evaluate_detection`` run: every detector's figures, the summary and the figure files."""
    with start_run(EXPERIMENT, "evaluate_detection", params=params, data_paths=[manifest.parent],
                   tags={"stage": "evaluate_detection"}):
        mlflow.log_metrics(flat_metrics(per_detector))
        mlflow.log_metrics(flat_metrics(summary))
        for figure in figures:
            mlflow.log_artifact(str(figure), artifact_path="figures")
