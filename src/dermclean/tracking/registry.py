"""Registry helpers: idempotent version registration and aliases (stages are deprecated).

Registered models: ``dermclean-detector`` (versions tagged ``kind=guided|imagecond``) and
``dermclean-classifier-<variant>`` (versions tagged ``seed``). Aliases: ``champion`` (passed the
promotion gates, see :mod:`dermclean.tracking.promotion.gates`) and ``challenger``.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

_MISSING = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def _model_id(model_uri: str) -> str | None:
    return model_uri[len("models:/"):] if model_uri.startswith("models:/m-") else None


def find_version(name: str, model_uri: str, *, client: MlflowClient | None = None) -> ModelVersion | None:
    """The existing version of ``name`` registered from ``model_uri`` (same source or logged model)."""
    client = client or MlflowClient()
    model_id = _model_id(model_uri)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            return None
        raise
    for mv in sorted(versions, key=lambda v: int(v.version)):
        if mv.source == model_uri or (model_id is not None and getattr(mv, "model_id", None) == model_id):
            return mv
    return None


def register_model_version(model_uri: str, name: str, *, tags: Mapping[str, str] | None = None,
                           description: str | None = None) -> ModelVersion:
    """Register ``model_uri`` as a version of ``name``, or reuse the version already registered from it.

    ``tags`` and ``description`` are set on the version either way (setting the same value again
    changes nothing). Returns the (refreshed) ``ModelVersion``.
    """
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in _MISSING:
            raise
        client.create_registered_model(name)
    mv = find_version(name, model_uri, client=client)
    if mv is None:
        run_id = None
        if model_uri.startswith("runs:/"):
            run_id = model_uri[len("runs:/"):].split("/", 1)[0]
        elif _model_id(model_uri):
            run_id = client.get_logged_model(_model_id(model_uri)).source_run_id
        mv = client.create_model_version(name, model_uri, run_id=run_id, description=description,
                                         model_id=_model_id(model_uri))
    for key, value in (tags or {}).items():
        if mv.tags.get(key) != str(value):
            client.set_model_version_tag(name, mv.version, key, str(value))
    if description is not None and mv.description != description:
        client.update_model_version(name, mv.version, description=description)
    return client.get_model_version(name, mv.version)


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``name@alias`` at ``version`` (no call when it already does)."""
    current = get_alias_version(name, alias)
    if current is None or str(current.version) != str(version):
        MlflowClient().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    if get_alias_version(name, alias) is not None:
        MlflowClient().delete_registered_model_alias(name, alias)


def get_alias_version(name: str, alias: str) -> ModelVersion | None:
    """The version ``name@alias`` points at, or ``None`` when the model or the alias does not exist."""
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in _MISSING:
            return None
        raise
