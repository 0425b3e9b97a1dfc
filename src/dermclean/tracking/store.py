"""Which MLflow tracking store a ``models:/`` URI resolves against; importable without MLflow or torch.

Inference never creates a store: without ``MLFLOW_TRACKING_URI`` it uses the checkout's existing
``mlruns.db``, and without either it says at once what to do.
"""

from __future__ import annotations

import os

from dermclean.env import find_repo_root
from dermclean.tracking.errors import ModelNotFound


def existing_store(uri: str, *, instead: str = "--model PATH to a local model folder") -> str:
    """The tracking URI to resolve ``uri`` against: ``MLFLOW_TRACKING_URI`` if set, else the checkout's
    ``mlruns.db`` when it exists. Creates nothing; raises :class:`ModelNotFound` (fast, before MLflow
    is imported) saying what to do when there is no store; ``instead`` names the options that avoid it."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = find_repo_root() / "mlruns.db"
    if store.is_file():
        return f"sqlite:///{store}"
    raise ModelNotFound(f"cannot resolve {uri}: no MLflow tracking store (MLFLOW_TRACKING_URI is unset and there "
                        f"is no {store}). Run `dvc repro` in a dermclean checkout to train and register models, "
                        f"set MLFLOW_TRACKING_URI to your tracking server, or pass {instead}")
