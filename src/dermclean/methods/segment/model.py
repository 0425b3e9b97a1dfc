"""The artifact segmenter: a plain convolutional UNet that maps an image to one probability map per
artifact type (ruler, ink, patches).

Shape: ``(B, 3, S, S)`` in ``[-1, 1]`` -> logits ``(B, K, S, S)``, ``K = len(OUTLIER_CLASSES)``.
Encoder: per level two 3x3 convolutions with BatchNorm (2.5x faster than GroupNorm on CPU) and SiLU, then a stride-2 convolution;
decoder: nearest upsampling, concatenation with the encoder's map of the same level, two 3x3
convolutions. No pooling before the first level, so a 1 px tick mark reaches the first layer at its
native width; ``image_size`` is the side the model works at (inputs are resized to it).

``members`` > 1 makes the model an ensemble (:class:`SegmenterEnsemble`): that many networks of the same
shape, trained apart with seeds ``seed``, ``seed + 1``, ..., whose logits are averaged. One model
folder (kind ``segmenter``) holds them all; :func:`build_segmenter` rebuilds either form.

``line_filters`` (odd sizes, px) adds two fixed input channels per size, computed in ``forward`` from
the luminance: the black top-hat (closing minus image: dark lines and dots narrower than the size,
as ruler ticks and ink) and the white top-hat (image minus opening: light ones), by max pooling.

``colour_constancy`` first normalises each input's illuminant (shades of grey, p = 6,
:func:`~dermclean.data.images.shades_of_gray`), so a whole field of bluish or yellowish skin reaches
the network with its acquisition's cast removed; the correction is part of the model, applied to
training views and to every image it maps alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import shades_of_gray
from dermclean.modelio import register

SEGMENTER_KIND = "segmenter"


@dataclass
class SegmenterConfig:
    """``params["segment"]["model"]`` plus the working side."""

    image_size: int = 256
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    in_channels: int = 3
    classes: list[str] = field(default_factory=lambda: list(OUTLIER_CLASSES))
    score_topk: int = 32        # per-type image score: sigmoid of the mean of the k largest logits
    line_filters: list[int] = field(default_factory=list)  # top-hat sizes (odd px) added as input channels
    members: int = 1            # networks trained apart (seeds seed, seed + 1, ...) whose logits are averaged
    colour_constancy: bool = False  # normalise each input's illuminant (shades of grey) first

    def __post_init__(self) -> None:
        self.members = int(self.members)
        self.colour_constancy = bool(self.colour_constancy)
        if self.members < 1:
            raise ValueError(f"segment model members must be at least 1; got {self.members}")
        self.widths = [int(w) for w in self.widths]
        self.line_filters = [int(k) for k in self.line_filters]
        if any(k < 3 or k % 2 == 0 for k in self.line_filters):
            raise ValueError(f"segment model line_filters must be odd sizes of at least 3 px; got {self.line_filters}")
        self.classes = list(self.classes)
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"segment model widths must be positive channel counts; got {self.widths}")
        if self.image_size % (2 ** (len(self.widths) - 1)):
            raise ValueError(f"segment image_size {self.image_size} must be divisible by "
                             f"2**{len(self.widths) - 1} (one halving per level after the first)")


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.SiLU())


def top_hats(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Black and white top-hats of the luminance of ``x (B,3,S,S)`` (in [-1, 1]) at each size:
    ``(B, 2*len(sizes), S, S)``, as ``4 * hat - 1``: -1 where nothing narrower than the size stands out,
    3 for a line as far from its surroundings as half the image's range."""
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    out = []
    for k in sizes:
        def dilate(t: torch.Tensor) -> torch.Tensor:
            return F.max_pool2d(F.pad(t, [k // 2] * 4, mode="replicate"), k, stride=1)

        closing = -dilate(-dilate(gray))
        opening = dilate(-dilate(-gray))
        out += [closing - gray, gray - opening]
    return torch.cat(out, dim=1) * 4.0 - 1.0


class Segmenter(nn.Module):
    """Per-type artifact logits (the detector reads their sigmoid as maps, :func:`topk_mean` as scores)."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.down = nn.ModuleList([_Block(config.in_channels + 2 * len(config.line_filters), w[0])])
        self.pool = nn.ModuleList()
        for a, b in zip(w[:-1], w[1:]):
            self.pool.append(nn.Conv2d(a, a, 3, stride=2, padding=1))
            self.down.append(_Block(a, b))
        self.up = nn.ModuleList([_Block(b + a, a) for a, b in zip(w[:-1], w[1:])][::-1])
        self.head = nn.Conv2d(w[0], len(config.classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        if self.config.colour_constancy:
            x = shades_of_gray((x + 1) / 2) * 2 - 1
        if self.config.line_filters:
            x = torch.cat([x, top_hats(x, self.config.line_filters)], dim=1)
        h = self.down[0](x)
        for pool, block in zip(self.pool, self.down[1:]):
            skips.append(h)
            h = block(pool(h))
        for block in self.up:
            skip = skips.pop()
            h = block(torch.cat([F.interpolate(h, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.head(h)


class SegmenterEnsemble(nn.Module):
    """``config.members`` segmenters of one shape; the logits are their mean (a pixel is an artifact by
    the networks' joint evidence, not one network's chance response)."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList([Segmenter(member_config(config)) for _ in range(config.members)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def member_config(config: SegmenterConfig) -> SegmenterConfig:
    """The config of one network of ``config`` (``members`` 1)."""
    return dataclasses.replace(config, members=1)


def network_fields(config: SegmenterConfig) -> dict[str, Any]:
    """What shapes one network: ``config`` without ``members`` (checkpoint keys and fingerprints, so a
    single model and an ensemble's first member share their training)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k != "members"}


def build_segmenter(config: SegmenterConfig) -> nn.Module:
    """A :class:`Segmenter`, or a :class:`SegmenterEnsemble` when ``config.members`` > 1."""
    return SegmenterEnsemble(config) if config.members > 1 else Segmenter(config)


def join_segmenters(networks: Sequence[Segmenter]) -> nn.Module:
    """One ensemble of trained ``networks`` (same shape), in eval mode; a single network as it is."""
    if not networks:
        raise ValueError("join_segmenters: no networks given")
    if any(n.config.members != 1 for n in networks):
        raise ValueError("join_segmenters: expected single networks, got an ensemble")
    shapes = [network_fields(n.config) for n in networks]
    if any(shape != shapes[0] for shape in shapes[1:]):
        raise ValueError(f"join_segmenters: networks of different shapes cannot be averaged: {shapes}")
    if len(networks) == 1:
        return networks[0].eval()
    ensemble = SegmenterEnsemble(dataclasses.replace(networks[0].config, members=len(networks)))
    for slot, net in zip(ensemble.members, networks):
        slot.load_state_dict(net.state_dict())
    return ensemble.eval()


def topk_mean(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the ``k`` largest values of each map: ``(B,K,H,W)`` -> ``(B,K)``. The image-level
    evidence a multiple-instance loss reads and the per-type score the detector reports."""
    flat = logits.flatten(2)
    return flat.topk(min(max(1, k), flat.shape[-1]), dim=-1).values.mean(-1)


register(SEGMENTER_KIND, SegmenterConfig, build_segmenter)
