"""The sweep's configuration (``params["sweep"]``) and its Optuna search space.

Wolleb et al. (MICCAI 2022) chose the noise level L and the guidance scale s by hand; the sweep
searches them, with the guidance kind and the number of DDIM steps, by Optuna's TPE sampler
driven through Ray Tune. The space is *conditional* (Optuna define-by-run): ``guidance: none`` is the
unguided s = 0 reconstruction, so s is only sampled for ``cfg`` and ``classifier``.

``params.yaml``::

    sweep:
      num_samples: 12              # trials
      max_concurrent: 2            # trials at once
      resources: {cpu: 1}          # per trial ({gpu: 1, cpu: 4} on a GPU cluster)
      space:
        noise_level: {low: 100, high: 700, step: 50}   # int range, both ends included
        guidance_scale: {low: 0.5, high: 50.0}         # log-uniform
        guidance: [cfg, classifier, none]              # categorical (any non-empty subset)
        steps: [8, 16]                                 # categorical DDIM steps
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dermclean.config import params_seed
from dermclean.detection.config import GUIDANCE_KINDS
from dermclean.errors import ConfigError

SWEPT_KEYS: tuple[str, ...] = ("noise_level", "guidance_scale", "guidance", "steps")
"""The detection keys a trial overrides (and ``sweep_best.yaml`` writes)."""


class SweepConfigError(ConfigError):
    """A ``sweep`` section of params.yaml that cannot be used; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class IntRange:
    """Integers ``low, low + step, ..., <= high`` (both ends included)."""

    low: int
    high: int
    step: int = 1


@dataclass(frozen=True, kw_only=True)
class LogRange:
    """Floats in ``[low, high]`` sampled log-uniformly (``low > 0``)."""

    low: float
    high: float


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Optuna define-by-run space over the :data:`SWEPT_KEYS`; call it with an ``optuna.Trial``.

    Returns ``{"guidance": str, "noise_level": int, "guidance_scale": float, "steps": int}``;
    ``guidance_scale`` is 0.0 (not sampled) for ``guidance == "none"``. Picklable, so Ray Tune can
    checkpoint the searcher with it.
    """

    noise_level: IntRange
    guidance_scale: LogRange
    guidance: tuple[str, ...]
    steps: tuple[int, ...]

    def __call__(self, trial: Any) -> dict[str, Any]:
        guidance = trial.suggest_categorical("guidance", list(self.guidance))
        level = trial.suggest_int("noise_level", self.noise_level.low, self.noise_level.high,
                                  step=self.noise_level.step)
        steps = trial.suggest_categorical("steps", list(self.steps))
        if guidance == "none":
            scale = 0.0
        else:
            scale = trial.suggest_float("guidance_scale", self.guidance_scale.low, self.guidance_scale.high,
                                        log=True)
        return {"guidance": str(guidance), "noise_level": int(level), "guidance_scale": float(scale),
                "steps": int(steps)}

    def contains(self, point: dict[str, Any]) -> bool:
        """Whether ``point`` (a detection config's swept values) lies inside this space."""
        level, scale = int(point["noise_level"]), float(point["guidance_scale"])
        in_level = (self.noise_level.low <= level <= self.noise_level.high
                    and (level - self.noise_level.low) % self.noise_level.step == 0)
        in_scale = point["guidance"] == "none" or self.guidance_scale.low <= scale <= self.guidance_scale.high
        return point["guidance"] in self.guidance and int(point["steps"]) in self.steps and in_level and in_scale


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Typed ``params["sweep"]``.

    - ``num_samples`` trials, at most ``max_concurrent`` at once, each holding ``resources``
      (Ray resource names: ``cpu``, ``gpu``, or custom ones).
    - ``address``: a Ray cluster to join (``RAY_ADDRESS`` is used when this is null); without one a
      local Ray starts with ``num_cpus`` CPUs (null: all cores).
    - ``storage_path``: where Ray Tune keeps experiment state (relative paths are taken from the
      repository root; on a multi-node cluster use a shared folder or ``s3://...``).
    - ``split`` and ``max_images``: the images each trial scores (null: the whole split).
    - ``include_default``: the first trial evaluates params.yaml's own detection values, so the
      sweep's best is compared with the default on the same images.
    - ``seed``: the TPE sampler's seed (null: params' top-level ``seed``).
    """

    space: SearchSpace
    num_samples: int = 12
    max_concurrent: int = 2
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1})
    num_cpus: int | None = None
    address: str | None = None
    storage_path: str = "ray_results"
    split: str = "val"
    max_images: int | None = None
    include_default: bool = True
    seed: int | None = None
    metric: str = "pixel_ap"


_DEFAULT_SPACE: dict[str, Any] = {
    "noise_level": {"low": 100, "high": 700, "step": 50},
    "guidance_scale": {"low": 0.5, "high": 50.0},
    "guidance": ["cfg", "classifier", "none"],
    "steps": [8, 16],
}


def build_search_space(raw: dict[str, Any] | None) -> SearchSpace:
    """Build and check :class:`SearchSpace` from ``params["sweep"]["space"]`` (missing keys: defaults)."""
    raw = {**_DEFAULT_SPACE, **(raw or {})}
    unknown = sorted(set(raw) - set(SWEPT_KEYS))
    if unknown:
        raise SweepConfigError(f"sweep.space: unknown keys {unknown}; expected a subset of {list(SWEPT_KEYS)}")
    level = _record(IntRange, raw["noise_level"], "sweep.space.noise_level")
    level = IntRange(low=int(level.low), high=int(level.high), step=int(level.step))
    if not (1 <= level.low <= level.high and level.step >= 1):
        raise SweepConfigError(f"sweep.space.noise_level is {raw['noise_level']}; expected 1 <= low <= high, step >= 1")
    scale = _record(LogRange, raw["guidance_scale"], "sweep.space.guidance_scale")
    scale = LogRange(low=float(scale.low), high=float(scale.high))
    if not 0 < scale.low <= scale.high:
        raise SweepConfigError(f"sweep.space.guidance_scale is {raw['guidance_scale']}; expected 0 < low <= high "
                               "(sampled log-uniformly)")
    kinds = tuple(str(k) for k in _as_list(raw["guidance"], "sweep.space.guidance"))
    bad = [k for k in kinds if k not in GUIDANCE_KINDS]
    if bad or not kinds:
        raise SweepConfigError(f"sweep.space.guidance is {list(kinds)}; expected a non-empty subset of "
                               f"{list(GUIDANCE_KINDS)}")
    steps = tuple(int(s) for s in _as_list(raw["steps"], "sweep.space.steps"))
    if not steps or min(steps) < 1:
        raise SweepConfigError(f"sweep.space.steps is {list(steps)}; expected a non-empty list of integers >= 1")
    return SearchSpace(noise_level=level, guidance_scale=scale, guidance=kinds, steps=steps)


def sweep_config_from_params(params: dict[str, Any]) -> SweepConfig:
    """:class:`SweepConfig` from the effective params (``params["sweep"]``; ``seed`` falls back to params')."""
    raw = dict(params.get("sweep") or {})
    space = build_search_space(raw.pop("space", None))
    names = {f.name for f in dataclasses.fields(SweepConfig)} - {"space"}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise SweepConfigError(f"sweep: unknown keys {unknown}; expected a subset of {sorted(names)}")
    if raw.get("seed") is None:
        raw["seed"] = params_seed(params)
    resources = {str(k): float(v) for k, v in (raw.pop("resources", None) or {"cpu": 1}).items()}
    config = SweepConfig(space=space, resources=resources, **raw)
    if int(config.num_samples) < 1 or int(config.max_concurrent) < 1:
        raise SweepConfigError(f"sweep.num_samples ({config.num_samples}) and sweep.max_concurrent "
                               f"({config.max_concurrent}) must be >= 1")
    if any(v < 0 for v in resources.values()) or not any(v > 0 for v in resources.values()):
        raise SweepConfigError(f"sweep.resources is {resources}; expected e.g. {{cpu: 1}} or {{gpu: 1, cpu: 4}}")
    return config


def default_point(detection: dict[str, Any]) -> dict[str, Any]:
    """The swept values of ``params["detection"]`` as a trial config (s = 0 for ``guidance: none``)."""
    missing = [k for k in SWEPT_KEYS if k not in detection]
    if missing:
        raise SweepConfigError(f"detection: missing keys {missing}; the sweep starts from them")
    point = {"guidance": str(detection["guidance"]), "noise_level": int(detection["noise_level"]),
             "guidance_scale": float(detection["guidance_scale"]), "steps": int(detection["steps"])}
    if point["guidance"] == "none":
        point["guidance_scale"] = 0.0
    return point


def _record(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise SweepConfigError(f"{where} is {value!r}; expected a mapping with keys "
                               f"{[f.name for f in dataclasses.fields(cls)]}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise SweepConfigError(f"{where}: unknown keys {unknown}; expected a subset of {sorted(names)}")
    try:
        return cls(**value)
    except TypeError as exc:
        raise SweepConfigError(f"{where} is {value!r}; expected keys {sorted(names)}: {exc}") from exc


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise SweepConfigError(f"{where} is {value!r}; expected a list")
    return list(value)
