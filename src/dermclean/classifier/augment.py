"""Training augmentations of the diagnosis classifier, chosen by ``classifier.augment``.

- ``geometric``: random horizontal/vertical flips and 90 degree rotations. Every pixel, artifacts
  included, stays in the image and keeps its colour: the controlled trap's painted shortcut is
  seen in every epoch.
- ``strong``: a random resized crop (area 50-100 % of the image, aspect 3/4-4/3, back to the
  input side), the same flips and rotations, and colour jitter (brightness, contrast and
  saturation x0.8-1.2, hue +-0.03). Lesions vary in position, scale and illumination across
  dermoscopes; a network trained from scratch on ~1,200 images needs this to diagnose rather
  than memorise (docs/experiments.md). A crop can cut a border sticker or ruler out of one
  epoch's view; the shortcut stays in most views.

Both take ``x`` ``(B, 3, S, S)`` in ``[-1, 1]`` and a seeded ``torch.Generator`` (deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF

AUGMENTS: tuple[str, ...] = ("geometric", "strong")
CROP_AREA = (0.5, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
JITTER = 0.2
HUE = 0.03


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def _flip_turn(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flips = torch.rand(2, generator=generator) < 0.5
    turn = int(torch.randint(0, 4, (1,), generator=generator))
    if flips[0]:
        img = img.flip(-1)
    if flips[1]:
        img = img.flip(-2)
    return torch.rot90(img, turn, dims=(-2, -1))


def geometric(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips and 90 degree rotations per image of ``x`` (pixels kept)."""
    b = x.shape[0]
    flips = torch.rand(b, 2, generator=generator) < 0.5
    turns = torch.randint(0, 4, (b,), generator=generator)
    out = []
    for i in range(b):
        img = x[i]
        if flips[i, 0]:
            img = img.flip(-1)
        if flips[i, 1]:
            img = img.flip(-2)
        out.append(torch.rot90(img, int(turns[i]), dims=(-2, -1)))
    return torch.stack(out)


def _resized_crop(img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    h, w = img.shape[-2:]
    area = _uniform(*CROP_AREA, generator) * h * w
    aspect = math.exp(_uniform(math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1]), generator))
    ch, cw = min(h, round(math.sqrt(area / aspect))), min(w, round(math.sqrt(area * aspect)))
    top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    return TF.resized_crop(img, top, left, ch, cw, [h, w], antialias=True)


def _jitter(img01: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    img01 = TF.adjust_brightness(img01, _uniform(1 - JITTER, 1 + JITTER, generator))
    img01 = TF.adjust_contrast(img01, _uniform(1 - JITTER, 1 + JITTER, generator))
    img01 = TF.adjust_saturation(img01, _uniform(1 - JITTER, 1 + JITTER, generator))
    return TF.adjust_hue(img01, _uniform(-HUE, HUE, generator))


def strong(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Resized crop, flips and rotations, colour jitter per image of ``x`` (see module docstring)."""
    out = []
    for img in x:
        img = _flip_turn(_resized_crop(img, generator), generator)
        out.append(_jitter((img + 1) / 2, generator) * 2 - 1)
    return torch.stack(out)


def augmenter(name: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The augmentation ``classifier.augment`` names."""
    if name not in AUGMENTS:
        raise ValueError(f"classifier.augment {name!r}; expected one of {', '.join(AUGMENTS)}")
    return geometric if name == "geometric" else strong
