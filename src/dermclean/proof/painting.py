"""Painting artifacts for the shortcut evidence with a renderer style held out of removal training.

The trap sets and the counterfactual insertions paint with :func:`dermclean.data.artifacts.paint_artifact`
using a style in ``HELDOUT_STYLES`` -- a style the removal models never saw in training -- so that
cleaning is not judged on the style it was trained to remove. A :data:`Painter` is any
callable ``(image uint8 HxWx3, rng) -> record with image, mask (bool HxW), style``; tests may pass
their own renderer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from dermclean.data.artifacts import HELDOUT_STYLES, STYLES, paint_artifact

Painter = Callable[[np.ndarray, np.random.Generator], Any]


def heldout_style(kind: str) -> str | None:
    """The held-out renderer style of artifact ``kind`` (``None`` when the renderer holds none out)."""
    held: Any = HELDOUT_STYLES
    if isinstance(held, dict):
        value = held.get(kind)
        if value is None or isinstance(value, str):
            return value
        value = list(value)
        return str(value[0]) if value else None
    names = list(held) if isinstance(held, Iterable) else []
    known = set(STYLES.get(kind, ())) if isinstance(STYLES, dict) else set()
    for name in names:
        name = str(name)
        if name.startswith(f"{kind}/"):
            return name.split("/", 1)[1]
        if name in known:
            return name
    return None


def heldout_painter(kind: str, *, style: str | None = None) -> Painter:
    """A :data:`Painter` for ``kind`` with ``style`` (default: :func:`heldout_style` of ``kind``)."""
    chosen = style if style is not None else heldout_style(kind)

    def paint(image: np.ndarray, rng: np.random.Generator) -> Any:
        return paint_artifact(image, kind, rng, style=chosen)

    return paint
