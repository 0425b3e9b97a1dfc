"""Sticker (``patches``) renderer families: coloured adhesive dots, labels and tape stuck beside a lesion.

Each family is a function ``(h, w, rng) -> list[Layer]``: a fill layer (flat, textured or shaded
colour, H x W x 3) and usually a thin darker rim. Stickers are 0.08-0.35 of the side in radius and sit
partly out of the frame 2 times in 3, as the coloured dots of ISIC nevus images do.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from dermclean.data.artifacts import STICKER_COLOURS, Layer, alpha_map, cv_points, jitter, random_edge, uniform
from dermclean.data.families.draw import at256, pick, smooth_field, unit

PALE: tuple[tuple[int, int, int], ...] = ((238, 236, 230), (225, 215, 190), (200, 205, 210))
"""White, beige and grey: paper labels and tape."""


def _place(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Centre (x, y) and radius: near an edge, often beyond it (p 2/3), else 0.3-0.45 of the side from the centre."""
    s = min(h, w)
    r = s * uniform(rng, 0.08, 0.35)
    if rng.random() < 2 / 3:
        to_xy, length = random_edge(h, w, rng)
        return to_xy(np.array([uniform(rng, 0.05, 0.95) * length]), np.array([uniform(rng, -0.6, 1.0) * r]))[0], r
    return np.array([w / 2, h / 2]) + s * uniform(rng, 0.3, 0.45) * unit(uniform(rng, 0.0, 2 * np.pi)), r


def _texture(rng: np.random.Generator, h: int, w: int, colour: np.ndarray, amount: float) -> np.ndarray:
    """``colour`` (3,) as H x W x 3 with felt-like grain: per-pixel noise and a smooth mottle, +-``amount`` levels."""
    grain = rng.normal(0.0, amount / 2, (h, w, 1)).astype(np.float32)
    mottle = (smooth_field(rng, h, w, int(rng.integers(8, 24)))[..., None] - 0.5) * amount
    return np.clip(colour + grain + mottle, 0, 255).astype(np.float32)


def _shaded(rng: np.random.Generator, h: int, w: int, colour: np.ndarray, centre: np.ndarray, r: float) -> np.ndarray:
    """``colour`` (3,) as H x W x 3 with a linear light-to-shadow gradient across the sticker (+-25 %)."""
    d = unit(uniform(rng, 0.0, 2 * np.pi))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ramp = np.clip(((xx - centre[0]) * d[0] + (yy - centre[1]) * d[1]) / r, -1, 1)
    return np.clip(colour * (1.0 + uniform(rng, 0.1, 0.25) * ramp[..., None]), 0, 255).astype(np.float32)


def _sticker(fill: np.ndarray, rng: np.random.Generator, colour: np.ndarray, rim: bool = True) -> list[Layer]:
    """Fill layer (opacity 0.85-1, slight blur) and, if ``rim``, a 1-3 px darker outline at 256 px."""
    s = min(fill.shape)
    blur = uniform(rng, 0.0, at256(s, 0.7))
    layers = [Layer(alpha_map(fill, uniform(rng, 0.85, 1.0), blur), colour)]
    if rim:
        edge = cv2.morphologyEx(fill, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8),
                                iterations=max(1, int(round(at256(s, uniform(rng, 0.5, 1.5))))))
        base = colour if colour.ndim == 1 else colour.reshape(-1, 3).mean(0)
        layers.append(Layer(alpha_map(edge, uniform(rng, 0.2, 0.6), blur), base * 0.6))
    return layers


def _disc(h: int, w: int, centre: np.ndarray, r: float) -> np.ndarray:
    fill = np.zeros((h, w), np.uint8)
    cv2.circle(fill, tuple(np.rint(centre).astype(int)), max(2, int(round(r))), 255, -1, cv2.LINE_AA)
    return fill


def flat_disc(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A round sticker in one flat colour, two concentric colours 2 times in 5."""
    centre, r = _place(h, w, rng)
    colour = jitter(rng, pick(rng, STICKER_COLOURS), 20)
    layers = _sticker(_disc(h, w, centre, r), rng, colour)
    if rng.random() < 0.4:
        inner = _disc(h, w, centre + rng.normal(0, 0.05 * r, 2), r * uniform(rng, 0.45, 0.75))
        layers.append(Layer(alpha_map(inner, uniform(rng, 0.9, 1.0)), jitter(rng, pick(rng, STICKER_COLOURS), 20)))
    return layers


def felt_disc(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A round felt/paper sticker with a ragged edge and a grainy, mottled colour."""
    centre, r = _place(h, w, rng)
    phis = np.linspace(0.0, 2 * np.pi, 120, endpoint=False)
    radii = r * (1.0 + 0.02 * rng.standard_normal(120))
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, [cv_points(centre + radii[:, None] * np.stack([np.cos(phis), np.sin(phis)], -1))], 255,
                 cv2.LINE_AA)
    colour = _texture(rng, h, w, jitter(rng, pick(rng, STICKER_COLOURS + list(PALE)), 20), uniform(rng, 15.0, 40.0))
    return _sticker(fill, rng, colour, rim=rng.random() < 0.5)


def label(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A square or rounded-rectangle label at any angle, flat or shaded."""
    centre, r = _place(h, w, rng)
    half = r * np.array([uniform(rng, 0.7, 1.3), uniform(rng, 0.7, 1.3)])
    corner = uniform(rng, 0.0, 0.5) * half.min()
    # corner arcs of the rounded rectangle, counter-clockwise
    arcs = []
    for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        phis = np.linspace(k * np.pi / 2, (k + 1) * np.pi / 2, 8)
        arcs.append(np.array([sx * (half[0] - corner), sy * (half[1] - corner)])
                    + corner * np.stack([np.cos(phis), np.sin(phis)], -1))
    turn = uniform(rng, 0.0, np.pi)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, [cv_points(centre + np.vstack(arcs) @ rot.T)], 255, cv2.LINE_AA)
    colour = jitter(rng, pick(rng, STICKER_COLOURS + list(PALE)), 20)
    return _sticker(fill, rng, _shaded(rng, h, w, colour, centre, r) if rng.random() < 0.5 else colour)


def torn_tape(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """An irregular 5-11-gon of pale or coloured tape, grainy, semi-opaque."""
    centre, r = _place(h, w, rng)
    k = int(rng.integers(5, 12))
    phis = np.sort(rng.uniform(0.0, 2 * np.pi, k))
    points = centre + (r * rng.uniform(0.55, 1.25, k))[:, None] * np.stack([np.cos(phis), np.sin(phis)], -1)
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, [cv_points(points)], 255, cv2.LINE_AA)
    tone = pick(rng, list(PALE)) if rng.random() < 0.6 else pick(rng, STICKER_COLOURS)
    colour = _texture(rng, h, w, jitter(rng, tone, 15), uniform(rng, 8.0, 25.0))
    return [Layer(alpha_map(fill, uniform(rng, 0.55, 0.95), uniform(rng, 0.0, at256(min(h, w), 0.7))), colour)]


def glossy(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """A round or oval glossy sticker: gradient shading and a soft specular highlight."""
    centre, r = _place(h, w, rng)
    fill = np.zeros((h, w), np.uint8)
    axes = (max(2, int(round(r))), max(2, int(round(r * uniform(rng, 0.6, 1.0)))))
    cv2.ellipse(fill, tuple(np.rint(centre).astype(int)), axes, uniform(rng, 0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    colour = jitter(rng, pick(rng, STICKER_COLOURS), 20)
    layers = _sticker(fill, rng, _shaded(rng, h, w, colour, centre, r))
    spot = np.zeros((h, w), np.uint8)
    cv2.circle(spot, tuple(np.rint(centre + r * 0.45 * unit(uniform(rng, 0, 2 * np.pi))).astype(int)),
               max(1, int(round(r * uniform(rng, 0.12, 0.3)))), 255, -1, cv2.LINE_AA)
    spot = np.minimum(spot, fill)
    layers.append(Layer(alpha_map(spot, uniform(rng, 0.4, 0.8), max(0.5, 0.1 * r)), jitter(rng, (250, 250, 250), 5),
                        "screen"))
    return layers


RENDERERS: dict[str, Callable[[int, int, np.random.Generator], list[Layer]]] = {
    "flat_disc": flat_disc, "felt_disc": felt_disc, "label": label, "torn_tape": torn_tape, "glossy": glossy,
}
"""Sticker families, name -> renderer ``(h, w, rng) -> list[Layer]``."""
