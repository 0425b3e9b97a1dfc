"""Artifact renderers: paint dermoscopy artifacts onto any RGB image and return the exact mask.

Each renderer (:mod:`dermclean.data.style_renderers`) draws one or more *layers*, composited by
:func:`dermclean.data.layers.composite`: the mask is *defined* as the pixels that changed, so
``mask == (painted != original).any(-1)`` holds exactly.

Kinds (``STYLES``) follow the seven artifact labels of Bissoto et al. 2020 (ruler, ink, patches,
hair, dark_corner, gel_bubble, gel_border). Styles vary shape, width, colour, opacity, position,
blend and blur; geometry scales with the image side, so the same call works from 16 to 1024 px.
``HELDOUT_STYLES`` names one style per outlier kind that training code excludes (``exclude_styles``)
so detection/removal can be judged on a style they never saw.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.layers import (  # re-exported: the renderer families draw with the same primitives
    INK_COLOURS, STICKER_COLOURS, Layer, alpha_map, check_image, composite, cv_points, jitter, random_edge, uniform,
)
from dermclean.data.style_renderers import RENDERERS

__all__ = [
    "HELDOUT_STYLES", "INK_COLOURS", "STICKER_COLOURS", "STYLES", "Layer", "Painted", "PaintedMany", "alpha_map",
    "check_image", "composite", "cv_points", "excluded_names", "jitter", "paint_artifact", "paint_random",
    "random_edge", "uniform",
]

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
    layers = RENDERERS[kind](h, w, rng, style)
    painted, mask = composite(image, layers)
    if not mask.any():  # only possible when every layer fell outside the frame; redraw once more
        painted, mask = composite(image, RENDERERS[kind](h, w, rng, style))
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
