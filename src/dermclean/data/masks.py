"""Masks for removal: reading ``<stem>.png`` masks, Euclidean dilation, and fitting them to an image.

A mask is ``np.ndarray`` bool ``H x W`` (True = artifact, to be replaced). On disk a mask is a
two-level PNG (greyscale, or RGB with equal channels) of 0 (keep) and 255 (remove), as ``detect``
and ``clean`` write them; :func:`read_mask` thresholds at 128 and refuses anything else: more than
two grey levels (an anti-aliased or bit-coded mask, such as ``generate``'s per-type ``masks/``),
levels other than 0 and 255 (a 0/1 mask would read as empty), a file that is not an image, and a
decompression bomb.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from dermclean.errors import DataError, InputError


def crop_origin(mask: np.ndarray, side: int, rng: np.random.Generator, *, around_artifact: bool) -> tuple[int, int]:
    """Top-left corner of a ``side`` px square crop of an image with artifact ``mask`` (bool ``H x W``):
    with ``around_artifact`` and some artifact pixel, a crop holding a random artifact pixel, else
    anywhere. Draws from ``rng`` only the positions (the caller draws whether to centre)."""
    h, w = mask.shape[:2]
    if around_artifact and mask.any():
        ys, xs = np.nonzero(mask)
        j = int(rng.integers(len(ys)))
        top = int(rng.integers(max(0, ys[j] - side + 1), min(ys[j], h - side) + 1))
        left = int(rng.integers(max(0, xs[j] - side + 1), min(xs[j], w - side) + 1))
        return top, left
    return int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))

ASPECT_TOLERANCE = 0.02
"""A mask whose aspect ratio differs from its image's by more than this is refused, not resized."""


class MaskError(DataError):
    """A mask that cannot be used for an image; the message names the file and what was expected."""


class MaskNotFound(InputError, FileNotFoundError):
    """No mask file for an image."""


MASK_LEVELS = (0, 255)
"""The two grey levels of a mask file: 0 = keep, 255 = remove (read with a threshold at 128)."""


def read_mask(path: str | os.PathLike[str], *, max_size: int = 8192) -> np.ndarray:
    """Read a mask PNG as bool ``H x W`` (``>= 128`` = True); see the module docstring for the format.

    Missing file: ``FileNotFoundError`` (:class:`MaskError`'s sibling ``MaskNotFound``); anything
    else unusable: :class:`MaskError` naming the file and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskNotFound(f"mask {path} not found; expected a 0/255 PNG mask named after the image's stem")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max(width, height) > max_size:
                    raise MaskError(f"{path}: mask of {width}x{height} px is above the size bound; expected at "
                                    f"most {max_size} px per side (the size of its image)")
                array = np.asarray(image.convert("RGB") if image.mode not in ("L", "1") else image.convert("L"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MaskError(f"{path}: refused as a decompression bomb ({exc}); expected a 0/255 PNG mask at "
                        f"its image's size") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MaskError(f"{path}: not a readable mask image ({exc}); expected a 0/255 greyscale PNG") from None
    if array.ndim == 3:
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise MaskError(f"{path}: a colour image, not a mask; expected a 0/255 greyscale PNG")
        array = array[..., 0]
    levels = np.unique(array)
    if len(levels) > 2 or not set(levels.tolist()) <= set(MASK_LEVELS):
        shown = ", ".join(str(v) for v in levels[:6]) + (", ..." if len(levels) > 6 else "")
        raise MaskError(f"{path}: grey levels {{{shown}}}; expected a two-level mask of 0 (keep) and 255 "
                        f"(remove). Threshold it first (e.g. value >= 128 -> 255); per-type bit-coded "
                        f"masks such as `dermclean generate`'s are not removal masks")
    return array >= 128


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
