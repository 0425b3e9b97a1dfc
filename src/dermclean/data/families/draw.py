"""Drawing helpers shared by the renderer families: pixel sizes at 256 px, tick scales, rotated text, textures.

Sizes are given as they look on a 256 px image and scaled with the image side ``s = min(h, w)``, so a
family renders the same picture from 16 to 1024 px. Every helper draws into uint8 0/255 canvases
H x W that :func:`dermclean.data.artifacts.alpha_map` turns into layer alphas.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dermclean.data.artifacts import cv_points, uniform

REFERENCE_SIDE = 256
"""Image side at which family sizes are quoted (``at256``)."""

FONTS: tuple[int, ...] = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX,
                          cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
                          cv2.FONT_HERSHEY_SCRIPT_COMPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL)


def at256(s: int, value: float) -> float:
    """``value`` pixels of a 256 px image, on an image of side ``s``."""
    return value * s / REFERENCE_SIDE


def stroke_px(rng: np.random.Generator, s: int, lo: float, hi: float) -> int:
    """A line thickness drawn from ``U(lo, hi)`` px at 256 px, scaled to side ``s``; at least 1."""
    return max(1, int(round(at256(s, uniform(rng, lo, hi)))))


def pick(rng: np.random.Generator, options: Sequence):
    """One element of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


def unit(theta: float) -> np.ndarray:
    """The unit vector (2,) at angle ``theta`` (radians, image x right, y down)."""
    return np.array([np.cos(theta), np.sin(theta)])


def tick_lengths(n: int, rng: np.random.Generator, short: float, *, every: Sequence[int] = (5, 10)) -> np.ndarray:
    """Lengths (n,) of a millimetre scale: ``short``; 1.5x at every 5th tick; 2.2x at every 10th (random phase)."""
    index = np.arange(n) + int(rng.integers(10))
    lengths = np.full(n, short)
    lengths[index % every[0] == 0] = 1.5 * short
    lengths[index % every[1] == 0] = 2.2 * short
    return lengths


def draw_segments(canvas: np.ndarray, starts: np.ndarray, ends: np.ndarray, thickness: int) -> None:
    """Anti-aliased straight segments ``starts[i] -> ends[i]`` (N x 2 float, x/y) at 255 on ``canvas``."""
    lines = [cv_points(np.stack([a, b])) for a, b in zip(starts, ends)]
    cv2.polylines(canvas, lines, False, 255, thickness, cv2.LINE_AA)


def draw_text(canvas: np.ndarray, text: str, centre: np.ndarray, *, height: float, angle: float, font: int,
              thickness: int, italic: bool = False) -> None:
    """``text`` (cv2 Hershey ``font``, glyphs ``height`` px tall) centred on ``centre`` (x, y), turned by
    ``angle`` radians; drawn on its own canvas, rotated with bilinear interpolation and max-merged into ``canvas``."""
    font = font | (cv2.FONT_ITALIC if italic else 0)
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = max(0.2, height / max(th, 1))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    layer = np.zeros_like(canvas)
    org = (int(round(centre[0] - tw / 2)), int(round(centre[1] + th / 2)))
    cv2.putText(layer, text, org, font, scale, 255, thickness, cv2.LINE_AA)
    turn = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -np.degrees(angle), 1.0)
    layer = cv2.warpAffine(layer, turn, (canvas.shape[1], canvas.shape[0]), flags=cv2.INTER_LINEAR)
    np.maximum(canvas, layer, out=canvas)


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field float32 H x W in [0, 1]: ``cells`` x ``cells`` uniform values, bicubically upsampled."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def streaky(rng: np.random.Generator, alpha: np.ndarray, depth: float) -> np.ndarray:
    """``alpha`` (H x W) times a smooth field in ``[1 - depth, 1]``: ink soaking unevenly into skin."""
    h, w = alpha.shape
    field = smooth_field(rng, h, w, int(rng.integers(6, 16)))
    return (alpha * (1.0 - depth * field)).astype(np.float32)
