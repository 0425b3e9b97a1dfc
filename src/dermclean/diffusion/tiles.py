"""Overlapping tiles: a model trained on ``tile x tile`` crops applied to a larger image.

Thin rulers and ink lines are one to three pixels wide at the real set's 256 px and vanish when the
whole image is shrunk to a 64 px model. A UNet trained on 64 px *crops* of the 256 px images keeps
them, and is applied to a 256 px image as overlapping tiles whose outputs are blended with a window
that fades towards each tile's inner edges (for a diffusion model this is MultiDiffusion, Bar-Tal et
al. 2023: every denoising step averages the per-tile eps predictions, so all tiles step one image).

:func:`tile_starts` and :func:`blend_window` hold the geometry; :func:`tiled` runs a function on every
tile of a batch and blends the results back into full images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DEFAULT_OVERLAP_FRACTION = 0.25
"""Default overlap between neighbouring tiles, as a fraction of the tile side."""


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets along one side of ``size`` px covering it with ``tile`` px tiles overlapping by at least
    ``overlap`` px; the first starts at 0, the last ends at ``size``, the rest are spread evenly.

    >>> tile_starts(256, 64, 16)
    [0, 48, 96, 144, 192]
    >>> tile_starts(64, 64, 16)
    [0]
    """
    if tile < 1 or size < tile:
        raise ValueError(f"tile_starts: tile {tile} px must be in [1, size {size} px]")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_starts: overlap {overlap} px must be in [0, tile {tile} px)")
    if size == tile:
        return [0]
    n = 1 + -(-(size - tile) // (tile - overlap))  # ceil
    return [round(i * (size - tile) / (n - 1)) for i in range(n)]


def blend_window(tile: int, overlap: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(tile, tile)`` weights: 1 inside, ramping linearly down to ``1 / (overlap + 1)`` over the
    ``overlap`` outermost pixels, so a tile's border pixels (padding-affected) count least."""
    ramp = torch.ones(tile, device=device)
    if overlap:
        edge = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
        ramp[:overlap] = torch.minimum(ramp[:overlap], edge)
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp[:, None] * ramp[None, :]


def tiled(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, *, tile: int,
          overlap: int | None = None, max_tiles: int = 256) -> torch.Tensor:
    """Apply ``fn`` to overlapping ``tile x tile`` crops of ``x`` (B,C,H,W) and blend the outputs.

    ``fn(tiles (N,C,tile,tile), source (N,) long)`` returns ``(N,C',tile,tile)``; ``source[i]`` is the
    index in the batch of the image tile ``i`` was cut from (to pick its timestep, labels or
    condition). Tiles are passed at most ``max_tiles`` at a time. Returns ``(B,C',H,W)``, the
    window-weighted mean of every tile covering a pixel. ``overlap`` defaults to a quarter tile.
    """
    b, _, h, w = x.shape
    overlap = round(tile * DEFAULT_OVERLAP_FRACTION) if overlap is None else int(overlap)
    boxes = [(top, left) for top in tile_starts(h, tile, overlap) for left in tile_starts(w, tile, overlap)]
    crops = torch.stack([x[:, :, top:top + tile, left:left + tile] for top, left in boxes], dim=1)
    crops = crops.flatten(0, 1)  # (B * n_boxes, C, tile, tile), image-major
    source = torch.arange(b, device=x.device).repeat_interleave(len(boxes))
    outs = torch.cat([fn(crops[i:i + max_tiles], source[i:i + max_tiles])
                      for i in range(0, crops.shape[0], max_tiles)]).float()
    outs = outs.view(b, len(boxes), *outs.shape[1:])
    window = blend_window(tile, overlap, device=x.device)
    total = torch.zeros(b, outs.shape[2], h, w, device=x.device)
    weight = torch.zeros(h, w, device=x.device)
    for k, (top, left) in enumerate(boxes):
        total[:, :, top:top + tile, left:left + tile] += outs[:, k] * window
        weight[top:top + tile, left:left + tile] += window
    return total / weight

