"""Artifact renderers: paint dermoscopy artifacts onto any RGB image and return the exact mask.

Each renderer draws one or more *layers* -- a float alpha map ``H x W`` in ``[0, 1]`` and a colour
(RGB triple or ``H x W x 3``) with a blend mode (``normal``, ``multiply`` for ink soaking into skin,
``screen`` for glare) -- which are composited in float and quantised to uint8 once. The mask is then
*defined* as the pixels that changed, so ``mask == (painted != original).any(-1)`` holds exactly.
Pixels the artifact covers with alpha >= ``_EPS`` whose blend rounds back to the original value are
pushed one intensity level toward the artifact, so faint but real coverage is never left out.

Kinds (``STYLES``) follow the seven artifact labels of Bissoto et al. 2020 (ruler, ink, patches,
hair, dark_corner, gel_bubble, gel_border). Styles vary shape, width, colour, opacity, position,
blend and blur; geometry scales with the image side, so the same call works from 16 to 1024 px.
``HELDOUT_STYLES`` names one style per outlier kind that training code excludes (``exclude_styles``)
so detection/removal can be judged on a style they never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from dermclean.constants import OUTLIER_CLASSES

STYLES: dict[str, tuple[str, ...]] = {
    "ruler": ("dark_edge", "dark_across", "light_band", "scale_bar"),
    "ink": ("stroke", "dots", "dashed", "circle"),
    "patches": ("round", "square", "ring"),
    "hair": ("dark", "light"),
    "dark_corner": ("circular", "oval"),
    "gel_bubble": ("round", "cluster"),
    "gel_border": ("line", "band"),
}
"""Renderer styles per artifact kind (keys: ``constants.ARTIFACT_FLAGS``)."""

HELDOUT_STYLES: dict[str, tuple[str, ...]] = {
    "ruler": ("scale_bar",),
    "ink": ("circle",),
    "patches": ("ring",),
}
"""Styles kept out of detector/removal training (pass as ``exclude_styles``) and used for evaluation."""

_EPS = 0.1

# --------------------------------------------------------------------------------------------------
# Layers and drawing helpers


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


_RENDERERS: dict[str, Callable[[int, int, np.random.Generator, str], list[Layer]]] = {
    "ruler": _ruler, "ink": _ink, "patches": _patches, "hair": _hair,
    "dark_corner": _dark_corner, "gel_bubble": _gel_bubble, "gel_border": _gel_border,
}


@dataclass
class Painted:
    """One painted artifact: ``image`` uint8 H x W x 3, ``mask`` bool H x W (= changed pixels)."""

    image: np.ndarray
    mask: np.ndarray
    kind: str
    style: str


@dataclass
class PaintedMany:
    """Several artifacts: ``masks[kind]`` bool H x W (union over instances), ``styles[kind]`` in order."""

    image: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    styles: dict[str, list[str]] = field(default_factory=dict)


def check_image(image: np.ndarray, caller: str = "paint_artifact") -> np.ndarray:
    """``image`` as a uint8 H x W x 3 array of at least 8 px a side, else ``ValueError`` naming ``caller``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{caller}: got {image.dtype} array of shape {image.shape}; expected uint8 HxWx3")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"{caller}: image of {image.shape[1]}x{image.shape[0]} px; expected at least 8 px a side")
    return image


def excluded_names(kind: str, exclude_styles: Collection[str] | Mapping[str, Collection[str]]) -> set[str]:
    """Style names of ``kind`` to skip: a mapping kind -> styles, or names (``style`` or ``kind/style``)."""
    if isinstance(exclude_styles, Mapping):
        return {str(s) for s in exclude_styles.get(kind, ())}
    if isinstance(exclude_styles, str):
        exclude_styles = (exclude_styles,)
    out = set()
    for name in exclude_styles:
        k, _, s = str(name).rpartition("/")
        if not k or k == kind:
            out.add(s)
    return out


def _choose_style(kind: str, rng: np.random.Generator, style: str | None,
                  exclude_styles: Collection[str] | Mapping[str, Collection[str]]) -> str:
    if kind not in STYLES:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {list(STYLES)}")
    if style is not None:
        if style not in STYLES[kind]:
            raise ValueError(f"unknown {kind} style {style!r}; expected one of {list(STYLES[kind])}")
        return style
    skip = excluded_names(kind, exclude_styles)
    choices = [s for s in STYLES[kind] if s not in skip]
    if not choices:
        raise ValueError(f"every {kind} style is excluded ({sorted(skip)}); expected at least one of "
                         f"{list(STYLES[kind])} to remain")
    return str(choices[int(rng.integers(len(choices)))])


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


def paint_artifact(image: np.ndarray, kind: str, rng: np.random.Generator, *, style: str | None = None,
                   exclude_styles: Collection[str] | Mapping[str, Collection[str]] = ()) -> Painted:
    """Paint one artifact of ``kind`` onto a copy of ``image`` (uint8 H x W x 3; the input is untouched).

    ``style`` forces a style of ``STYLES[kind]``; otherwise one is drawn from ``rng`` among those not in
    ``exclude_styles`` (style names, ``kind/style`` names, or a mapping kind -> styles such as
    ``HELDOUT_STYLES``). Unknown kinds/styles raise ``ValueError`` listing the valid ones.
    Returns :class:`Painted` with ``mask == (painted != image).any(-1)`` exactly.
    """
    image = check_image(image)
    style = _choose_style(kind, rng, style, exclude_styles)
    h, w = image.shape[:2]
    layers = _RENDERERS[kind](h, w, rng, style)
    painted, mask = composite(image, layers)
    if not mask.any():  # only possible when every layer fell outside the frame; redraw once more
        painted, mask = composite(image, _RENDERERS[kind](h, w, rng, style))
    return Painted(image=painted, mask=mask, kind=kind, style=style)


def paint_random(image: np.ndarray, rng: np.random.Generator, *, kinds: Sequence[str] = OUTLIER_CLASSES,
                 n_min: int = 1, n_max: int = 2,
                 exclude_styles: Collection[str] | Mapping[str, Collection[str]] = (),
                 styles: Mapping[str, str | Collection[str]] | None = None) -> PaintedMany:
    """Paint ``n_min..n_max`` artifacts, each of a kind drawn from ``kinds``, one over another.

    ``styles`` optionally restricts the style per kind (a name or a collection of names).
    ``masks[kind]`` is the union of that kind's instance masks restricted to pixels that differ in the
    final image, so the union over kinds equals ``(image_out != image).any(-1)`` exactly.
    """
    image = check_image(image)
    kinds = list(kinds)
    if not kinds or not 0 <= n_min <= n_max:
        raise ValueError(f"paint_random: got kinds={kinds}, n_min={n_min}, n_max={n_max}; expected at least one "
                         f"kind and 0 <= n_min <= n_max")
    out = image.copy()
    masks: dict[str, np.ndarray] = {}
    used: dict[str, list[str]] = {}
    for _ in range(int(rng.integers(n_min, n_max + 1))):
        kind = kinds[int(rng.integers(len(kinds)))]
        style = None
        if styles is not None and kind in styles:
            allowed = styles[kind]
            allowed = [allowed] if isinstance(allowed, str) else list(allowed)
            style = str(allowed[int(rng.integers(len(allowed)))])
        painted = paint_artifact(out, kind, rng, style=style, exclude_styles=exclude_styles)
        out = painted.image
        masks[kind] = masks.get(kind, np.zeros(image.shape[:2], bool)) | painted.mask
        used.setdefault(kind, []).append(painted.style)
    changed = (out != image).any(-1)
    return PaintedMany(image=out, masks={k: m & changed for k, m in masks.items()}, styles=used)


