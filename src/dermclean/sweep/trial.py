"""One sweep trial: the detection pipeline's own evaluation, with the trial's L, s, guidance and steps.

A trial loads the detector bundle with :func:`dermclean.detection.load_detector` and scores it with
:func:`dermclean.detection.evaluate.evaluate_detector` (the function the evaluation stage and the
CLI use), passing the swept values as a detection config override, so nothing is re-saved and there
is no second implementation of detection. The objective is validation pixel AP on artifacts painted
in held-out styles (threshold-free); image AUROC, Dice at the threshold refitted on validation clean
images, and seconds per image are reported beside it.

Paths in :class:`TrialContext` are absolute: Ray Tune runs each trial in its own working folder
(and, on a cluster, on another machine, where the paths must name a shared filesystem).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from dermclean.detection import load_detector
from dermclean.detection.evaluate import evaluate_detector
from dermclean.diffusion.schedulers import ddim_grid
from dermclean.sweep.space import SWEPT_KEYS

REPORTED_METRICS: dict[str, str] = {
    "pixel_ap": "pixel_ap",
    "image_auroc": "image_auroc_any",
    "dice": "dice",
    "seconds_per_image": "seconds_per_image",
    "pixel_auroc": "pixel_auroc",
    "fp_area_clean": "fp_area_clean",
    "pixel_ap_ruler": "pixel_ap_ruler",
    "pixel_ap_ink": "pixel_ap_ink",
    "pixel_ap_patches": "pixel_ap_patches",
    "n_images": "n_painted",
}
"""Trial metric name -> key of :func:`~dermclean.detection.evaluate.evaluate_detector`'s dict."""


@dataclass(frozen=True, kw_only=True)
class TrialContext:
    """What every trial shares: the detector bundle and manifest (absolute paths) and how to score.

    ``max_images`` caps the clean validation images painted per trial (and the artifact images
    scored); ``threads`` sets torch's intra-op threads (the trial's CPU share).
    """

    detector_dir: str
    manifest_path: str
    split: str = "val"
    max_images: int | None = None
    seed: int = 0
    device: str | None = None
    threads: int | None = None


def evaluate_config(config: dict[str, Any], context: TrialContext) -> dict[str, Any]:
    """Evaluate the detector with ``config``'s swept values; return the trial's metrics.

    ``config``: ``{"guidance", "noise_level", "guidance_scale", "steps"}``. Returns the
    :data:`REPORTED_METRICS` (NaN when undefined), ``duration_s`` (loading the bundle + evaluating; not
    the imports, which a reused worker pays once) and, for a
    guided bundle, the ``effective_noise_level`` / ``effective_steps`` of the DDIM grid.
    """
    missing = [k for k in SWEPT_KEYS if k not in config]
    if missing:
        raise ValueError(f"trial config {config} lacks {missing}; expected the keys {list(SWEPT_KEYS)}")
    if context.threads:
        torch.set_num_threads(max(1, int(context.threads)))
    start = time.perf_counter()  # after the imports: a worker's start-up counts as orchestration overhead
    overrides = {key: config[key] for key in SWEPT_KEYS}
    detector = load_detector(context.detector_dir, device=context.device)
    metrics = evaluate_detector(detector, context.manifest_path, split=context.split, seed=context.seed,
                                n_max=context.max_images, overrides=overrides, device=context.device)
    duration = time.perf_counter() - start
    out: dict[str, Any] = {name: _number(metrics.get(key)) for name, key in REPORTED_METRICS.items()}
    out["duration_s"] = duration
    if detector.detector_kind == "guided":
        grid = ddim_grid(detector.unet.module.config.num_train_timesteps, int(config["noise_level"]),
                         int(config["steps"]))
        out["effective_noise_level"], out["effective_steps"] = grid.noise_level, grid.steps
    return out


def tune_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune function trainable: evaluate once and ``tune.report`` the metrics and the config."""
    from ray import tune

    metrics = evaluate_config(config, context)
    tune.report({**metrics, **{f"cfg_{k}": config[k] for k in SWEPT_KEYS}, "trial_pid": os.getpid()})


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number
