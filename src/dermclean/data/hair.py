"""Lifelike body hair, painted as a negative for artifact detectors.

Real hair in dermoscopy images at 256 px is 1-3 px wide where it leaves the skin and tapers to a faint
tip; it curls, with a curvature that drifts along the strand (now and then a loop); it comes alone or in
tufts of tens of roughly parallel strands, dark brown to black, or light and faint (vellus hair). The
style renderer's hair (:mod:`dermclean.data.style_renderers`) is 1-6 even quadratic curves; this one
draws each strand as a walk whose heading turns by a drifting curvature, with its width and opacity
falling towards the tip. Sizes are quoted at 256 px and scale with the image side.
"""

from __future__ import annotations

import cv2
import numpy as np

from dermclean.data.families.draw import at256
from dermclean.data.layers import Layer, alpha_map, check_image, composite, cv_points, uniform

_STEP = 1.5  # px along a strand between drawn points, at 256 px


def strand(h: int, w: int, rng: np.random.Generator, heading: float) -> tuple[np.ndarray, np.ndarray]:
    """One strand starting anywhere in (or just outside) the frame: points ``(N, 2)`` (x, y) and the
    width ``(N - 1,)`` of each segment in px, tapering to the tip."""
    s = min(h, w)
    step = at256(s, _STEP)
    length = s * uniform(rng, 0.15, 1.2)
    n = max(4, int(length / step))
    # curvature (rad per px at 256 px): a constant bend plus a drift along the strand
    curl = rng.normal(0.0, 0.008) + rng.normal(0.0, uniform(rng, 0.0002, 0.0015), n).cumsum()
    turn = np.cumsum(curl * _STEP)
    angles = heading + turn
    start = np.array([uniform(rng, -0.1, 1.1) * w, uniform(rng, -0.1, 1.1) * h])
    xy = start + np.concatenate([[[0.0, 0.0]], np.cumsum(step * np.stack([np.cos(angles), np.sin(angles)], -1), 0)])
    t = np.linspace(0.0, 1.0, n)
    root = at256(s, uniform(rng, 0.7, 2.4))
    taper_from = uniform(rng, 0.3, 0.85)
    width = root * np.where(t < taper_from, 1.0, 1.0 - 0.8 * (t - taper_from) / (1.0 - taper_from))
    return xy, width


def hair_layers(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A few strands in any direction (p 0.55) or a tuft of 8-40 around one direction; one colour."""
    tuft = rng.random() < 0.45
    count = int(rng.integers(8, 41)) if tuft else int(rng.integers(1, 7))
    main = uniform(rng, 0.0, 2 * np.pi)
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(count):
        heading = main + rng.normal(0.0, 0.45) if tuft else uniform(rng, 0.0, 2 * np.pi)
        xy, width = strand(h, w, rng, heading)
        strength = uniform(rng, 0.5, 1.0)
        # below 1 px a strand is drawn 1 px wide and as much fainter; runs of equal width and shade are
        # drawn as one polyline
        thick = np.maximum(1, np.rint(width)).astype(int)
        shade = (np.rint(255 * strength * np.minimum(1.0, width) / 8) * 8).astype(int)
        one = np.zeros((h, w), np.uint8)
        for run in np.split(np.arange(len(width)), np.flatnonzero(np.diff(thick * 1000 + shade)) + 1):
            if shade[run[0]] > 0:
                cv2.polylines(one, [cv_points(xy[run[0]:run[-1] + 2])], False, int(min(255, shade[run[0]])),
                              int(thick[run[0]]), cv2.LINE_AA)
        np.maximum(canvas, one, out=canvas)
    if rng.random() < 0.75:  # dark brown to black
        v = uniform(rng, 12, 80)
        colour = np.array([v * uniform(rng, 1.0, 1.25), v * uniform(rng, 0.85, 1.0), v * uniform(rng, 0.7, 0.9)])
    else:  # light, faint
        v = uniform(rng, 120, 200)
        colour = np.array([v * 1.05, v * 0.97, v * 0.88])
    blur = at256(min(h, w), uniform(rng, 0.0, 0.6))
    return [Layer(alpha_map(canvas, uniform(rng, 0.55, 0.95), blur), np.clip(colour, 0, 255).astype(np.float32))]


def paint_hair(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hair painted onto a copy of ``image`` (uint8 H x W x 3; untouched): ``(painted, mask)``, the mask
    being exactly the changed pixels."""
    image = check_image(image, "paint_hair")
    return composite(image, hair_layers(*image.shape[:2], rng))
