"""MLflow records of the model-training stages (experiment ``dermclean-diffusion``).

:func:`training_run` opens the run a training stage trains inside; :class:`TrainingRun` logs the step
metrics as they come, the final figures, and publishes the trained model folders: written atomically
into the stage's output folder, each logged as a model, with ``mlflow_run.json`` beside them.
:func:`log_imagecond_evaluation` records the image-conditioned model's restoration check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch

from dermclean.io import atomic_path, write_json
from dermclean.tracking.models import log_model_folder
from dermclean.tracking.runs import configure_tracking, start_run
from dermclean.values import flat_metrics

EXPERIMENT = "dermclean-diffusion"


@dataclass
class TrainingRun:
    """The open MLflow run of a training stage."""

    run: mlflow.ActiveRun

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_step(self, model: str, step: int, metrics: dict[str, float]) -> None:
        """Step metrics of ``model``, logged as ``<model>_<name>``."""
        mlflow.log_metrics({f"{model}_{k}": v for k, v in metrics.items()}, step=step)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def publish(self, out: Path, write: Callable[[Path], dict[str, Path]]) -> dict[str, str]:
        """Build ``out`` atomically: ``write(folder)`` saves the model folders (returns name -> folder; the first is
        the run's main model), each is logged as a model, and ``mlflow_run.json`` records the run and model URIs."""
        with atomic_path(out) as tmp:
            folders = write(tmp)
            uris = {name: log_model_folder(folder, name=name) for name, folder in folders.items()}
            record: dict[str, Any] = {"run_id": self.run_id, "model_uri": next(iter(uris.values()))}
            if len(uris) > 1:
                record["model_uris"] = uris
            write_json(tmp / "mlflow_run.json", record)
        return uris


@contextmanager
def training_run(run_name: str, params: dict[str, Any], manifest: Path, *, device: torch.device | str,
                 tags: dict[str, str] | None = None) -> Iterator[TrainingRun]:
    """Open the training run ``run_name`` with the params it logs; the manifest's folder is its data."""
    configure_tracking()
    with start_run(EXPERIMENT, run_name, params=params, data_paths=[manifest.parent],
                   tags={"device": str(device), **(tags or {})}) as run:
        yield TrainingRun(run)


def log_imagecond_evaluation(params: dict[str, Any], manifest: Path, model: Path, metrics: dict[str, Any], *,
                             device: str) -> None:
    """The ``evaluate_imagecond`` run: the restoration check's figures (``val_removal.*``), tagged with the
    training run of the model (from its ``mlflow_run.json``)."""
    record = model / "mlflow_run.json"
    trained_by = json.loads(record.read_text()).get("run_id", "") if record.is_file() else ""
    with start_run(EXPERIMENT, "evaluate_imagecond", params=params, data_paths=[manifest.parent],
                   tags={"device": device, "model": "imagecond", "training_run_id": trained_by}):
        mlflow.log_metrics(flat_metrics(metrics["val_removal"], prefix="val_removal."))
