"""Classical baseline detector: colour and hue rules for ink and stickers, black-hat morphology for lines.

Per pixel, at the input's size, three maps in [0, 1]:

- ``ink``: violet hue (surgical marker, gentian violet; OpenCV hue ~ 125-160 of 180), weighted by
  saturation;
- ``patches``: saturated colour far from skin hue (skin is red-orange, hue ~ 0-25 and 165-180), i.e.
  green, cyan, blue and bright yellow stickers;
- ``ruler``: black-hat (closing minus image) of the grey image with a ``blackhat_kernel`` square,
  which keeps thin dark lines and ticks and drops large dark regions such as the lesion; contrasts
  below ``blackhat_floor`` (skin texture) are ignored, ``blackhat_range`` above it saturates.

The anomaly map is their maximum; per-type scores are the ``score_quantile`` quantile of each type
map; the image score is the largest type score (:func:`type_scores`). Detection wraps the rules in
:class:`~dermclean.detection.classical.ClassicalDetector`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermclean.constants import OUTLIER_CLASSES


@dataclass
class ClassicalConfig:
    """Rule parameters (hue in OpenCV units, 0-180)."""

    violet_hue: float = 142.0
    violet_width: float = 14.0
    skin_hue: float = 10.0
    skin_width: float = 22.0
    min_saturation: float = 0.25
    blackhat_kernel: int = 7
    blackhat_floor: float = 0.08
    blackhat_range: float = 0.25
    score_quantile: float = 0.99
    fpr_budget: float = 0.01
    batch_size: int = 64


def _hue_distance(hue: np.ndarray, centre: float) -> np.ndarray:
    d = np.abs(hue - centre)
    return np.minimum(d, 180.0 - d)


def type_maps(image: np.ndarray, config: ClassicalConfig) -> dict[str, np.ndarray]:
    """The three rule maps (each float32 ``H x W`` in [0, 1]) of a uint8 ``H x W x 3`` RGB image."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hue, sat, val = hsv[..., 0], hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    sat_w = np.clip((sat - config.min_saturation) / (1.0 - config.min_saturation), 0.0, 1.0)
    lit = np.clip(val / 0.25, 0.0, 1.0)  # hue is meaningless in near-black pixels
    violet = np.exp(-0.5 * (_hue_distance(hue, config.violet_hue) / config.violet_width) ** 2)
    non_skin = 1.0 - np.exp(-0.5 * (_hue_distance(hue, config.skin_hue) / config.skin_width) ** 2)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (config.blackhat_kernel, config.blackhat_kernel))
    blackhat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel).astype(np.float32) / 255.0
    return {
        "ruler": np.clip((blackhat - config.blackhat_floor) / config.blackhat_range, 0.0, 1.0).astype(np.float32),
        "ink": (violet * sat_w * lit).astype(np.float32),
        "patches": (non_skin * sat_w * lit).astype(np.float32),
    }


def combined_map(maps: dict[str, np.ndarray]) -> np.ndarray:
    """The anomaly map: the per-pixel maximum of the type maps (float32 ``H x W``)."""
    return np.maximum.reduce([maps[c] for c in OUTLIER_CLASSES])


def type_scores(maps: dict[str, np.ndarray], config: ClassicalConfig) -> dict[str, float]:
    """Per-type scores: the ``score_quantile`` quantile of each type map."""
    return {c: float(np.quantile(maps[c], config.score_quantile)) for c in OUTLIER_CLASSES}
