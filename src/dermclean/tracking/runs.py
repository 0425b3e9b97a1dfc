"""Where runs go and how they are opened.

By default MLflow writes to ``sqlite:///<repo>/mlruns.db`` with artifacts under
``<repo>/mlartifacts/<experiment>`` (one machine). On a cluster, point ``MLFLOW_TRACKING_URI`` at a
tracking server (``mlflow server ... --artifacts-destination ...``); the server then decides where
artifacts go. One experiment per component kind: ``dermclean-diffusion``, ``dermclean-detector``,
``dermclean-classifier``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

import dermclean
from dermclean.env import disable_telemetry, find_repo_root
from dermclean.tracking.lineage import data_hash, flatten_params, git_commit

MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value
_uri_we_set: str | None = None


def configure_tracking(repo_root: str | os.PathLike[str] | None = None) -> str:
    """Point MLflow at ``MLFLOW_TRACKING_URI`` if set, else at ``sqlite:///<repo_root>/mlruns.db``.

    ``repo_root`` defaults to :func:`find_repo_root`. Paths are absolute so Ray Tune trials and DVC
    stages running in other folders share one store. Returns the tracking URI in use.
    """
    global _uri_we_set
    disable_telemetry()
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI (so subprocesses inherit it); a value we
    # exported ourselves is not the user's choice, so it does not pin later calls to it.
    if not uri or uri == _uri_we_set:
        root = Path(repo_root).resolve() if repo_root is not None else find_repo_root()
        uri = f"sqlite:///{root / 'mlruns.db'}"
        _uri_we_set = uri
    mlflow.set_tracking_uri(uri)
    return uri


def artifact_root(tracking_uri: str) -> Path | None:
    """``<folder of the sqlite file>/mlartifacts`` for a sqlite store; ``None`` (server decides) otherwise."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"
    return None


def ensure_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts under ``mlartifacts/<name>``) if needed."""
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(mlflow.get_tracking_uri())
    location = (root / name).as_uri() if root is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent stage
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def lineage_tags(params: Mapping[str, Any], data_paths: list[str | os.PathLike[str]], *,
                 root: Path) -> dict[str, str]:
    """The tags every dermclean run carries (see :mod:`dermclean.tracking.lineage`)."""
    hashed = data_hash(data_paths, root=root)
    tags = {
        "git_commit": git_commit(root),
        "dvc_data_hash": hashed.value,
        "dvc_data_source": hashed.source,
        "dvc_data_paths": json.dumps(hashed.paths, sort_keys=True)[:MAX_TAG_CHARS],
        "dermclean_version": dermclean.__version__,
    }
    if params.get("profile") is not None:
        tags["profile"] = str(params["profile"])
    return tags


@contextlib.contextmanager
def start_run(experiment: str, run_name: str, *, params: Mapping[str, Any],
              data_paths: list[str | os.PathLike[str]], tags: Mapping[str, str] | None = None
              ) -> Iterator[mlflow.ActiveRun]:
    """Open an MLflow run in ``experiment`` with flattened ``params`` and lineage tags.

    ``data_paths`` (relative to the repository root, or absolute) are the data the run consumes;
    their DVC md5 becomes the ``dvc_data_hash`` tag. Tags: ``git_commit``, ``dvc_data_hash``,
    ``dvc_data_source``, ``dvc_data_paths``, ``dermclean_version``, ``profile`` (when in params),
    then ``tags``. Configures tracking first when nothing has set a tracking URI yet.

    Usage::

        with start_run("dermclean-classifier", "raw-seed0", params=params, data_paths=[manifest_dir]):
            mlflow.log_metric("val_auroc", 0.81)
            log_model_folder(model_dir)
    """
    if not is_tracking_uri_set():
        configure_tracking()
    root = find_repo_root()
    all_tags = {**lineage_tags(params, data_paths, root=root), **{k: str(v) for k, v in (tags or {}).items()}}
    experiment_id = ensure_experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as run:
        flat = flatten_params(params)
        if flat:
            mlflow.log_params(flat)
        yield run
