"""``run_sweep``: Ray Tune + Optuna over L, s, guidance kind and DDIM steps, tracked in MLflow.

1. Ray: join a cluster by address or start locally (:mod:`dermclean.sweep.cluster`).
2. MLflow: a parent run ``sweep-<timestamp>`` in ``dermclean-detector``; one child run per trial,
   logged from the driver (:class:`~dermclean.sweep.mlflow_log.ChildRunLogger`).
3. Tune: :func:`~dermclean.sweep.trial.tune_trial` (the detection stage's own evaluation) under
   ``OptunaSearch`` (TPE, seeded, conditional space), ``num_samples`` trials, ``max_concurrent`` at
   once, each holding ``resources``. The first trial evaluates params.yaml's detection values.
4. After the sweep: the threshold of the best configuration is fitted exactly as the detect stage
   fits it (:func:`dermclean.detection.evaluate.fit_threshold` on validation clean images), then
   ``sweep_best.yaml``, ``<out>/summary.json``, ``<out>/threshold.json`` and ``<out>/sweep_ap.png``
   are written atomically and logged to the parent run.

Resuming: each sweep is a Tune experiment ``<storage_path>/sweep-<timestamp>`` holding a
``dermclean_sweep.json`` marker (fingerprint of the sweep's inputs, parent run id, finished flag).
Tune saves its state at least every second (``TUNE_GLOBAL_CHECKPOINT_S``, default 1 here), so an
interrupted sweep (Ctrl-C, a killed driver) loses at most the trials in flight (after a hard
kill, also a trial that finished in the last second before it); they are re-run on resume.
``resume=None`` (default) resumes the newest unfinished sweep whose fingerprint matches (same
params, detector, manifest) and otherwise starts a new one; ``resume=True`` insists on resuming;
``resume=False`` always starts a new one. Resuming calls ``Tuner.restore(path, trainable,
resume_errored=True)`` and reopens the same MLflow parent run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dermclean import tracking
from dermclean.config import load_params, params_seed
from dermclean.detection import load_detector
from dermclean.detection.evaluate import fit_threshold
from dermclean.io import read_json, write_json
from dermclean.sweep.cluster import ray_session, resolve_address
from dermclean.sweep.plots import plot_ap_surface
from dermclean.sweep.resume import MARKER, SweepError, find_resumable, fingerprint_inputs
from dermclean.sweep.results import SweepResult, TrialRecord, measure_overhead, write_best_params
from dermclean.sweep.space import SweepConfig, default_point, sweep_config_from_params
from dermclean.sweep.tuner import EXPERIMENT, make_tuner, trial_records
from dermclean.values import is_finite

EXPERIMENT = "dermclean-detector"
log = logging.getLogger(__name__)


class SweepInterrupted(SweepError):
    """The sweep stopped before all trials finished; resume it with ``--resume``."""


def run_sweep(params: dict[str, Any], *, repo_root: str | os.PathLike[str], detector_dir: str | os.PathLike[str],
              manifest_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
              out_params: str | os.PathLike[str] = "sweep_best.yaml", address: str | None = None,
              resume: bool | None = None, storage_path: str | os.PathLike[str] | None = None,
              device: str | None = None) -> SweepResult:
    """Sweep the detection config of ``detector_dir`` on ``manifest_path``'s validation split.

    ``params``: the effective params (``load_params``) with ``sweep`` and ``detection`` sections.
    Relative ``out_dir`` (default ``reports/sweep``), ``out_params``, ``storage_path`` (default
    ``params.sweep.storage_path``) are taken from ``repo_root``. Raises :class:`SweepInterrupted`
    when trials are left unfinished, :class:`SweepError` when no trial succeeded.
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    root = Path(repo_root).resolve()
    cfg = sweep_config_from_params(params)
    detector_dir, manifest_path = _abs(detector_dir, root), _abs(manifest_path, root)
    out_dir, out_params = _abs(out_dir or "reports/sweep", root), _abs(out_params, root)
    storage = _abs(storage_path or cfg.storage_path, root)
    if not (detector_dir / "config.json").is_file():
        raise FileNotFoundError(f"detector bundle {detector_dir} not found (config.json missing); run the detect "
                                f"stage first (dvc repro detect) or pass --detector PATH")
    if not manifest_path.is_file():
        raise FileNotFoundError(f"manifest {manifest_path} not found; run the prepare stage first")
    cfg = _drop_unusable_guidance(cfg, detector_dir)
    default = default_point(params.get("detection") or {})
    fingerprint = fingerprint_inputs(cfg, default, detector_dir, manifest_path)
    name = find_resumable(storage, fingerprint, resume)
    resumed = name is not None
    name = name or f"sweep-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    experiment_path = storage / name

    tracking_uri = tracking.configure_tracking(root)
    session_start = time.time()
    with ray_session(resolve_address(address, cfg.address), num_cpus=cfg.num_cpus) as session, \
            _parent_run(params, name=name, experiment_path=experiment_path, resumed=resumed,
                        data_paths=[manifest_path, detector_dir]) as parent:
        if not resumed:
            write_json(experiment_path / MARKER, {"fingerprint": fingerprint, "parent_run_id": parent.info.run_id,
                                                  "finished": False, "num_samples": cfg.num_samples,
                                                  "tracking_uri": tracking_uri, "created": session_start})
        tuner = make_tuner(cfg, default=default, name=name, storage=storage, experiment_path=experiment_path,
                       detector_dir=detector_dir, manifest_path=manifest_path, device=device, resumed=resumed,
                       tracking_uri=tracking_uri, parent=parent)
        fit_start = time.time()
        rows = trial_records(tuner.fit(), default)
        timing = _timing(rows, cfg, slots=session.slots(cfg.resources), session_start=session_start,
                         fit_start=fit_start)
        best = _best(rows, cfg, name=name, experiment_path=experiment_path)
        post_start = time.time()
        default_row = next((r for r in rows if r.is_default), None)
        result = _finish(params, cfg, rows=rows, best=best, default_row=default_row, name=name,
                         experiment_path=experiment_path, out_dir=out_dir, out_params=out_params,
                         detector_dir=detector_dir, manifest_path=manifest_path, device=device, timing=timing,
                         tracking_uri=tracking_uri, parent_run_id=parent.info.run_id, resumed=resumed,
                         address=session.address, post_start=post_start)
        marker = read_json(experiment_path / MARKER)
        write_json(experiment_path / MARKER, {**marker, "finished": True, "best": best.detection})
    return result


def sweep_from_files(*, params_path: str | os.PathLike[str] = "params.yaml",
                     manifest_path: str | os.PathLike[str] = "data/prepared/manifest.csv",
                     detector_dir: str | os.PathLike[str] = "models/detector",
                     out_dir: str | os.PathLike[str] = "reports/sweep",
                     best_path: str | os.PathLike[str] = "sweep_best.yaml", address: str | None = None,
                     resume: bool = False, fresh: bool = False, profile: str | None = None,
                     storage_path: str | os.PathLike[str] | None = None, device: str | None = None) -> SweepResult:
    """:func:`run_sweep` from files, for the ``dermclean sweep`` command.

    Params come from ``params_path`` (profile applied, *without* ``sweep_best.yaml``: the sweep starts
    from params.yaml's own detection values); the repository root is ``params_path``'s folder.
    ``resume=True`` insists on resuming, ``fresh=True`` always starts a new sweep; neither resumes a
    matching unfinished sweep when there is one.
    """
    if resume and fresh:
        raise SweepError("--resume and --fresh exclude each other")
    params_path = Path(params_path).resolve()
    params = load_params(params_path, profile=profile)
    return run_sweep(params, repo_root=params_path.parent, detector_dir=Path(detector_dir).resolve(),
                     manifest_path=Path(manifest_path).resolve(), out_dir=Path(out_dir).resolve(),
                     out_params=Path(best_path).resolve(), address=address,
                     resume=True if resume else (False if fresh else None),
                     storage_path=Path(storage_path).resolve() if storage_path else None, device=device)


def _finish(params: dict[str, Any], cfg: SweepConfig, *, rows: list[TrialRecord], best: TrialRecord,
            default_row: TrialRecord | None, name: str, experiment_path: Path, out_dir: Path, out_params: Path,
            detector_dir: Path, manifest_path: Path, device: str | None, timing: Any, tracking_uri: str,
            parent_run_id: str, resumed: bool, address: str | None, post_start: float) -> SweepResult:
    """Fit the best configuration's threshold, write and log sweep_best.yaml, summary, threshold, figure."""
    import mlflow

    detector = load_detector(detector_dir, device=device).with_config(**best.detection)
    threshold = fit_threshold(detector, manifest_path, split="val", seed=params_seed(params)).to_dict()
    write_json(out_dir / "threshold.json", threshold)
    write_best_params(out_params, best.detection)
    figure = plot_ap_surface([r.to_dict() for r in rows if r.status == "ok"], out_dir / "sweep_ap.png",
                             metric=cfg.metric, best=best.to_dict(),
                             default=default_row.to_dict() if default_row else None,
                             title=f"{name}: validation pixel AP over (L, s)")
    timing.post_s = time.time() - post_start
    result = SweepResult(name=name, experiment_path=experiment_path, metric=cfg.metric, best=best, default=default_row,
                         trials=rows, timing=timing, threshold=threshold, best_params_path=out_params,
                         figure_path=figure, summary_path=out_dir / "summary.json", tracking_uri=tracking_uri,
                         parent_run_id=parent_run_id, resumed=resumed,
                         extra={"address": address, "num_samples": cfg.num_samples,
                                "max_concurrent": cfg.max_concurrent, "resources": cfg.resources,
                                "space": _space_dict(cfg)})
    write_json(result.summary_path, result.to_dict())
    mlflow.log_metrics({f"best_{k}": v for k, v in best.to_dict().items()
                        if k in ("pixel_ap", "image_auroc", "dice", "seconds_per_image") and v is not None})
    if default_row is not None and math.isfinite(default_row.pixel_ap):
        mlflow.log_metric("default_pixel_ap", default_row.pixel_ap)
    mlflow.log_metrics({"wall_s": timing.wall_s, "trial_s_sum": timing.trial_s_sum,
                        "overhead_fraction": timing.overhead_fraction, "n_trials": len(rows),
                        "drain_idle_s": timing.drain_idle_s,
                        **{k: v for k in ("overhead_vs_trial_time", "orchestration_vs_trial_time")
                           if is_finite(v := getattr(timing, k))}})
    mlflow.log_params({f"best.{k}": v for k, v in best.detection.items()})
    for path in (out_params, figure, result.summary_path, out_dir / "threshold.json"):
        mlflow.log_artifact(str(path), artifact_path="sweep")
    return result


def _timing(rows: list[TrialRecord], cfg: SweepConfig, *, slots: int, session_start: float, fit_start: float) -> Any:
    """The session's :class:`~dermclean.sweep.results.Timing`: wall time against the trials finished in it."""
    wall = time.time() - session_start
    this_session = [r for r in rows if r.status == "ok" and (r.finished_at or 0) >= session_start]
    timing = measure_overhead(
        wall_s=wall, trial_durations=[r.duration_s for r in this_session],
        finish_times=[r.finished_at for r in this_session],
        concurrency=min(cfg.max_concurrent, slots, max(1, sum(1 for r in rows if (r.finished_at or 0) >= session_start))))
    timing.setup_s = fit_start - session_start
    return timing


def _best(rows: list[TrialRecord], cfg: SweepConfig, *, name: str, experiment_path: Path) -> TrialRecord:
    """The trial with the highest pixel AP; :class:`SweepInterrupted` while trials are unfinished,
    :class:`SweepError` when none produced one."""
    finished = [r for r in rows if r.status in ("ok", "error")]
    if len(finished) < cfg.num_samples:
        raise SweepInterrupted(f"sweep {name}: {len(finished)} of {cfg.num_samples} trials finished; resume "
                               f"it with `dermclean sweep --resume` (state in {experiment_path})")
    ok = [r for r in rows if r.status == "ok" and math.isfinite(r.pixel_ap)]
    if not ok:
        errors = "; ".join(f"{r.trial_id}: {r.error}" for r in rows if r.error)[:2000]
        raise SweepError(f"sweep {name}: no trial produced a pixel AP ({errors})")
    return max(ok, key=lambda r: r.pixel_ap)


def _parent_run(params: dict[str, Any], *, name: str, experiment_path: Path, resumed: bool, data_paths: list[Path]):
    """The sweep's MLflow parent run: a new one, or the resumed sweep's own (from its marker)."""
    import mlflow

    if resumed:
        return mlflow.start_run(run_id=read_json(experiment_path / MARKER)["parent_run_id"])
    logged = {"profile": params.get("profile"), "sweep": params.get("sweep") or {},
              "detection": params.get("detection") or {}}
    return tracking.start_run(EXPERIMENT, name, params=logged, data_paths=data_paths,
                     tags={"sweep": name, "ray_experiment_path": str(experiment_path), "run_kind": "sweep"})


def _drop_unusable_guidance(cfg: SweepConfig, detector_dir: Path) -> SweepConfig:
    """Classifier guidance needs the bundle's noisy classifier; without one it leaves the space (logged)."""
    if "classifier" in cfg.space.guidance and not (detector_dir / "noisy_classifier").is_dir():
        kinds = tuple(k for k in cfg.space.guidance if k != "classifier")
        if not kinds:
            raise SweepError(f"sweep.space.guidance is ['classifier'] but {detector_dir} has no noisy_classifier/; "
                             f"add cfg or none to sweep.space.guidance")
        log.warning("%s has no noisy_classifier/: classifier guidance left out of the sweep", detector_dir)
        cfg = dataclasses.replace(cfg, space=dataclasses.replace(cfg.space, guidance=kinds))
    return cfg


def _space_dict(cfg: SweepConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg.space)


def _abs(path: str | os.PathLike[str], root: Path) -> Path:
    path = Path(path)
    return (path if path.is_absolute() else root / path).resolve()
