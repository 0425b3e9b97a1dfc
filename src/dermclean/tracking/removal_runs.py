"""MLflow record of the ``clean`` stage (experiment ``dermclean-removal``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from dermclean.tracking.runs import configure_tracking, start_run
from dermclean.values import flat_metrics

EXPERIMENT = "dermclean-removal"


@contextmanager
def clean_run(params: dict[str, Any], data_paths: list[Path], *, device: str) -> Iterator[None]:
    """Open the ``clean`` run with the params it logs; ``data_paths``: the manifest's folder, detections, models."""
    configure_tracking()
    with start_run(EXPERIMENT, "clean", params=params, data_paths=data_paths, tags={"device": device}):
        yield


def log_clean(evaluation: dict[str, Any], plots: Path) -> None:
    """The removal evaluation's figures (``eval.*``) and the before/after grids of the open ``clean`` run."""
    mlflow.log_metrics(flat_metrics(evaluation, prefix="eval."))
    mlflow.log_artifacts(str(plots), artifact_path="removal_figures")
