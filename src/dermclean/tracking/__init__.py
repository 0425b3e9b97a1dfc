"""MLflow tracking for dermclean: runs, lineage tags, pyfunc model folders, registry and promotion.

- :func:`configure_tracking` points MLflow at ``MLFLOW_TRACKING_URI`` or at the repository's
  ``sqlite:///<repo>/mlruns.db`` with artifacts in ``<repo>/mlartifacts``.
- :func:`start_run` opens a run with flattened params and the lineage tags ``git_commit``,
  ``dvc_data_hash``, ``dermclean_version`` and ``profile``.
- :func:`log_model_folder` logs a :mod:`dermclean.modelio` folder as a pyfunc "model from code"
  (nothing is unpickled when it loads); :func:`resolve_model` turns ``models:/...``, ``runs:/...``,
  ``m-...`` or a local folder into a local model folder.
- :mod:`dermclean.tracking.registry`: idempotent version registration and aliases;
  :mod:`dermclean.tracking.promotion`: the promotion gates (pure), what they read, and ``promote``.
"""

from dermclean.tracking.errors import ModelNotFound

# Everything else imports MLflow (seconds), so it is loaded on first use: importing
# ``dermclean.tracking`` for ``ModelNotFound`` keeps ``dermclean --help`` fast.
_LAZY = {
    "data_hash": "lineage", "flatten_params": "lineage", "git_commit": "lineage",
    "log_model_folder": "models", "resolve_model": "models",
    "get_alias_version": "registry", "register_model_version": "registry", "set_alias": "registry",
    "configure_tracking": "runs", "ensure_experiment": "runs", "find_repo_root": "runs", "start_run": "runs",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"dermclean.tracking.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dermclean.tracking' has no attribute {name!r}")


__all__ = [
    "ModelNotFound",
    "configure_tracking",
    "data_hash",
    "ensure_experiment",
    "find_repo_root",
    "flatten_params",
    "get_alias_version",
    "git_commit",
    "log_model_folder",
    "register_model_version",
    "resolve_model",
    "set_alias",
    "start_run",
]
