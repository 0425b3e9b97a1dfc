"""The family registry, leave-one-family-out folds, and painting with exact masks and a degradation stage.

A *family* is one whole renderer (its own geometry, its own look); holding out a family tests whether a
detector learnt artifacts or learnt our painter. Masks are the pixels the artifact layers changed
before the whole-image degradations (:mod:`dermclean.data.families.degrade`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.artifacts import Layer, check_image, composite, excluded_names
from dermclean.data.families import ink, rulers, stickers
from dermclean.data.families.degrade import (NONE, DegradeConfig, Degradation, degrade_image, degrade_layers,
                                             sample_degradation)

Renderer = Callable[[int, int, np.random.Generator], list[Layer]]
Exclusion = Collection[str] | Mapping[str, Collection[str]]

_RENDERERS: dict[str, dict[str, Renderer]] = {"ruler": rulers.RENDERERS, "ink": ink.RENDERERS,
                                              "patches": stickers.RENDERERS}

FAMILIES: dict[str, tuple[str, ...]] = {kind: tuple(renderers) for kind, renderers in _RENDERERS.items()}
"""Renderer families per outlier kind (keys: ``constants.OUTLIER_CLASSES``); names are unique across kinds."""

_ATTEMPTS = 8


@dataclass
class FamilyPainted:
    """``image`` uint8 H x W x 3 (degraded), ``mask`` bool H x W (changed pixels before image degradation)."""

    image: np.ndarray
    mask: np.ndarray
    kind: str
    family: str
    degradation: Degradation = NONE


@dataclass
class PaintedPair:
    """``clean`` and ``painted`` uint8 H x W x 3 with the same image degradation; ``mask`` bool H x W.

    Before degradation the two differ exactly on ``mask``.
    """

    clean: np.ndarray
    painted: np.ndarray
    mask: np.ndarray
    kind: str
    family: str
    degradation: Degradation = NONE


@dataclass
class FamilyPaintedMany:
    """Several artifacts: ``image``/``clean`` uint8 H x W x 3 (degraded alike), ``masks[kind]`` bool H x W,
    ``families[kind]`` in painting order."""

    image: np.ndarray
    clean: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    families: dict[str, list[str]] = field(default_factory=dict)
    degradation: Degradation = NONE


def _check_kind(kind: str) -> None:
    if kind not in FAMILIES:
        raise ValueError(f"unknown artifact kind {kind!r} for families; expected one of {list(FAMILIES)}")


def _renderer(kind: str, family: str) -> Renderer:
    _check_kind(kind)
    if family not in _RENDERERS[kind]:
        raise ValueError(f"unknown {kind} family {family!r}; expected one of {list(FAMILIES[kind])}")
    return _RENDERERS[kind][family]


def family_folds(kind: str, n_folds: int = 2, seed: int = 0) -> tuple[tuple[str, ...], ...]:
    """Partition ``FAMILIES[kind]`` into ``n_folds`` folds (each family in exactly one), deterministic in
    ``(kind, seed)``: a seeded permutation dealt round-robin; each fold lists its families in registry order.

    Leave-one-family-out: train with ``exclude_families={kind: folds[i]}``, test on ``folds[i]``.
    """
    _check_kind(kind)
    names = FAMILIES[kind]
    if not 2 <= n_folds <= len(names):
        raise ValueError(f"family_folds({kind!r}): got n_folds={n_folds}; expected 2..{len(names)}")
    order = np.random.default_rng([seed, zlib.crc32(kind.encode())]).permutation(len(names))
    return tuple(tuple(names[i] for i in sorted(order[f::n_folds])) for f in range(n_folds))


def fold_exclusion(fold: int, *, n_folds: int = 2, seed: int = 0,
                   kinds: Sequence[str] = OUTLIER_CLASSES) -> dict[str, tuple[str, ...]]:
    """Fold ``fold``'s families of every kind in ``kinds``: pass as ``exclude_families`` to train, test on them."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold_exclusion: got fold={fold}; expected 0..{n_folds - 1}")
    return {kind: family_folds(kind, n_folds, seed)[fold] for kind in kinds}


def family_names(families: Mapping[str, Sequence[str]]) -> list[str]:
    """``"kind/family"`` names, sorted, of a ``{kind: families}`` mapping (e.g. :func:`fold_exclusion`'s): what
    ``exclude_families`` and ``held_out`` take."""
    return sorted(f"{kind}/{family}" for kind, names in families.items() for family in names)


def _render(image: np.ndarray, kind: str, family: str, rng: np.random.Generator,
            degradation: Degradation) -> tuple[np.ndarray, np.ndarray]:
    """Composite one instance (layers degraded); redraw the geometry when nothing landed in the frame."""
    h, w = image.shape[:2]
    renderer = _renderer(kind, family)
    for _ in range(_ATTEMPTS):
        painted, mask = composite(image, degrade_layers(renderer(h, w, rng), degradation))
        if mask.any():
            break
    return painted, mask


def _degradation(rng: np.random.Generator, image: np.ndarray, degrade: bool, config: DegradeConfig) -> Degradation:
    """Drawn either way, so ``degrade`` does not change the geometry that the same ``rng`` paints."""
    degradation = sample_degradation(rng, min(image.shape[:2]), config)
    return degradation if degrade else NONE


def paint_family(image: np.ndarray, kind: str, family: str, rng: np.random.Generator, *, degrade: bool = True,
                 config: DegradeConfig = DegradeConfig()) -> FamilyPainted:
    """Paint one ``kind`` artifact of ``family`` onto a copy of ``image`` (uint8 H x W x 3), then degrade it.

    ``mask`` is exactly the pixels the (opacity-scaled, blurred) layers changed; image blur, noise and JPEG
    come after and may touch every pixel. ``degrade=False`` returns the undegraded painting.
    """
    image = check_image(image, "paint_family")
    degradation = _degradation(rng, image, degrade, config)
    painted, mask = _render(image, kind, family, rng, degradation)
    return FamilyPainted(image=degrade_image(painted, degradation), mask=mask, kind=kind, family=family,
                         degradation=degradation)


def paint_pair(image: np.ndarray, kind: str, family: str, rng: np.random.Generator, *, degrade: bool = True,
               config: DegradeConfig = DegradeConfig()) -> PaintedPair:
    """:func:`paint_family` plus ``clean``: ``image`` with the same image degradation (same noise, same JPEG)."""
    image = check_image(image, "paint_pair")
    degradation = _degradation(rng, image, degrade, config)
    painted, mask = _render(image, kind, family, rng, degradation)
    return PaintedPair(clean=degrade_image(image, degradation), painted=degrade_image(painted, degradation),
                       mask=mask, kind=kind, family=family, degradation=degradation)


def allowed_families(kind: str, exclude_families: Exclusion = ()) -> tuple[str, ...]:
    """``FAMILIES[kind]`` minus ``exclude_families`` (names, ``kind/family`` names, or a mapping kind -> names)."""
    _check_kind(kind)
    skip = excluded_names(kind, exclude_families)
    return tuple(f for f in FAMILIES[kind] if f not in skip)


def paint_random_family(image: np.ndarray, rng: np.random.Generator, *, kinds: Sequence[str] = OUTLIER_CLASSES,
                        exclude_families: Exclusion = (), n_min: int = 1, n_max: int = 2, degrade: bool = True,
                        config: DegradeConfig = DegradeConfig()) -> FamilyPaintedMany:
    """Paint ``n_min..n_max`` artifacts, each of a kind drawn from ``kinds`` and a family of it not in
    ``exclude_families``, then degrade ``image`` and the clean input alike (one degradation per sample).

    ``masks[kind]`` is that kind's changed pixels (before image degradation); their union equals the pixels
    where the undegraded painting differs from ``image``.
    """
    image = check_image(image, "paint_random_family")
    kinds = list(kinds)
    if not kinds or not 0 <= n_min <= n_max:
        raise ValueError(f"paint_random_family: got kinds={kinds}, n_min={n_min}, n_max={n_max}; expected at least "
                         f"one kind and 0 <= n_min <= n_max")
    choices = {kind: allowed_families(kind, exclude_families) for kind in kinds}
    for kind, names in choices.items():
        if not names:
            raise ValueError(f"every {kind} family is excluded; expected at least one of {list(FAMILIES[kind])} "
                             f"to remain")
    degradation = _degradation(rng, image, degrade, config)
    out, masks, used = image, {}, {}
    for _ in range(int(rng.integers(n_min, n_max + 1))):
        kind = kinds[int(rng.integers(len(kinds)))]
        family = choices[kind][int(rng.integers(len(choices[kind])))]
        out, mask = _render(out, kind, family, rng, degradation)
        masks[kind] = masks.get(kind, np.zeros(image.shape[:2], bool)) | mask
        used.setdefault(kind, []).append(family)
    changed = (out != image).any(-1)
    return FamilyPaintedMany(image=degrade_image(out, degradation), clean=degrade_image(image, degradation),
                             masks={k: m & changed for k, m in masks.items()}, families=used, degradation=degradation)
