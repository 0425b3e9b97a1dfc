"""MLflow records of the diagnosis classifiers: one run per trained classifier, and the shortcut report's
figures attached to it afterwards."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from dermclean.io import read_json, write_json
from dermclean.tracking.models import log_model_folder
from dermclean.tracking.runs import start_run
from dermclean.values import is_finite

EXPERIMENT = "dermclean-classifier"
RUN_RECORD = "mlflow_run.json"


def log_classifier_run(model_dir: Path, *, fitted: Any, config: Any, section: dict[str, Any], proof: dict[str, Any],
                       family: str, variant: str, seed: int, manifest: Path) -> None:
    """Log one trained classifier (``fitted``: :class:`dermclean.classifier.fit.FittedClassifier`) in the
    experiment ``dermclean-classifier``: params, per-epoch curves, validation figures and the model
    folder as a pyfunc; ``model_dir/mlflow_run.json`` records the run."""
    run_name = f"{variant}-{'trap-' if family == 'trap' else ''}seed{seed}"
    params = {"classifier": {**dataclasses.asdict(config), **section}, "proof": proof if family == "trap" else {},
              "variant": variant, "family": family, "seed": seed}
    tags = {"variant": variant, "seed": str(seed), "family": family}
    threshold = fitted.threshold
    with start_run(EXPERIMENT, run_name, params=params, data_paths=[manifest.parent], tags=tags) as run:
        for record in fitted.history.epochs:
            mlflow.log_metrics({"train_loss": record.train_loss, "val_loss": record.val_loss,
                                "val_auroc": record.val_auroc}, step=record.epoch)
        mlflow.log_metrics({"best_val_auroc": fitted.history.best_val_auroc, "best_epoch": fitted.history.best_epoch,
                            "threshold": threshold.threshold, "val_sensitivity": threshold.sensitivity,
                            "val_specificity": threshold.specificity, "train_seconds": fitted.seconds})
        model_uri = log_model_folder(model_dir)
        run_id = run.info.run_id
    write_json(model_dir / RUN_RECORD, {"run_id": run_id, "model_uri": model_uri, "experiment": EXPERIMENT,
                                        "family": family, "variant": variant, "seed": seed})


def attach_to_classifier_run(model_dir: Path, html: Path | None, figures: dict[str, float]) -> None:
    """Attach an HTML report (when given) and headline figures to the classifier's own run (if it was logged)."""
    record = model_dir / RUN_RECORD
    if not record.is_file():
        return
    run_id = read_json(record)["run_id"]
    client = MlflowClient()
    if html is not None:
        client.log_artifact(run_id, str(html), artifact_path="shortcut_report")
    for key, value in figures.items():
        if is_finite(value):
            client.log_metric(run_id, key, float(value))
