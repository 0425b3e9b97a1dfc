"""Per-sample degradations: how faint/soft the artifact is, and what the camera and JPEG did to the picture.

Two stages with one sampled :class:`Degradation`:

- :func:`degrade_layers` scales every artifact layer's alpha by ``opacity`` and blurs it: part of how
  the artifact looks, so the mask (changed pixels) is taken *after* this stage;
- :func:`degrade_image` blurs the whole image, adds Gaussian noise from ``noise_seed`` and recompresses
  it as JPEG. It is applied after the mask is taken, to the painted image and (for pairs) to the clean
  one with the same parameters and the same noise, so the two differ only through the artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from dermclean.data.artifacts import Layer, uniform
from dermclean.data.families.draw import at256


@dataclass(kw_only=True, frozen=True)
class DegradeConfig:
    """Ranges from which :func:`sample_degradation` draws; blur widths are Gaussian sigmas in px at 256 px."""

    opacity: tuple[float, float] = (0.55, 1.0)
    alpha_blur: tuple[float, float] = (0.0, 0.8)
    p_image_blur: float = 0.3
    image_blur: tuple[float, float] = (0.3, 1.0)
    p_noise: float = 0.5
    noise_std: tuple[float, float] = (1.0, 5.0)
    p_jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (40, 95)

    def __post_init__(self) -> None:
        for name in ("opacity", "alpha_blur", "image_blur", "noise_std", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"DegradeConfig.{name}: got ({lo}, {hi}); expected 0 <= low <= high")
        for name in ("p_image_blur", "p_noise", "p_jpeg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DegradeConfig.{name}: got {getattr(self, name)}; expected a probability in [0, 1]")
        if self.opacity[1] > 1.0 or self.opacity[0] <= 0.0:
            raise ValueError(f"DegradeConfig.opacity: got {self.opacity}; expected within (0, 1]")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"DegradeConfig.jpeg_quality: got {self.jpeg_quality}; expected within [1, 100]")


@dataclass(frozen=True)
class Degradation:
    """One sample's degradation. Blurs are sigmas in px of this image (0: none); ``jpeg_quality`` None: no JPEG."""

    opacity: float = 1.0
    alpha_blur: float = 0.0
    image_blur: float = 0.0
    noise_std: float = 0.0
    noise_seed: int = 0
    jpeg_quality: int | None = None


NONE = Degradation()
"""The identity degradation."""


def sample_degradation(rng: np.random.Generator, side: int, config: DegradeConfig = DegradeConfig()) -> Degradation:
    """Draw a :class:`Degradation` for an image whose shorter side is ``side`` px.

    Always consumes the same draws from ``rng`` whatever ``config`` says, so the artifact's geometry and
    layer stage do not depend on which image stages are switched on.
    """
    opacity = uniform(rng, *config.opacity)
    alpha_blur = at256(side, uniform(rng, *config.alpha_blur))
    on = rng.random(3) < np.array([config.p_image_blur, config.p_noise, config.p_jpeg])
    image_blur, noise_std = at256(side, uniform(rng, *config.image_blur)), uniform(rng, *config.noise_std)
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    noise_seed = int(rng.integers(2 ** 31))
    return Degradation(opacity=opacity, alpha_blur=alpha_blur, image_blur=image_blur if on[0] else 0.0,
                       noise_std=noise_std if on[1] else 0.0, noise_seed=noise_seed,
                       jpeg_quality=quality if on[2] else None)


def degrade_layers(layers: Sequence[Layer], degradation: Degradation) -> list[Layer]:
    """Layers with alpha (H x W) times ``opacity`` and Gaussian-blurred by ``alpha_blur`` px (>= 0.3 to apply)."""
    out = []
    for layer in layers:
        alpha = layer.alpha * np.float32(degradation.opacity)
        if degradation.alpha_blur >= 0.3:
            alpha = cv2.GaussianBlur(alpha, (0, 0), degradation.alpha_blur)
        out.append(Layer(alpha.astype(np.float32), layer.colour, layer.mode))
    return out


def degrade_image(image: np.ndarray, degradation: Degradation) -> np.ndarray:
    """uint8 H x W x 3 -> uint8 H x W x 3: whole-image blur, then noise (seeded), then a JPEG round trip.

    Deterministic in ``(image, degradation)``: two images with the same degradation get the same noise.
    """
    out = image.astype(np.float32)
    if degradation.image_blur >= 0.3:
        out = cv2.GaussianBlur(out, (0, 0), degradation.image_blur)
    if degradation.noise_std > 0:
        noise = np.random.default_rng(degradation.noise_seed).normal(0.0, degradation.noise_std, image.shape)
        out = out + noise.astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if degradation.jpeg_quality is not None:
        ok, data = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(degradation.jpeg_quality)])
        if not ok:
            raise RuntimeError(f"JPEG encoding of a {image.shape} image failed at quality {degradation.jpeg_quality}")
        out = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
    return out
