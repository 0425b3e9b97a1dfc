"""The Ray Tune side of a sweep: :func:`make_tuner` builds (or restores) the Tune experiment of
:func:`dermclean.sweep.run.run_sweep`, :func:`trial_records` reads its ``ResultGrid`` back as
:class:`~dermclean.sweep.results.TrialRecord` rows. Ray and Optuna are imported on use."""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

from dermclean import tracking
from dermclean.sweep.results import TrialRecord
from dermclean.sweep.space import SWEPT_KEYS, SweepConfig
from dermclean.sweep.trial import TrialContext, tune_trial
from dermclean.values import is_finite

EXPERIMENT = "dermclean-detector"

log = logging.getLogger(__name__)


def make_tuner(cfg: SweepConfig, *, default: dict[str, Any], name: str, storage: Path, experiment_path: Path,
           detector_dir: Path, manifest_path: Path, device: str | None, resumed: bool, tracking_uri: str,
           parent: Any) -> Any:
    """A new Tune ``Tuner`` of the sweep (Optuna TPE, seeded; params' detection values as the first trial when
    they lie in the space; one MLflow child run per trial), or the interrupted sweep's, restored."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from dermclean.sweep.mlflow_log import ChildRunLogger  # a Ray Tune callback: imports Ray

    context = TrialContext(detector_dir=str(detector_dir), manifest_path=str(manifest_path), split=cfg.split,
                           max_images=cfg.max_images, seed=int(cfg.seed), device=device,
                           threads=max(1, int(cfg.resources.get("cpu", 1))))
    trainable = tune.with_resources(tune.with_parameters(tune_trial, context=context), dict(cfg.resources))
    if resumed:
        return tune.Tuner.restore(str(experiment_path), trainable=trainable, resume_errored=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=int(cfg.seed), n_startup_trials=max(2, cfg.num_samples // 3),
                                             multivariate=True, group=True, constant_liar=True)
    points = [default] if cfg.include_default and cfg.space.contains(default) else None
    if cfg.include_default and points is None:
        log.warning("params' detection values %s lie outside sweep.space; the sweep has no default trial to "
                    "compare with", default)
    search = OptunaSearch(space=cfg.space, metric=cfg.metric, mode="max", sampler=sampler, points_to_evaluate=points)
    logger = ChildRunLogger(tracking_uri=tracking_uri, experiment_id=tracking.ensure_experiment(EXPERIMENT),
                            parent_run_id=parent.info.run_id, sweep_name=name,
                            tags={k: v for k, v in parent.data.tags.items() if not k.startswith("mlflow.")})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=cfg.num_samples,
                                    max_concurrent_trials=cfg.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(storage), name=name, callbacks=[logger], verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=0)))


def trial_records(grid: Any, default: dict[str, Any]) -> list[TrialRecord]:
    """Trial records from a Tune ``ResultGrid`` (status ``ok``, ``error`` or ``unfinished``)."""
    rows = []
    for result in grid:
        metrics, config = result.metrics or {}, result.config or {}
        if not config:
            config = {k: metrics.get(f"cfg_{k}") for k in SWEPT_KEYS}
        if any(config.get(k) is None for k in SWEPT_KEYS):
            rows.append(TrialRecord(trial_id=Path(result.path).name, index=_trial_index(result.path),
                                    status="unfinished", guidance="", noise_level=0, guidance_scale=math.nan,
                                    steps=0))
            continue
        status = "error" if result.error else ("ok" if metrics.get("done") or "pixel_ap" in metrics else "unfinished")
        swept = {k: config[k] for k in SWEPT_KEYS}
        rows.append(TrialRecord(
            trial_id=str(metrics.get("trial_id") or Path(result.path).name), index=_trial_index(result.path),
            status=status,
            guidance=str(swept["guidance"]), noise_level=int(swept["noise_level"]),
            guidance_scale=float(swept["guidance_scale"]), steps=int(swept["steps"]),
            **{k: float(metrics[k]) for k in ("pixel_ap", "image_auroc", "dice", "seconds_per_image", "duration_s")
               if is_finite(metrics.get(k))},
            n_images=int(metrics["n_images"]) if is_finite(metrics.get("n_images")) else 0,
            effective_noise_level=_int_or_none(metrics.get("effective_noise_level")),
            effective_steps=_int_or_none(metrics.get("effective_steps")),
            finished_at=float(metrics["timestamp"]) if is_finite(metrics.get("timestamp")) else None,
            is_default=_same_point(swept, default), error=_error_line(result.error)))
    rows.sort(key=lambda r: r.index)
    return rows


def _same_point(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["guidance"] == b["guidance"] and int(a["noise_level"]) == int(b["noise_level"])
            and int(a["steps"]) == int(b["steps"])
            and math.isclose(float(a["guidance_scale"]), float(b["guidance_scale"]), rel_tol=1e-9, abs_tol=1e-12))


def _trial_index(path: str) -> int:
    """The trial's number in the sweep (1, 2, ...), from Tune's folder name ``<trainable>_<id>_<n>_<config>``."""
    found = re.match(r"^.+?_[0-9a-f]{5,}_(\d+)(?:_|$)", Path(path).name)
    return int(found.group(1)) if found else 10**9


def _error_line(error: Any) -> str | None:
    """The last line of a trial's error (the exception and its message), without terminal colours."""
    if not error:
        return None
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1].strip()[:1000] if lines else type(error).__name__


def _int_or_none(value: Any) -> int | None:
    return int(value) if is_finite(value) else None
