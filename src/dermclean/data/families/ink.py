"""Ink renderer families: surgical skin-marker pen on the skin around a lesion.

Each family is a function ``(h, w, rng) -> list[Layer]`` drawing one pen layer 1-8 px wide at 256 px
(scaled with the side ``s = min(h, w)``) in a pen colour seen in ISIC images (gentian violet, purple,
blue, black, green), blended normally or multiplied into the skin, often streaky (uneven uptake) and
slightly blurred. The lesion is assumed near the image centre.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from dermclean.data.artifacts import INK_COLOURS, Layer, alpha_map, cv_points, jitter, uniform
from dermclean.data.families.draw import FONTS, at256, draw_segments, draw_text, pick, stroke_px, streaky, unit

PEN_COLOURS: dict[str, tuple[int, int, int]] = {**INK_COLOURS, "green": (40, 115, 75)}
"""Marker colours, RGB."""

WORDS: tuple[str, ...] = ("L", "R", "A", "B", "C", "1", "2", "3", "x", "X", "OK", "bx", "Sx", "exc", "5mm", "DN",
                          "MM?", "cut", "24", "->")


def _pen(canvas: np.ndarray, rng: np.random.Generator) -> list[Layer]:
    """The pen layer: random colour and blend, opacity 0.5-0.95, streaky half the time, blur <= 0.8 px at 256."""
    s = min(canvas.shape)
    alpha = alpha_map(canvas, uniform(rng, 0.5, 0.95), uniform(rng, 0.0, at256(s, 0.8)))
    if rng.random() < 0.5:
        alpha = streaky(rng, alpha, uniform(rng, 0.3, 0.7))
    colour = jitter(rng, PEN_COLOURS[pick(rng, tuple(PEN_COLOURS))], 18)
    return [Layer(alpha, colour, "multiply" if rng.random() < 0.5 else "normal")]


def _centre(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Approximate lesion centre (x, y): the image centre with a 6 % jitter."""
    return np.array([w / 2, h / 2]) + rng.normal(0.0, 0.06 * min(h, w), 2)


def _cubic(p: np.ndarray, n: int = 64) -> np.ndarray:
    """``n`` points (n x 2) of the cubic Bezier curve with the 4 control points ``p`` (4 x 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3]


def pen_stroke(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """1-3 free cubic Bezier strokes of 0.2-0.8 of the side."""
    s = min(h, w)
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        start = np.array([uniform(rng, 0.05, 0.95) * w, uniform(rng, 0.05, 0.95) * h])
        end = start + s * uniform(rng, 0.2, 0.8) * unit(uniform(rng, 0.0, 2 * np.pi))
        bends = start + (end - start) * np.array([[1 / 3], [2 / 3]]) + rng.normal(0.0, 0.15 * s, (2, 2))
        cv2.polylines(canvas, [cv_points(_cubic(np.vstack([start, bends, end])))], False, 255,
                      stroke_px(rng, s, 1.0, 8.0), cv2.LINE_AA)
    return _pen(canvas, rng)


def pen_dots(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """2-14 dots of 1-5 px radius at 256 px: a cluster, or a dotted ring around the lesion."""
    s, canvas = min(h, w), np.zeros((h, w), np.uint8)
    k = int(rng.integers(2, 15))
    if rng.random() < 0.5:
        points = np.array([uniform(rng, 0.1, 0.9) * w, uniform(rng, 0.1, 0.9) * h]) + rng.normal(0, 0.08 * s, (k, 2))
    else:
        phis = uniform(rng, 0, 2 * np.pi) + np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.normal(0, 0.08, k)
        points = _centre(h, w, rng) + s * uniform(rng, 0.2, 0.42) * np.stack([np.cos(phis), np.sin(phis)], -1)
    for p in points:
        cv2.circle(canvas, tuple(np.rint(p).astype(int)), max(1, int(round(at256(s, uniform(rng, 1.0, 5.0))))), 255,
                   -1, cv2.LINE_AA)
    return _pen(canvas, rng)


def pen_ellipse(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A wobbly hand-drawn circle or ellipse (270-380 degrees of arc) around the lesion."""
    s, canvas = min(h, w), np.zeros((h, w), np.uint8)
    start = uniform(rng, 0.0, 2 * np.pi)
    phis = start + np.linspace(0.0, np.deg2rad(uniform(rng, 270.0, 380.0)), 96)
    a, b = s * uniform(rng, 0.2, 0.46), s * uniform(rng, 0.2, 0.46)
    wobble = 1.0 + 0.04 * np.sin(uniform(rng, 2.0, 5.0) * phis + uniform(rng, 0.0, 6.0))
    turn = uniform(rng, 0.0, np.pi)
    local = np.stack([a * wobble * np.cos(phis), b * wobble * np.sin(phis)], -1)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    cv2.polylines(canvas, [cv_points(_centre(h, w, rng) + local @ rot.T)], False, 255, stroke_px(rng, s, 1.0, 6.0),
                  cv2.LINE_AA)
    return _pen(canvas, rng)


def pen_text(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """1-2 handwritten-looking words or letters (a random Hershey font, maybe italic), turned up to 40 degrees."""
    s, canvas = min(h, w), np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        draw_text(canvas, pick(rng, WORDS), np.array([uniform(rng, 0.12, 0.88) * w, uniform(rng, 0.12, 0.88) * h]),
                  height=at256(s, uniform(rng, 14.0, 40.0)), angle=np.deg2rad(uniform(rng, -40.0, 40.0)),
                  font=pick(rng, FONTS), thickness=stroke_px(rng, s, 1.0, 5.0), italic=rng.random() < 0.3)
    return _pen(canvas, rng)


def pen_arrow(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """1-2 arrows from the periphery pointing at the lesion, open arrowheads."""
    s, canvas = min(h, w), np.zeros((h, w), np.uint8)
    centre = _centre(h, w, rng)
    for _ in range(int(rng.integers(1, 3))):
        d = unit(uniform(rng, 0.0, 2 * np.pi))
        tip = centre + d * s * uniform(rng, 0.12, 0.3)
        tail = tip + d * s * uniform(rng, 0.15, 0.4)
        cv2.arrowedLine(canvas, tuple(np.rint(tail).astype(int)), tuple(np.rint(tip).astype(int)), 255,
                        stroke_px(rng, s, 1.0, 6.0), cv2.LINE_AA, 0, uniform(rng, 0.2, 0.45))
    return _pen(canvas, rng)


def pen_hatch(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A patch of 4-14 short parallel strokes, crossed by a second set half the time (marker hatching)."""
    s, canvas = min(h, w), np.zeros((h, w), np.uint8)
    centre = np.array([uniform(rng, 0.15, 0.85) * w, uniform(rng, 0.15, 0.85) * h])
    span, stroke = s * uniform(rng, 0.1, 0.3), s * uniform(rng, 0.06, 0.18)
    thick = stroke_px(rng, s, 1.0, 4.0)
    theta = uniform(rng, 0.0, np.pi)
    for turn in (0.0, uniform(rng, 0.6, 1.6))[:1 + int(rng.random() < 0.5)]:
        u, n = unit(theta + turn), unit(theta + turn + np.pi / 2)
        offsets = np.linspace(-span / 2, span / 2, int(rng.integers(4, 15)))
        mids = centre + offsets[:, None] * u + rng.normal(0.0, 0.01 * s, (len(offsets), 2))
        half = stroke / 2 * rng.uniform(0.7, 1.3, (len(offsets), 1))
        draw_segments(canvas, mids - half * n, mids + half * n, thick)
    return _pen(canvas, rng)


RENDERERS: dict[str, Callable[[int, int, np.random.Generator], list[Layer]]] = {
    "pen_stroke": pen_stroke, "pen_dots": pen_dots, "pen_ellipse": pen_ellipse, "pen_text": pen_text,
    "pen_arrow": pen_arrow, "pen_hatch": pen_hatch,
}
"""Ink families, name -> renderer ``(h, w, rng) -> list[Layer]``."""
