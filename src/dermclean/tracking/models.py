"""Model folders in and out of MLflow: :func:`log_model_folder` and :func:`resolve_model`.

A logged dermclean model is a pyfunc "model from code" (``model_code.py`` in this package) whose
single artifact ``model_dir`` is the :mod:`dermclean.modelio` folder itself. ``resolve_model``
accepts what a user or the CLI may pass as ``--model``: a local model folder, ``models:/name@alias``,
``models:/name/<version>``, ``models:/m-<id>``, ``m-<id>`` or ``runs:/<run_id>/<name>``, and returns
the local model folder. Downloads are cached in ``$DERMCLEAN_MODEL_CACHE`` (default
``~/.cache/dermclean/models``), keyed by the tracking URI and the exact model (a registry version
is resolved first, so moving an alias never serves a stale copy).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from dermclean.io import atomic_path
from dermclean.modelio import read_model_config
from dermclean.tracking.errors import ModelNotFound
from dermclean.tracking.store import existing_store

MODEL_CODE = Path(__file__).with_name("model_code.py")
MODEL_DIR_ARTIFACT = "model_dir"
_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def _pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for dist in ("torch", "torchvision", "diffusers", "mlflow", "pandas", "dermclean"):
        try:
            reqs.append(f"{dist}=={version(dist).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(dist)
    return reqs


def log_model_folder(model_dir: str | os.PathLike[str], *, name: str = "model") -> str:
    """Log ``model_dir`` (a dermclean model folder) in the active run as a pyfunc model from code.

    Must be called inside :func:`dermclean.tracking.start_run`. The logged model carries the tag
    ``kind`` from ``config.json``. Returns the model URI (``models:/m-<id>``), which
    :func:`resolve_model` and ``mlflow.pyfunc.load_model`` accept and which
    :func:`dermclean.tracking.register_model_version` registers.
    """
    import mlflow

    model_dir = Path(model_dir)
    kind = read_model_config(model_dir).get("kind")
    if mlflow.active_run() is None:
        raise RuntimeError(f"log_model_folder({model_dir}) needs an active run; call it inside start_run(...)")
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=str(MODEL_CODE),
        artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
        pip_requirements=_pip_requirements(),
        tags={"kind": str(kind)},
    )
    return info.model_uri


def _local_model_dir(path: Path) -> Path | None:
    """``path`` itself when it is a model folder, or the model folder inside a logged pyfunc model."""
    if (path / "config.json").is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        import yaml

        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
        inner = ((flavor.get("artifacts") or {}).get(MODEL_DIR_ARTIFACT) or {}).get("path")
        if inner and (path / inner / "config.json").is_file():
            return path / inner
    return None


def _how_to_get_one(what: str) -> str:
    return (f"{what}. Train and register models with `dvc repro` in a dermclean checkout, which ends with the "
            f"promote stage setting the 'champion' aliases, or pass --model PATH to a local model folder.")


def _cache_key(uri: str) -> str:
    """A key naming exactly the model ``uri`` points to now (aliases resolved to versions)."""
    import mlflow
    from mlflow.store.artifact.utils.models import get_model_name_and_version
    from mlflow.tracking import MlflowClient

    ident = uri
    if uri.startswith("models:/"):
        client = MlflowClient()
        resolved = get_model_name_and_version(client, uri)
        if len(resolved) == 2:
            mv = client.get_model_version(*resolved)
            ident = f"{mv.name}/{mv.version}/{mv.source}/{mv.run_id}/{getattr(mv, 'model_id', None)}"
        else:
            ident = resolved[0]
    return hashlib.sha256(f"{mlflow.get_tracking_uri()}|{ident}".encode()).hexdigest()[:24]


def _download(uri: str) -> Path:
    tracking_uri = existing_store(uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        key = _cache_key(uri)
        cache = Path(os.environ.get("DERMCLEAN_MODEL_CACHE", Path.home() / ".cache" / "dermclean" / "models"))
        target = cache / key
        if _local_model_dir(target) is None:
            with atomic_path(target) as tmp:
                tmp.mkdir()
                mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp))
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND_CODES:
            what = f"no model at {uri} in {mlflow.get_tracking_uri()} ({exc.message})"
            raise ModelNotFound(_how_to_get_one(what)) from exc
        raise
    found = _local_model_dir(target)
    if found is None:
        raise ModelNotFound(f"{uri} downloaded to {target} holds no dermclean model folder (an MLmodel whose "
                            f"'{MODEL_DIR_ARTIFACT}' artifact has a config.json); was it logged with log_model_folder?")
    return found


def resolve_model(uri_or_path: str | os.PathLike[str]) -> Path:
    """Local dermclean model folder for a path or an MLflow model URI (see module docstring).

    Raises :class:`ModelNotFound` (a ``FileNotFoundError``) for a missing folder, registered model,
    version or alias, saying how to get one.
    """
    text = str(uri_or_path)
    if re.fullmatch(r"m-[0-9a-f]+", text):
        text = f"models:/{text}"
    if text.startswith(("models:/", "runs:/")):
        return _download(text)
    path = Path(text)
    local = _local_model_dir(path)
    if local is not None:
        return local
    if path.exists():
        raise ModelNotFound(f"{path} is not a dermclean model folder: expected {path / 'config.json'}")
    raise ModelNotFound(_how_to_get_one(f"no model folder at {path} (nor an MLflow URI such as "
                                        f"models:/dermclean-classifier-raw@champion)"))
