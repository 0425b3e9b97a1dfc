"""Ruler renderer families: the thin, faint millimetre scales of dermoscopy images.

Real rulers at 256 px are 1-2 px tick marks, often along an image edge or along the rim of the
dermoscope's circular field, often without a bar, sometimes with a thin baseline, numerals or "mm".
Each family is a function ``(h, w, rng) -> list[Layer]``; geometry (position, angle, pitch, tick length,
1-3 px widths at 256 px scaled with the side) is drawn from ``rng`` within the family. Ticks are dark
(3 in 4) or light.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from dermclean.data.artifacts import Layer, alpha_map, cv_points, jitter, random_edge, uniform
from dermclean.data.families.draw import (FONTS, at256, draw_segments, draw_text, pick, stroke_px, tick_lengths,
                                          unit)


def _colour(rng: np.random.Generator) -> np.ndarray:
    """Tick colour (3,): near-black (p 0.75) or near-white."""
    return jitter(rng, (232, 230, 226) if rng.random() < 0.25 else (38, 34, 32), 14)


def _layer(canvas: np.ndarray, rng: np.random.Generator, colour: np.ndarray, lo: float = 0.45,
           hi: float = 0.95) -> Layer:
    """Canvas -> layer with opacity ``U(lo, hi)`` and a 0-0.6 px (at 256 px) blur."""
    return Layer(alpha_map(canvas, uniform(rng, lo, hi), uniform(rng, 0.0, at256(min(canvas.shape), 0.6))), colour)


def _frame_axes(h: int, w: int, rng: np.random.Generator):
    """A random image edge: ``to_xy`` (along, depth) -> (x, y), its length, unit vectors along and inward."""
    to_xy, length = random_edge(h, w, rng)
    o, e, m = to_xy(np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
    return to_xy, length, e - o, m - o


def _scale(canvas: np.ndarray, rng: np.random.Generator, origin: np.ndarray, u: np.ndarray, n: np.ndarray, *,
           length: float, pitch: float, short: float, thick: int, baseline: bool) -> tuple[np.ndarray, np.ndarray]:
    """A straight millimetre scale from ``origin`` along ``u``, ticks toward ``n``; returns feet N x 2, lengths (N,)."""
    t = np.arange(0.0, length, max(pitch, 2.0))
    feet = origin + t[:, None] * u
    lengths = tick_lengths(len(t), rng, short)
    draw_segments(canvas, feet, feet + lengths[:, None] * n, thick)
    if baseline and len(t) > 1:
        draw_segments(canvas, feet[:1], feet[-1:], thick)
    return feet, lengths


def edge_ticks(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """Ticks only, no bar, along a stretch of one image edge: dense mm ticks or sparse slanted dashes."""
    s = min(h, w)
    to_xy, length, _, _ = _frame_axes(h, w, rng)
    dense = rng.random() < 0.5
    pitch = at256(s, uniform(rng, 2.5, 5.0) if dense else uniform(rng, 8.0, 16.0))
    short = at256(s, uniform(rng, 4.0, 8.0) if dense else uniform(rng, 8.0, 18.0))
    slant = uniform(rng, -0.15, 0.15) if dense else uniform(rng, -0.7, 0.7)
    a0 = uniform(rng, 0.0, 0.5) * length
    along = np.arange(a0, a0 + uniform(rng, 0.3, 0.9) * length, max(pitch, 2.0))
    lengths = tick_lengths(len(along), rng, short) if dense else short * rng.uniform(0.85, 1.15, len(along))
    depth = np.full(len(along), at256(s, uniform(rng, -3.0, 14.0)))
    canvas = np.zeros((h, w), np.uint8)
    draw_segments(canvas, to_xy(along, depth),
                  to_xy(along + lengths * np.sin(slant), depth + lengths * np.cos(slant)), stroke_px(rng, s, 0.8, 2.6))
    return [_layer(canvas, rng, _colour(rng))]


def rim_ticks(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """Radial ticks along an arc of the circular field's rim (curved scale), optionally with the arc itself."""
    s = min(h, w)
    centre = np.array([w / 2, h / 2]) + rng.normal(0.0, at256(s, 5.0), 2)
    radius = s * uniform(rng, 0.40, 0.53)
    phi0 = uniform(rng, 0.0, 2 * np.pi)
    step = max(at256(s, uniform(rng, 3.0, 9.0)), 2.0) / radius
    phis = np.arange(phi0, phi0 + uniform(rng, 0.5, 2.2), step)
    radial = np.stack([np.cos(phis), np.sin(phis)], -1)
    feet = centre + radius * radial
    lengths = tick_lengths(len(phis), rng, at256(s, uniform(rng, 4.0, 9.0)))
    inward = -1.0 if rng.random() < 0.7 else 1.0
    canvas = np.zeros((h, w), np.uint8)
    thick = stroke_px(rng, s, 0.8, 2.6)
    draw_segments(canvas, feet, feet + inward * lengths[:, None] * radial, thick)
    if rng.random() < 0.3:
        arc = centre + radius * np.stack([np.cos(np.linspace(phis[0], phis[-1], 64)),
                                          np.sin(np.linspace(phis[0], phis[-1], 64))], -1)
        draw_segments(canvas, arc[:-1], arc[1:], thick)
    return [_layer(canvas, rng, _colour(rng))]


def _placed_scale(h: int, w: int, rng: np.random.Generator, length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin, direction and tick side of a straight scale: near and along an edge (p 0.65) or anywhere, any angle."""
    s = min(h, w)
    if rng.random() < 0.65:
        to_xy, edge_len, e, m = _frame_axes(h, w, rng)
        a0 = uniform(rng, 0.02, max(0.03, 0.98 - length / edge_len)) * edge_len
        origin = to_xy(np.array([a0]), np.array([s * uniform(rng, 0.03, 0.16)]))[0]
        theta = np.arctan2(e[1], e[0]) + uniform(rng, -0.12, 0.12)
        u = unit(theta)
        n = np.array([-u[1], u[0]])
        n = n if (np.dot(n, m) > 0) == (rng.random() < 0.7) else -n
        return origin, u, n
    origin = np.array([uniform(rng, 0.05, 0.95) * w, uniform(rng, 0.05, 0.95) * h])
    u = unit(uniform(rng, 0.0, 2 * np.pi))
    return origin, u, np.array([-u[1], u[0]]) * (1 if rng.random() < 0.5 else -1)


def thin_scale(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A 1-2 px baseline with mm ticks on one side and often a small "mm" beside its start."""
    s = min(h, w)
    length = s * uniform(rng, 0.3, 0.65)
    origin, u, n = _placed_scale(h, w, rng, length)
    canvas = np.zeros((h, w), np.uint8)
    thick = stroke_px(rng, s, 0.7, 1.7)
    _scale(canvas, rng, origin, u, n, length=length, pitch=length / int(rng.integers(18, 46)),
           short=at256(s, uniform(rng, 2.5, 4.5)), thick=thick, baseline=True)
    if rng.random() < 0.6:
        draw_text(canvas, "mm", origin - u * at256(s, 8.0) + n * at256(s, 4.0), height=at256(s, uniform(rng, 4.0, 7.0)),
                  angle=float(np.arctan2(u[1], u[0])), font=pick(rng, FONTS), thickness=1)
    return [_layer(canvas, rng, _colour(rng), 0.35, 0.9)]


def band_scale(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A thick light or dark bar along an edge (often cut by the frame), ticks of the other tone across it."""
    s = min(h, w)
    to_xy, length, _, _ = _frame_axes(h, w, rng)
    width, d0 = at256(s, uniform(rng, 10.0, 26.0)), at256(s, uniform(rng, -10.0, 25.0))
    a0, tilt = uniform(rng, -0.2, 0.4) * length, uniform(rng, -0.08, 0.08)
    a1 = a0 + uniform(rng, 0.4, 1.2) * length
    corners = np.array([a0, a1, a1, a0])
    band = np.zeros((h, w), np.uint8)
    cv2.fillPoly(band, [cv_points(to_xy(corners, d0 + np.tan(tilt) * (corners - a0) + np.array([0, 0, width, width])))],
                 255, cv2.LINE_AA)
    along = np.arange(a0, a1, max(at256(s, uniform(rng, 3.0, 7.0)), 2.0))
    inner = d0 + width + np.tan(tilt) * (along - a0)
    lengths = tick_lengths(len(along), rng, width * uniform(rng, 0.2, 0.35))
    ticks = np.zeros((h, w), np.uint8)
    draw_segments(ticks, to_xy(along, inner), to_xy(along, inner - lengths), stroke_px(rng, s, 0.8, 3.0))
    light, dark = jitter(rng, (236, 234, 226), 12), jitter(rng, (30, 28, 28), 12)
    band_colour, tick_colour = (dark, light) if rng.random() < 0.35 else (light, dark)
    return [_layer(band, rng, band_colour, 0.55, 0.95), _layer(ticks, rng, tick_colour, 0.7, 1.0)]


def numbered_scale(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """Mm ticks (with a baseline half the time) and a numeral beside every 10th tick, any angle."""
    s = min(h, w)
    length = s * uniform(rng, 0.35, 0.8)
    origin, u, n = _placed_scale(h, w, rng, length)
    canvas = np.zeros((h, w), np.uint8)
    short = at256(s, uniform(rng, 3.0, 6.0))
    feet, lengths = _scale(canvas, rng, origin, u, n, length=length, pitch=at256(s, uniform(rng, 2.5, 4.5)),
                           short=short, thick=stroke_px(rng, s, 0.7, 1.7), baseline=rng.random() < 0.5)
    first, height = int(rng.integers(0, 10)), at256(s, uniform(rng, 5.0, 10.0))
    font, angle = pick(rng, FONTS), float(np.arctan2(u[1], u[0]))
    for i, (foot, tick) in enumerate(zip(feet[lengths > 2 * short], lengths[lengths > 2 * short])):
        draw_text(canvas, str(first + i), foot + n * (tick + 0.8 * height), height=height, angle=angle, font=font,
                  thickness=stroke_px(rng, s, 0.8, 1.6))
    return [_layer(canvas, rng, _colour(rng))]


def cut_scale(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A scale entering from outside the frame at 20-70 degrees to the edge and ending inside (partly visible)."""
    s = min(h, w)
    to_xy, length, e, m = _frame_axes(h, w, rng)
    entry = to_xy(np.array([uniform(rng, 0.1, 0.9) * length]), np.array([0.0]))[0]
    angle = np.deg2rad(uniform(rng, 20.0, 70.0))
    u = np.cos(angle) * e * (1 if rng.random() < 0.5 else -1) + np.sin(angle) * m
    outside, inside = s * uniform(rng, 0.1, 0.5), s * uniform(rng, 0.2, 0.55)
    n = np.array([-u[1], u[0]]) * (1 if rng.random() < 0.5 else -1)
    canvas = np.zeros((h, w), np.uint8)
    _scale(canvas, rng, entry - outside * u, u, n, length=outside + inside, pitch=at256(s, uniform(rng, 2.5, 5.0)),
           short=at256(s, uniform(rng, 3.0, 7.0)), thick=stroke_px(rng, s, 0.7, 2.2), baseline=rng.random() < 0.7)
    return [_layer(canvas, rng, _colour(rng))]


RENDERERS: dict[str, Callable[[int, int, np.random.Generator], list[Layer]]] = {
    "edge_ticks": edge_ticks, "rim_ticks": rim_ticks, "thin_scale": thin_scale, "band_scale": band_scale,
    "numbered_scale": numbered_scale, "cut_scale": cut_scale,
}
"""Ruler families, name -> renderer ``(h, w, rng) -> list[Layer]``."""
