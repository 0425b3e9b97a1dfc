"""The dihedral group D4 on image batches: 4 quarter turns, each with or without a mirror.

Dermoscopy has no preferred orientation, and whether an image carries a ruler, ink or a sticker does
not change when it is turned or mirrored, so the noise-aware classifier trains on random D4 images
(:func:`random_dihedral`) and may average its prediction over all 8 (:func:`dihedral_mean`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DIHEDRAL_ORDER = 8
"""Number of elements of D4: ``k`` in ``0..7`` is ``k % 4`` quarter turns, mirrored when ``k >= 4``."""


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` of D4 applied to the last two axes of ``x`` (..., H, W); H must equal W when ``k``
    contains an odd number of quarter turns (the shape is kept)."""
    if not 0 <= int(k) < DIHEDRAL_ORDER:
        raise ValueError(f"dihedral: k={k}; expected 0..{DIHEDRAL_ORDER - 1}")
    if int(k) % 2 and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"dihedral: a quarter turn of a non-square {tuple(x.shape[-2:])} image changes its shape")
    out = torch.rot90(x, int(k) % 4, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if k >= 4 else out


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each sample of ``x`` (B, C, S, S) under its own random D4 element drawn from ``generator``."""
    ks = torch.randint(0, DIHEDRAL_ORDER, (x.shape[0],), generator=generator, device=generator.device).tolist()
    out = x.clone()
    for k in set(ks):
        idx = [i for i, kk in enumerate(ks) if kk == k]
        out[idx] = dihedral(x[idx], k)
    return out


def undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral` ``k``: ``undo_dihedral(dihedral(x, k), k) == x``."""
    out = torch.flip(x, dims=(-1,)) if int(k) >= 4 else x
    return torch.rot90(out, -(int(k) % 4), dims=(-2, -1))


def dihedral_map_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                      elements: tuple[int, ...] = tuple(range(DIHEDRAL_ORDER))) -> torch.Tensor:
    """Mean of ``fn``'s maps (..., H, W) over the D4 ``elements`` of ``x``, each map turned back to ``x``'s
    orientation first (test-time augmentation of a dense prediction)."""
    return torch.stack([undo_dihedral(fn(dihedral(x, k)), k) for k in elements]).mean(0)


def dihedral_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Mean of ``fn`` over the 8 D4 images of ``x`` (test-time augmentation); ``fn``'s output must not
    depend on orientation (per-image scores, not maps)."""
    return torch.stack([fn(dihedral(x, k)) for k in range(DIHEDRAL_ORDER)]).mean(0)
