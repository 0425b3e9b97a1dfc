"""Layers and their compositing: the drawing primitives every artifact renderer shares.

A renderer draws one or more :class:`Layer` -- a float alpha map ``H x W`` in ``[0, 1]`` and a colour
(RGB triple or ``H x W x 3``) with a blend mode (``normal``, ``multiply`` for ink soaking into skin,
``screen`` for glare) -- which :func:`composite` blends in float and quantises to uint8 once. The mask
is then *defined* as the pixels that changed, so ``mask == (painted != original).any(-1)`` holds exactly.
Pixels the artifact covers with alpha >= ``_EPS`` whose blend rounds back to the original value are
pushed one intensity level toward the artifact, so faint but real coverage is never left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

_EPS = 0.1


@dataclass
class Layer:
    """``alpha`` float32 H x W in [0, 1]; ``colour`` RGB (3,) or H x W x 3; ``mode`` normal/multiply/screen."""

    alpha: np.ndarray
    colour: np.ndarray | tuple[float, float, float]
    mode: str = "normal"


INK_COLOURS: dict[str, tuple[int, int, int]] = {"violet": (115, 45, 160), "purple": (85, 30, 120),
                                               "blue": (35, 55, 165), "black": (25, 25, 35)}
STICKER_COLOURS = [(40, 180, 70), (235, 210, 40), (240, 130, 30), (215, 40, 50), (40, 110, 220), (230, 80, 160),
                   (30, 190, 210)]


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw of ``U(lo, hi)`` as a Python float."""
    return float(rng.uniform(lo, hi))


def width_px(rng: np.random.Generator, s: int, lo: float, hi: float) -> int:
    """A width of ``s * U(lo, hi)`` pixels, at least 1."""
    return max(1, int(round(s * rng.uniform(lo, hi))))


def alpha_map(canvas: np.ndarray, opacity: float, blur: float = 0.0) -> np.ndarray:
    """uint8 0/255 drawing -> float32 alpha scaled by ``opacity``, Gaussian-blurred by ``blur`` px."""
    a = canvas.astype(np.float32) * np.float32(opacity / 255.0)
    return cv2.GaussianBlur(a, (0, 0), blur) if blur >= 0.3 else a


def jitter(rng: np.random.Generator, colour: Sequence[float], amount: float) -> np.ndarray:
    """``colour`` (3,) plus ``U(-amount, amount)`` per channel, clipped to [0, 255], float32."""
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def cv_points(xy: np.ndarray) -> np.ndarray:
    """Float points N x 2 (x, y) -> rounded int32 N x 1 x 2, the shape cv2 polygon calls take."""
    return np.rint(xy).astype(np.int32).reshape(-1, 1, 2)


def random_edge(h: int, w: int, rng: np.random.Generator) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], int]:
    """A random image edge as a map (along, depth) -> (x, y) points N x 2, and the edge's length."""
    side = int(rng.integers(4))
    if side == 0:
        return (lambda a, d: np.stack([a, d], -1)), w
    if side == 1:
        return (lambda a, d: np.stack([a, h - 1 - d], -1)), w
    if side == 2:
        return (lambda a, d: np.stack([d, a], -1)), h
    return (lambda a, d: np.stack([w - 1 - d, a], -1)), h


def bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 48) -> np.ndarray:
    """``n`` points (n x 2) of the quadratic Bezier curve with control points ``p0, p1, p2``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2


def check_image(image: np.ndarray, caller: str = "paint_artifact") -> np.ndarray:
    """``image`` as a uint8 H x W x 3 array of at least 8 px a side, else ``ValueError`` naming ``caller``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{caller}: got {image.dtype} array of shape {image.shape}; expected uint8 HxWx3")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"{caller}: image of {image.shape[1]}x{image.shape[0]} px; expected at least 8 px a side")
    return image


def composite(image: np.ndarray, layers: Sequence[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``layers`` over ``image`` (uint8 H x W x 3); return ``(painted uint8, mask bool H x W)``.

    ``mask`` is exactly the changed pixels. Where the layers' total alpha is >= ``_EPS`` but the result
    rounds back to the original, the channel with the largest float change moves one level that way.
    """
    painted = image.copy()
    cover = np.zeros(image.shape[:2], bool)
    for layer in layers:
        cover |= layer.alpha > 0
    rows, cols = np.flatnonzero(cover.any(1)), np.flatnonzero(cover.any(0))
    if len(rows) == 0:
        return painted, np.zeros(image.shape[:2], bool)
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # work inside the layers' bounding box
    orig = image[box]
    base = orig.astype(np.float32)
    out = base.copy()
    keep = np.ones(orig.shape[:2], np.float32)
    for layer in layers:
        alpha = layer.alpha[box]
        colour = np.asarray(layer.colour, np.float32)
        colour = colour[box] if colour.ndim == 3 else colour
        if layer.mode == "multiply":
            target = out * (colour / 255.0)
        elif layer.mode == "screen":
            target = 255.0 - (255.0 - out) * (1.0 - colour / 255.0)
        else:
            target = colour
        out += (target - out) * alpha[..., None]
        keep *= 1.0 - alpha
    crop = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    stuck = ((1.0 - keep) >= _EPS) & ~(crop != orig).any(-1)
    if stuck.any():
        ys, xs = np.nonzero(stuck)
        delta = out[ys, xs] - base[ys, xs]
        ch = np.abs(delta).argmax(-1)
        d = delta[np.arange(len(ys)), ch]
        value = orig[ys, xs, ch].astype(np.int16)
        step = np.where(d > 0, 1, np.where(d < 0, -1, np.where(value < 128, 1, -1)))
        step = np.where((value + step < 0) | (value + step > 255), -step, step)
        crop[ys, xs, ch] = (value + step).astype(np.uint8)
    painted[box] = crop
    return painted, (painted != image).any(-1)
