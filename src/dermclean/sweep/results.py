"""Records of a sweep: trial rows, timing/overhead, the result, and the ``sweep_best.yaml`` writer.

``sweep_best.yaml`` holds only the swept detection values::

    detection: {guidance: cfg, noise_level: 350, guidance_scale: 4.2, steps: 16}

and is applied last by ``dermclean.config.load_params(..., overrides=["sweep_best.yaml"])``, so it
wins over params.yaml and its profile for those four keys (every other detection key still comes
from params.yaml).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dermclean.io import atomic_path
from dermclean.sweep.space import SWEPT_KEYS
from dermclean.values import finite_or_none

BEST_HEADER = ("# Written by `dermclean sweep` (Ray Tune + Optuna, maximising validation pixel AP).\n"
               "# Overrides params.yaml's detection values: load_params(..., overrides=[this file]).\n"
               "# Delete this file to go back to params.yaml's values.\n")


@dataclass(kw_only=True)
class TrialRecord:
    """One trial: its number in the sweep (``index``, from 1), swept values, metrics (NaN when it failed), timing.

    ``duration_s`` is measured inside the trial around loading the detector and evaluating it;
    ``is_default`` marks the trial that evaluated params.yaml's own detection values.
    """

    trial_id: str
    index: int
    status: str
    guidance: str
    noise_level: int
    guidance_scale: float
    steps: int
    pixel_ap: float = math.nan
    image_auroc: float = math.nan
    dice: float = math.nan
    seconds_per_image: float = math.nan
    duration_s: float = math.nan
    n_images: int = 0
    effective_noise_level: int | None = None
    effective_steps: int | None = None
    finished_at: float | None = None
    is_default: bool = False
    error: str | None = None

    @property
    def detection(self) -> dict[str, Any]:
        """The swept values as a ``detection`` override."""
        return {key: getattr(self, key) for key in SWEPT_KEYS}

    def to_dict(self) -> dict[str, Any]:
        return {k: finite_or_none(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(kw_only=True)
class Timing:
    """Orchestration overhead of one sweep session (see :func:`measure_overhead`).

    ``wall_s`` runs from before Ray starts (or is joined) to the end of ``Tuner.fit``; ``setup_s`` is its
    part before ``Tuner.fit`` (Ray, the MLflow parent run, the searcher); ``post_s`` (threshold fit,
    files, logging) comes after and is not in ``wall_s``.
    """

    wall_s: float
    trial_s_sum: float
    n_trials: int
    concurrency: int
    overhead_fraction: float
    overhead_vs_trial_time: float
    setup_s: float = 0.0
    post_s: float = 0.0
    drain_idle_s: float = 0.0
    orchestration_vs_trial_time: float | None = None  # None without the trials' finish times


@dataclass(kw_only=True)
class SweepResult:
    """What :func:`dermclean.sweep.run.run_sweep` returns (and writes as ``summary.json``)."""

    name: str
    experiment_path: Path
    metric: str
    best: TrialRecord
    default: TrialRecord | None
    trials: list[TrialRecord]
    timing: Timing
    threshold: dict[str, Any]
    best_params_path: Path
    figure_path: Path
    summary_path: Path
    tracking_uri: str
    parent_run_id: str
    resumed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def overhead_fraction(self) -> float:
        return self.timing.overhead_fraction

    @property
    def best_config(self) -> dict[str, Any]:
        """The best trial's swept values (what ``sweep_best.yaml`` holds)."""
        return self.best.detection

    @property
    def best_metric(self) -> float:
        """The best trial's objective (validation pixel AP)."""
        return float(getattr(self.best, self.metric))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "experiment_path": str(self.experiment_path), "metric": self.metric,
            "best": self.best.to_dict(), "default": self.default.to_dict() if self.default else None,
            "best_beats_default": (None if self.default is None or not math.isfinite(self.default.pixel_ap)
                                   else bool(self.best.pixel_ap > self.default.pixel_ap)),
            "trials": [t.to_dict() for t in self.trials], "timing": dataclasses.asdict(self.timing),
            "threshold": self.threshold, "best_params_path": str(self.best_params_path),
            "figure_path": str(self.figure_path), "tracking_uri": self.tracking_uri,
            "parent_run_id": self.parent_run_id, "resumed": self.resumed, **self.extra,
        }


def measure_overhead(*, wall_s: float, trial_durations: list[float], concurrency: int,
                     finish_times: list[float] | None = None) -> Timing:
    """Orchestration overhead of a session that ran ``trial_durations`` in ``wall_s`` seconds.

    ``overhead_fraction = 1 - sum(trial) / (wall_s * concurrency)``: the share of the available
    trial-slot time not spent inside trials (Ray start, worker start-up, Optuna suggestions, MLflow
    logging, idle slots while the last trials finish). ``overhead_vs_trial_time`` is the same idle
    slot time divided by the summed trial time (the issue's "at most 10 % of the summed trial time").
    ``concurrency`` is ``min(max_concurrent, trials run, slots the cluster's resources allow)``.

    With the trials' ``finish_times``, ``drain_idle_s`` is the slot time left idle at the end because
    no trial was left to start: each of the last ``concurrency`` trials to finish leaves its slot idle
    until the last one ends. Uneven trial lengths make it large whatever the orchestrator does, so
    ``orchestration_vs_trial_time`` is the idle slot time without the drain, over the summed trial time.
    """
    total = float(sum(trial_durations))
    slots = max(1, int(concurrency))
    capacity = max(float(wall_s), 1e-9) * slots
    idle = max(capacity - total, 0.0)
    timing = Timing(wall_s=float(wall_s), trial_s_sum=total, n_trials=len(trial_durations), concurrency=slots,
                    overhead_fraction=idle / capacity,
                    overhead_vs_trial_time=idle / total if total > 0 else math.inf)
    if finish_times:
        ends = sorted(finish_times)[-slots:]
        timing.drain_idle_s = float(sum(ends[-1] - end for end in ends))
        timing.orchestration_vs_trial_time = max(idle - timing.drain_idle_s, 0.0) / total if total > 0 else math.inf
    return timing


def write_best_params(path: str | os.PathLike[str], best: dict[str, Any]) -> Path:
    """Write ``{"detection": {swept keys}}`` to ``path`` atomically (YAML, with a header comment)."""
    missing = [k for k in SWEPT_KEYS if k not in best]
    if missing:
        raise ValueError(f"best configuration lacks {missing}; expected the keys {list(SWEPT_KEYS)}")
    detection = {"guidance": str(best["guidance"]), "noise_level": int(best["noise_level"]),
                 "guidance_scale": float(best["guidance_scale"]), "steps": int(best["steps"])}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(BEST_HEADER + yaml.safe_dump({"detection": detection}, sort_keys=True))
    return path
