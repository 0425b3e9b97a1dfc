"""Masks for removal: reading ``<stem>.png`` masks, Euclidean dilation, and fitting them to an image.

A mask is ``np.ndarray`` bool ``H x W`` (True = artifact, to be replaced). On disk a mask is a
greyscale (or RGB) PNG where any non-zero pixel is True, so 0/255 masks from ``detect`` and the
bit-field masks of the synthetic set both read correctly. Written masks are 0/255.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

ASPECT_TOLERANCE = 0.02
"""A mask whose aspect ratio differs from its image's by more than this is refused, not resized."""


class MaskError(ValueError):
    """A mask that cannot be used for an image; the message names the file and what was expected."""


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask PNG as bool ``H x W`` (non-zero = True). Missing file: ``FileNotFoundError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} not found; expected a PNG mask named after the image's stem")
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError) as exc:
        raise MaskError(f"{path}: not a readable mask image ({exc}); expected a 0/255 greyscale PNG") from exc
    return array > 0


def fit_mask(mask: np.ndarray, shape: tuple[int, int], *, where: str = "mask") -> np.ndarray:
    """``mask`` (bool h x w) brought to ``shape`` (H, W): unchanged when equal, else resized.

    Resizing keeps every pixel that any mask pixel touches (area interpolation, then ``> 0``), so a
    mask computed at a model's resolution still covers the artifact at the image's resolution.
    Refuses a mask whose aspect ratio differs from the image's (it belongs to another image).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise MaskError(f"{where}: got an array of shape {mask.shape}; expected a 2-D mask")
    if mask.shape == tuple(shape):
        return mask.copy()
    h, w = mask.shape
    height, width = shape
    if abs(h / w - height / width) > ASPECT_TOLERANCE * (height / width):
        raise MaskError(f"{where}: mask is {w}x{h} px but its image is {width}x{height} px; expected the "
                        f"image's size or the same aspect ratio")
    return _cover_resize(mask, shape)


def _cover_resize(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask so that every output pixel overlapping a True input pixel is True."""
    height, width = shape
    src = mask.astype(np.float32)
    if height < mask.shape[0] or width < mask.shape[1]:
        out = cv2.resize(src, (width, height), interpolation=cv2.INTER_AREA)
    else:
        out = cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)
    return out > 1e-6


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Euclidean dilation: True where the distance to the nearest True pixel is ``<= radius``.

    ``mask`` bool ``H x W``; ``radius`` in pixels (0 returns a copy). Uses OpenCV's exact L2
    distance transform, so the result is the Minkowski sum with a disk of radius ``radius``.
    """
    if radius < 0:
        raise ValueError(f"dilation radius must be >= 0; got {radius}")
    mask = np.asarray(mask, dtype=bool)
    if radius == 0 or not mask.any():
        return mask.copy()
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= radius + 1e-6


def to_model_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A full-resolution mask ``H x W`` as the ``size x size`` mask a model works on (covering)."""
    return _cover_resize(np.asarray(mask, dtype=bool), (size, size)) if mask.shape != (size, size) else mask.copy()
