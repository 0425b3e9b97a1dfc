"""Sweeps of the detector's noise level L, guidance scale s, guidance kind and DDIM steps.

Ray Tune runs the trials (on this machine or an existing Ray cluster), Optuna's TPE proposes them,
MLflow records one parent run per sweep and one child run per trial (Wolleb et al. 2022 chose L and s
by hand; this searches them on validation pixel AP).

- :mod:`~dermclean.sweep.space`: ``params["sweep"]`` -> :class:`SweepConfig`, the search space;
- :mod:`~dermclean.sweep.trial`: one trial = the detection stage's ``evaluate_detector`` with overrides;
- :mod:`~dermclean.sweep.cluster`: joining a cluster / starting Ray, shipping the package;
- :mod:`~dermclean.sweep.mlflow_log`: child runs; :mod:`~dermclean.sweep.plots`: the (L, s) figure;
- :mod:`~dermclean.sweep.results`: records, overhead, ``sweep_best.yaml``;
- :mod:`~dermclean.sweep.run`: :func:`run_sweep`, behind the ``dermclean sweep`` command.
"""

from dermclean.sweep.results import SweepResult, TrialRecord, Timing, measure_overhead, write_best_params
from dermclean.sweep.run import SweepError, SweepInterrupted, run_sweep
from dermclean.sweep.space import SearchSpace, SweepConfig, build_search_space, sweep_config_from_params

__all__ = [
    "SearchSpace",
    "SweepConfig",
    "SweepError",
    "SweepInterrupted",
    "SweepResult",
    "Timing",
    "TrialRecord",
    "build_search_space",
    "measure_overhead",
    "run_sweep",
    "sweep_config_from_params",
    "write_best_params",
]
