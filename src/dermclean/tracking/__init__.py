"""MLflow tracking for dermclean: runs, lineage tags, pyfunc model folders, registry and promotion.

- :func:`configure_tracking` points MLflow at ``MLFLOW_TRACKING_URI`` or at the repository's
  ``sqlite:///<repo>/mlruns.db`` with artifacts in ``<repo>/mlartifacts``.
- :func:`start_run` opens a run with flattened params and the lineage tags ``git_commit``,
  ``dvc_data_hash``, ``dermclean_version`` and ``profile``.
- :func:`log_model_folder` logs a :mod:`dermclean.modelio` folder as a pyfunc "model from code"
  (nothing is unpickled when it loads); :func:`resolve_model` turns ``models:/...``, ``runs:/...``,
  ``m-...`` or a local folder into a local model folder.
- :mod:`dermclean.tracking.registry`: idempotent version registration and aliases;
  :mod:`dermclean.tracking.promotion`: the promotion gates (pure functions).
"""

from dermclean.tracking.lineage import data_hash, flatten_params, git_commit
from dermclean.tracking.models import ModelNotFound, log_model_folder, resolve_model
from dermclean.tracking.registry import get_alias_version, register_model_version, set_alias
from dermclean.tracking.runs import configure_tracking, ensure_experiment, find_repo_root, start_run

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
