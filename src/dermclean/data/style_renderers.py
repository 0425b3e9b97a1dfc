"""The renderer of each artifact kind of :data:`dermclean.data.artifacts.STYLES`: ``(h, w, rng, style) ->
layers`` (:class:`~dermclean.data.layers.Layer`), geometry scaled with the image side."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from dermclean.data.layers import (
    INK_COLOURS, STICKER_COLOURS, Layer, alpha_map, bezier, cv_points, jitter, random_edge, uniform, width_px,
)


def _ruler(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    s, big = min(h, w), 2.0 * max(h, w)
    if style == "scale_bar":
        return _scale_bar(h, w, rng)
    centre = np.array([w / 2, h / 2])
    if style == "dark_across":
        c = np.array([uniform(rng, 0.2, 0.8) * w, uniform(rng, 0.2, 0.8) * h])
        theta = uniform(rng, 0, np.pi)
    else:
        to_xy, length = random_edge(h, w, rng)
        c = to_xy(np.array([uniform(rng, 0.3, 0.7) * length]), np.array([uniform(rng, 0.03, 0.16) * s]))[0]
        a, b = to_xy(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
        theta = np.arctan2(*(b - a)[::-1]) + uniform(rng, -0.14, 0.14)
    u = np.array([np.cos(theta), np.sin(theta)])
    n = np.array([-u[1], u[0]]) * (1 if np.dot([-u[1], u[0]], centre - c) >= 0 else -1)
    ts = np.arange(-big, big, max(2.0, s * uniform(rng, 0.025, 0.05)))
    major = (np.round(ts / (ts[1] - ts[0])).astype(int) % 5) == 0
    lengths = np.where(major, s * uniform(rng, 0.05, 0.08), s * uniform(rng, 0.025, 0.04))
    base = c + ts[:, None] * u
    ticks = [cv_points(np.stack([p, p + L * n])) for p, L in zip(base, lengths)]
    thick = width_px(rng, s, 0.004, 0.012)
    blur = uniform(rng, 0.0, 0.004 * s)
    if style == "light_band":
        band_w = s * uniform(rng, 0.06, 0.12)
        band = np.zeros((h, w), np.uint8)
        cv2.fillPoly(band, [cv_points(np.stack([c - big * u, c + big * u, c + big * u + band_w * n,
                                            c - big * u + band_w * n]))], 255)
        marks = np.zeros((h, w), np.uint8)
        cv2.polylines(marks, ticks, False, 255, thick, cv2.LINE_AA)
        return [Layer(alpha_map(band, uniform(rng, 0.35, 0.7), blur), jitter(rng, (235, 232, 225), 15)),
                Layer(alpha_map(marks, uniform(rng, 0.7, 0.95), blur), jitter(rng, (30, 30, 30), 20))]
    canvas = np.zeros((h, w), np.uint8)
    cv2.line(canvas, tuple(np.rint(c - big * u).astype(int)), tuple(np.rint(c + big * u).astype(int)), 255,
             width_px(rng, s, 0.006, 0.016), cv2.LINE_AA)
    cv2.polylines(canvas, ticks, False, 255, thick, cv2.LINE_AA)
    if s >= 96:  # numerals beside the major ticks
        for p, L in zip(base[major][::2], lengths[major][::2]):
            org = np.rint(p + (L + 0.02 * s) * n).astype(int)
            if 0 <= org[0] < w and 0 <= org[1] < h:
                cv2.putText(canvas, str(int(rng.integers(1, 10))), (int(org[0]), int(org[1])),
                            cv2.FONT_HERSHEY_PLAIN, s / 320, 255, max(1, s // 256), cv2.LINE_AA)
    return [Layer(alpha_map(canvas, uniform(rng, 0.75, 1.0), blur), jitter(rng, (30, 28, 28), 25))]


def _scale_bar(h: int, w: int, rng: np.random.Generator) -> list[Layer]:
    """Alternating black/white segments (a centimetre scale bar) near a border, any angle."""
    s = min(h, w)
    to_xy, length = random_edge(h, w, rng)
    c = to_xy(np.array([uniform(rng, 0.25, 0.75) * length]), np.array([uniform(rng, 0.08, 0.2) * s]))[0]
    theta, half, thick = uniform(rng, 0, np.pi), s * uniform(rng, 0.12, 0.25), max(2.0, s * uniform(rng, 0.02, 0.04))
    u = np.array([np.cos(theta), np.sin(theta)])
    n = np.array([-u[1], u[0]]) * thick / 2
    edges = np.linspace(-half, half, int(rng.integers(4, 9)) + 1)
    dark, light = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        quad = cv_points(np.stack([c + a * u - n, c + b * u - n, c + b * u + n, c + a * u + n]))
        cv2.fillPoly(dark if k % 2 == 0 else light, [quad], 255, cv2.LINE_AA)
    outline = cv_points(np.stack([c - half * u - n, c + half * u - n, c + half * u + n, c - half * u + n]))
    cv2.polylines(dark, [outline], True, 255, 1, cv2.LINE_AA)
    return [Layer(alpha_map(light, uniform(rng, 0.85, 1.0)), jitter(rng, (240, 240, 240), 12)),
            Layer(alpha_map(dark, uniform(rng, 0.85, 1.0)), jitter(rng, (20, 20, 20), 15))]


def _ink(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    s = min(h, w)
    canvas = np.zeros((h, w), np.uint8)
    thick = width_px(rng, s, 0.01, 0.03)
    if style == "stroke":
        for _ in range(int(rng.integers(1, 3))):
            n = 24
            heading = uniform(rng, 0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.18, n))
            step = s * uniform(rng, 0.25, 0.8) / n
            start = np.array([uniform(rng, 0.1, 0.9) * w, uniform(rng, 0.1, 0.9) * h])
            xy = start + np.cumsum(step * np.stack([np.cos(heading), np.sin(heading)], -1), 0)
            cv2.polylines(canvas, [cv_points(xy)], False, 255, thick, cv2.LINE_AA)
    elif style == "dots":
        centre = np.array([uniform(rng, 0.2, 0.8) * w, uniform(rng, 0.2, 0.8) * h])
        for p in centre + rng.normal(0, 0.15 * s, (int(rng.integers(2, 8)), 2)):
            cv2.circle(canvas, tuple(np.rint(p).astype(int)), width_px(rng, s, 0.008, 0.025), 255, -1, cv2.LINE_AA)
    elif style == "dashed":
        p0 = np.array([uniform(rng, 0, 1) * w, uniform(rng, 0, 1) * h])
        p2 = p0 + s * uniform(rng, 0.4, 0.9) * np.array([np.cos(t := uniform(rng, 0, 2 * np.pi)), np.sin(t)])
        curve = bezier(p0, (p0 + p2) / 2 + rng.normal(0, 0.12 * s, 2), p2, 96)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
        on = (arc // max(3.0, s * uniform(rng, 0.03, 0.06))).astype(int) % 2 == 0
        segs = [cv_points(curve[i:i + 2]) for i in range(len(curve) - 1) if on[i]]
        cv2.polylines(canvas, segs, False, 255, thick, cv2.LINE_AA)
    else:  # circle: a hand-drawn loop around the lesion
        centre = np.array([w / 2, h / 2]) + rng.normal(0, 0.06 * s, 2)
        start = uniform(rng, 0, 2 * np.pi)
        ang = start + np.linspace(0, np.deg2rad(uniform(rng, 300, 380)), 72)
        radius = s * uniform(rng, 0.25, 0.42) * (1 + 0.05 * np.sin(3 * ang + uniform(rng, 0, 6)))
        ratio = uniform(rng, 0.75, 1.0)
        xy = centre + np.stack([radius * np.cos(ang), ratio * radius * np.sin(ang)], -1)
        cv2.polylines(canvas, [cv_points(xy)], False, 255, thick, cv2.LINE_AA)
    name = list(INK_COLOURS)[int(rng.integers(len(INK_COLOURS)))]
    mode = "multiply" if rng.random() < 0.5 else "normal"
    return [Layer(alpha_map(canvas, uniform(rng, 0.55, 0.95), uniform(rng, 0, 0.006 * s)),
                  jitter(rng, INK_COLOURS[name], 15), mode)]


def _patches(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    s = min(h, w)
    r = s * uniform(rng, 0.06, 0.13)
    to_xy, length = random_edge(h, w, rng)
    c = to_xy(np.array([uniform(rng, 0.1, 0.9) * length]), np.array([uniform(rng, -0.3, 1.4) * r]))[0]
    fill, rim = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    ci, ri, rim_w = tuple(np.rint(c).astype(int)), max(2, int(round(r))), max(1, int(round(r * 0.15)))
    if style == "round":
        cv2.circle(fill, ci, ri, 255, -1, cv2.LINE_AA)
        cv2.circle(rim, ci, ri, 255, rim_w, cv2.LINE_AA)
    elif style == "square":
        box = cv_points(cv2.boxPoints(((float(c[0]), float(c[1])), (2 * r * uniform(rng, 0.8, 1.1),) * 2,
                                       uniform(rng, 0, 90))))
        cv2.fillPoly(fill, [box], 255, cv2.LINE_AA)
        cv2.polylines(rim, [box], True, 255, rim_w, cv2.LINE_AA)
    else:  # ring sticker: an annulus
        cv2.circle(fill, ci, max(1, int(round(r * uniform(rng, 0.75, 0.85)))), 255,
                   max(1, int(round(r * uniform(rng, 0.35, 0.5)))), cv2.LINE_AA)
        cv2.circle(rim, ci, ri, 255, rim_w, cv2.LINE_AA)
    colour = jitter(rng, STICKER_COLOURS[int(rng.integers(len(STICKER_COLOURS)))], 20)
    blur, opacity = uniform(rng, 0, 0.004 * s), uniform(rng, 0.85, 1.0)
    return [Layer(alpha_map(fill, opacity, blur), colour),
            Layer(alpha_map(rim, uniform(rng, 0.4, 0.8), blur), colour * 0.65)]


def _hair(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    s = min(h, w)
    canvas = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 7))):
        p0 = np.array([uniform(rng, -0.1, 1.1) * w, uniform(rng, -0.1, 1.1) * h])
        d = s * uniform(rng, 0.3, 1.0) * np.array([np.cos(t := uniform(rng, 0, 2 * np.pi)), np.sin(t)])
        curve = bezier(p0, p0 + d / 2 + rng.normal(0, 0.15 * s, 2), p0 + d, 32)
        cv2.polylines(canvas, [cv_points(curve)], False, 255, width_px(rng, s, 0.003, 0.011), cv2.LINE_AA)
    v = uniform(rng, 10, 60) if style == "dark" else uniform(rng, 150, 210)
    return [Layer(alpha_map(canvas, uniform(rng, 0.6, 0.95), uniform(rng, 0, 0.003 * s)),
                  np.array([v * 1.1, v * 0.92, v * 0.8]))]


def _dark_corner(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    """The dermoscope's circular field of view: black outside a (soft-edged) circle or ellipse."""
    s = min(h, w)
    cx, cy = w / 2 + rng.normal(0, 0.03 * s), h / 2 + rng.normal(0, 0.03 * s)
    rx = s * uniform(rng, 0.47, 0.62)
    ry = rx if style == "circular" else s * uniform(rng, 0.45, 0.65)
    yy, xx = np.ogrid[:h, :w]
    dist = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2).astype(np.float32)
    soft = uniform(rng, 0.015, 0.12)
    alpha = np.clip((dist - 1.0) / soft + 0.5, 0.0, 1.0) * np.float32(uniform(rng, 0.85, 1.0))
    return [Layer(alpha.astype(np.float32), jitter(rng, (10, 8, 8), 8))]


def _gel_bubble(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    s = min(h, w)
    ring, inner, spec = (np.zeros((h, w), np.uint8) for _ in range(3))
    if style == "round":
        centres = np.stack([rng.uniform(0.1, 0.9, 3) * w, rng.uniform(0.1, 0.9, 3) * h], -1)[:int(rng.integers(1, 4))]
        radii = s * rng.uniform(0.03, 0.09, len(centres))
    else:
        k = int(rng.integers(4, 11))
        centres = (np.array([uniform(rng, 0.15, 0.85) * w, uniform(rng, 0.15, 0.85) * h])
                   + rng.normal(0, 0.08 * s, (k, 2)))
        radii = s * rng.uniform(0.012, 0.04, k)
    for c, r in zip(centres, radii):
        ci, ri = tuple(np.rint(c).astype(int)), max(1, int(round(r)))
        cv2.circle(inner, ci, ri, 255, -1, cv2.LINE_AA)
        cv2.circle(ring, ci, ri, 255, max(1, int(round(r * 0.15))), cv2.LINE_AA)
        cv2.circle(spec, tuple(np.rint(c - 0.35 * r).astype(int)), max(1, int(round(r * 0.25))), 255, -1, cv2.LINE_AA)
    white = jitter(rng, (250, 250, 250), 5)
    return [Layer(alpha_map(inner, uniform(rng, 0.08, 0.2)), white, "screen"),
            Layer(alpha_map(ring, uniform(rng, 0.5, 0.85)), white, "screen"),
            Layer(alpha_map(spec, uniform(rng, 0.85, 1.0)), white)]


def _gel_border(h: int, w: int, rng: np.random.Generator, style: str) -> list[Layer]:
    """The edge of the immersion gel: a bright wavy line near a border, optionally a washed-out band."""
    s = min(h, w)
    to_xy, length = random_edge(h, w, rng)
    a = np.linspace(-0.1 * length, 1.1 * length, 64)
    d = (s * uniform(rng, 0.05, 0.2)
         + s * uniform(rng, 0.01, 0.04) * np.sin(a / s * uniform(rng, 4, 12) + uniform(rng, 0, 6)))
    curve = to_xy(a, d)
    line = np.zeros((h, w), np.uint8)
    cv2.polylines(line, [cv_points(curve)], False, 255, width_px(rng, s, 0.006, 0.018), cv2.LINE_AA)
    blur = uniform(rng, 0, 0.005 * s)
    layers = []
    if style == "band":
        band = np.zeros((h, w), np.uint8)
        outer = to_xy(np.array([a[-1], a[0]]), np.array([-s, -s]))
        cv2.fillPoly(band, [cv_points(np.concatenate([curve, outer]))], 255, cv2.LINE_AA)
        layers.append(Layer(alpha_map(band, uniform(rng, 0.2, 0.45), blur), jitter(rng, (225, 228, 235), 10)))
    layers.append(Layer(alpha_map(line, uniform(rng, 0.55, 0.9), blur), jitter(rng, (245, 245, 245), 8), "screen"))
    return layers


RENDERERS: dict[str, Callable[[int, int, np.random.Generator, str], list[Layer]]] = {
    "ruler": _ruler, "ink": _ink, "patches": _patches, "hair": _hair,
    "dark_corner": _dark_corner, "gel_bubble": _gel_bubble, "gel_border": _gel_border,
}
