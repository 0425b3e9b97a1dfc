"""Typed detection configuration (``params["detection"]``), saved in the detector bundle's ``config.json``.

:func:`detection_config` reads the guided bundle's from the params, :func:`imagecond_detection_config`
the image-conditioned bundle's (the same settings, its DDIM steps and start level from ``imagecond.sample``).

``noise_level`` (L) and ``steps`` are requested values; DDIM runs on a grid of the training
timesteps (see :func:`dermclean.diffusion.schedulers.ddim_grid`) and the effective values are what
:meth:`DetectionConfig.effective` reports and what ``run.json`` records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dermclean.config import from_dict
from dermclean.detection.fusion import check_fusion
from dermclean.detection.threshold import THRESHOLD_RULES
from dermclean.errors import ConfigError
from dermclean.methods.imagecond.sample import sample_config

GUIDANCE_KINDS = ("cfg", "classifier", "none")
IMAGE_SCORES = ("auto", "classifier", "map", "fitted", "stacked")


@dataclass
class DetectionConfig:
    """Detection settings.

    - ``guidance``: ``cfg`` (classifier-free, Ho & Salimans 2022), ``classifier`` (noisy classifier,
      Wolleb et al. 2022) or ``none`` (unguided reconstruction, s = 0).
    - ``noise_level``: L of ``num_train_timesteps``; ``steps``: DDIM steps between 0 and L.
    - ``inversion_iters``: fixed-point refinements per DDIM encoding step (0 = plain DDIM inversion).
    - ``guidance_scale``: s. ``smoothing_sigma``: Gaussian smoothing of the map, in model pixels.
    - ``fpr_budget``: pixel false-positive rate on clean validation images that fixes the threshold.
    - ``threshold_rule``: ``pixels`` (flag ``fpr_budget`` of the clean validation pixels) or
      ``upper_bound`` (the flagged share's ``threshold_confidence`` bootstrap upper bound over those
      images at ``fpr_budget``), :mod:`dermclean.detection.threshold`.
    - ``image_score``: ``classifier`` = 1 - prod_k(1 - p_k) from the noisy classifier at t = 0,
      ``map`` = the ``score_quantile`` quantile of the anomaly map, ``auto`` = classifier when the
      bundle has one, else map, ``fitted`` = the classifier's any-artifact logit and the map's peak
      combined by weights fitted on validation labels
      (:class:`~dermclean.detection.image_score.ImageScore`), ``stacked`` = the same with the peak
      replaced by a small model of the map's shape trained on the training split's labels
      (:class:`~dermclean.detection.image_score.MapModel`; ``map_model_images`` caps its training images,
      None = all with complete labels). ``score_tta``: average the noisy classifier's t = 0 probabilities over
      the 8 turned / mirrored images (per-type and image scores; the maps are not affected).
    - ``map_tta``: segment bundles only; the segmenter's logits averaged over the image, its mirror
      image and both turned half-way round, each turned back (four passes; maps and per-type scores).
    - ``map_colour_constancy``: imagecond bundles only; the model restores (and the map compares) the
      image with its illuminant normalised (shades of grey, p = 6), so a colour cast is not a difference.
    - ``imagecond_noise_level``: imagecond bundles only; start of sampling (None = pure noise, Baugh et al.),
      filled from ``imagecond.sample`` by :func:`imagecond_detection_config`, never set in ``detection``.
    - ``eval_max_images``: cap on images per group in evaluation (None = all).
    - ``cpu_bf16``: run the diffusion model under bf16 autocast on CPU as well (CUDA always does);
      faster on CPUs with native bf16 (AVX512-BF16, AMX), slower on others. Fit the threshold with
      the same setting the detector runs with.
    - ``image_size``: the model's resolution (filled from the UNet when the bundle is built).
    """

    guidance: str = "cfg"
    noise_level: int = 400
    guidance_scale: float = 3.0
    steps: int = 8
    inversion_iters: int = 1
    smoothing_sigma: float = 1.0
    fpr_budget: float = 0.01
    threshold_rule: str = "pixels"
    threshold_confidence: float = 0.95
    batch_size: int = 16
    image_size: int = 64
    image_score: str = "auto"
    score_quantile: float = 0.99
    score_tta: bool = False
    map_tta: bool = False
    map_colour_constancy: bool = False
    map_model_images: int | None = None
    imagecond_noise_level: int | None = None
    eval_max_images: int | None = None
    cpu_bf16: bool = False

    def __post_init__(self) -> None:
        if self.guidance not in GUIDANCE_KINDS:
            raise ValueError(f"detection.guidance is {self.guidance!r}; expected one of {GUIDANCE_KINDS}")
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(f"detection.image_score is {self.image_score!r}; expected one of {IMAGE_SCORES}")
        if not 1 <= int(self.steps):
            raise ValueError(f"detection.steps is {self.steps}; expected >= 1")
        if not 1 <= int(self.noise_level):
            raise ValueError(f"detection.noise_level is {self.noise_level}; expected >= 1")
        if not 0.0 < float(self.fpr_budget) < 1.0:
            raise ValueError(f"detection.fpr_budget is {self.fpr_budget}; expected a rate in (0, 1)")
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ValueError(f"detection.threshold_rule is {self.threshold_rule!r}; expected one of {THRESHOLD_RULES}")
        if not 0.5 <= float(self.threshold_confidence) < 1.0:
            raise ValueError(f"detection.threshold_confidence is {self.threshold_confidence}; expected in [0.5, 1)")
        if float(self.guidance_scale) < 0:
            raise ValueError(f"detection.guidance_scale is {self.guidance_scale}; expected >= 0")
        if not 0.0 < float(self.score_quantile) <= 1.0:
            raise ValueError(f"detection.score_quantile is {self.score_quantile}; expected in (0, 1]")
        if int(self.inversion_iters) < 0:
            raise ValueError(f"detection.inversion_iters is {self.inversion_iters}; expected >= 0")
        self.noise_level, self.steps, self.batch_size = int(self.noise_level), int(self.steps), int(self.batch_size)
        self.inversion_iters = int(self.inversion_iters)
        self.guidance_scale, self.smoothing_sigma = float(self.guidance_scale), float(self.smoothing_sigma)

    def replace(self, **overrides: Any) -> "DetectionConfig":
        """A copy with ``overrides`` (unknown keys refused, naming them)."""
        return from_dict(DetectionConfig, {**self.to_dict(), **overrides}, where="detection override")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SAMPLED_BY_METHOD = ("imagecond_noise_level",)
""":class:`DetectionConfig` fields that ``imagecond.sample`` fills (not keys of the ``detection`` section)."""


def detection_config(params: dict[str, Any]) -> tuple[DetectionConfig, str]:
    """The guided bundle's :class:`DetectionConfig` from the effective params (the ``detection`` section, the
    image-conditioned start level from ``imagecond.sample``), and the bundle ``detection.pipeline_detector``
    names (``guided`` when unset)."""
    section = dict(params["detection"])
    chosen = section.pop("pipeline_detector", "guided")
    section.pop("fusion", None)
    misplaced = sorted(set(section) & set(SAMPLED_BY_METHOD))
    if misplaced:
        raise ConfigError(f"detection: unknown keys {misplaced}; the image-conditioned sampling is imagecond.sample")
    section["imagecond_noise_level"] = sample_config(params).noise_level
    return from_dict(DetectionConfig, section, where="detection"), chosen


def imagecond_detection_config(params: dict[str, Any]) -> DetectionConfig:
    """The image-conditioned bundle's :class:`DetectionConfig`: :func:`detection_config` with the DDIM steps
    of ``imagecond.sample``."""
    return detection_config(params)[0].replace(steps=sample_config(params).steps)


def fusion_settings(params: dict[str, Any]) -> tuple[str, float]:
    """``detection.fusion``'s rule (``mean`` or ``max``) and the image-conditioned maps' weight: how the
    fused bundle combines the image-conditioned and the segmenter's maps (``mean``, 0.5 when unset)."""
    fusion = dict((params.get("detection") or {}).get("fusion") or {})
    unknown = sorted(set(fusion) - {"rule", "weight"})
    if unknown:
        raise ConfigError(f"detection.fusion: unknown keys {unknown}; expected rule and weight")
    rule, weight = fusion.get("rule", "mean"), fusion.get("weight", 0.5)
    try:
        check_fusion(rule, weight)
    except ValueError as exc:
        raise ConfigError(f"detection.fusion: {exc}") from exc
    return str(rule), float(weight)
