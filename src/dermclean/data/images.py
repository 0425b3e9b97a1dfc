"""Image I/O: one safe loader for every stage, and the array <-> tensor conventions.

``load_rgb`` is the only way images enter the project. It applies EXIF orientation, converts the
modes that convert without loss of meaning (L, 1, P, CMYK, YCbCr, and RGBA/LA/PA whose alpha is
fully opaque) and refuses the rest with a message naming the file and saying what to do
(real transparency, 16/32-bit integer and float modes). Corrupt or truncated files, images outside
``[min_size, max_size]`` and decompression bombs (refused from the header, before decoding) raise
:class:`ImageError`.

Conventions (docs/ARCHITECTURE.md): images are ``np.ndarray`` uint8 ``H x W x 3`` RGB; model
tensors are float ``(3, S, S)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from dermclean.constants import IMAGE_SUFFIXES
from dermclean.errors import DataError, InputError, NotAFolder, PathNotFound, UsageError
from dermclean.io import atomic_path

log = logging.getLogger(__name__)

_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "PA": "RGBA", "RGBa": "RGB", "La": "L"}
_SAFE_MODES = {"L", "1", "P", "CMYK", "YCbCr", "RGBX"}
_HIGH_DEPTH = {"I": "32-bit integer", "F": "32-bit float", "I;16": "16-bit", "I;16B": "16-bit",
               "I;16L": "16-bit", "I;16N": "16-bit"}


class ImageError(DataError):
    """An image that cannot be used; the message names the file and what was expected."""


class NoImages(UsageError, ValueError):
    """An image folder with no JPEG/PNG file in it (the wrong folder, most likely)."""


class ImageNotFoundError(InputError, FileNotFoundError):
    """A path that does not name an existing file."""


def _header(path: Path, max_size: int) -> Image.Image:
    """Open ``path`` lazily (header only) with decompression-bomb warnings raised as errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused as a decompression bomb ({exc}); expected at most "
                         f"{max_size} px per side") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path}: not a readable image (corrupt, or not JPEG/PNG); expected a "
                         f"JPEG or PNG file") from exc
    except OSError as exc:
        raise ImageError(f"{path}: cannot be opened as an image ({exc})") from exc
    return image


def read_size(path: str | os.PathLike[str], *, max_size: int = 8192) -> tuple[int, int]:
    """``(width, height)`` from the header, without decoding pixels (``ImageError`` if unreadable/bomb)."""
    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError(f"image {path} not found (expected a JPEG or PNG file)")
    with _header(path, max_size) as image:
        return image.size


def load_rgb(path: str | os.PathLike[str], *, min_size: int = 32, max_size: int = 8192) -> np.ndarray:
    """Load ``path`` as RGB uint8 ``H x W x 3`` with EXIF orientation applied.

    Refuses (``ImageError``) a corrupt or truncated file, a side shorter than ``min_size`` or longer
    than ``max_size`` (checked on the header, before any pixel is decoded, so decompression bombs are
    never decoded), real transparency and 16/32-bit modes. Missing file: ``ImageNotFoundError``.
    PIL's own bomb guard (``Image.MAX_IMAGE_PIXELS``, ~89 Mpx) stays in force on top of ``max_size``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageNotFoundError(f"image {path} not found (expected a JPEG or PNG file)")
    with _header(path, max_size) as image:
        width, height = image.size
        if max(width, height) > max_size:
            raise ImageError(f"{path}: {width}x{height} px is above the size bound; expected at most "
                             f"{max_size} px per side (data.bounds.max_size)")
        if min(width, height) < min_size:
            raise ImageError(f"{path}: {width}x{height} px is below the size bound; expected at least "
                             f"{min_size} px per side (data.bounds.min_size)")
        try:
            image.verify()
        except Exception as exc:  # PIL raises many types (SyntaxError, OSError, struct.error) here
            raise ImageError(f"{path}: corrupt image ({type(exc).__name__}: {exc})") from exc
    with _header(path, max_size) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: corrupt or truncated image ({exc}); re-export or re-download it") from exc
        image = ImageOps.exif_transpose(image)
        return np.asarray(_to_rgb(image, path), dtype=np.uint8).copy()


def _to_rgb(image: Image.Image, path: Path) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_DEPTH:
        raise ImageError(f"{path}: {_HIGH_DEPTH[mode]} image (PIL mode {mode}) refused: reducing it to 8 bits "
                         f"needs a display range only you know; convert it to 8-bit RGB first "
                         f"(e.g. scale to 0-255 and save as PNG)")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        alpha = image.getchannel("A")
        low = alpha.getextrema()[0]
        if low < 255:
            raise ImageError(f"{path}: {mode} image with transparent pixels (alpha down to {low}) refused: "
                             f"the colour under transparency is undefined; flatten it onto a background "
                             f"and save as RGB")
        log.info("%s: %s with fully opaque alpha converted to RGB", path, mode)
        return image.convert("RGB")
    if mode in _SAFE_MODES:
        if mode == "CMYK":
            log.warning("%s: CMYK image converted to RGB without a colour profile; colours may shift", path)
        else:
            log.info("%s: %s image converted to RGB", path, mode)
        return image.convert("RGB")
    raise ImageError(f"{path}: unsupported PIL mode {mode}; expected RGB (or L, P, CMYK, opaque RGBA)")


def list_images(directory: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Every ``*.jpg/*.jpeg/*.png`` (any case) inside ``directory``, sorted by path relative to it.

    Flat by default (files directly inside). ``recursive`` adds the files of every subfolder (hidden
    folders, whose names start with ``.``, and symbolic links to folders are not entered). An image's id
    is its path relative to ``directory`` without the suffix (:func:`image_id`), so ``sub/x.jpg`` and
    ``x.jpg`` may both exist. Raises ``FileNotFoundError`` for a missing folder, ``NotADirectoryError``
    for a file, and ``ImageError`` for an empty folder or two images sharing an id (their outputs would
    collide).
    """
    directory = Path(directory)
    if not directory.exists():
        raise PathNotFound(f"image folder {directory} not found")
    if not directory.is_dir():
        raise NotAFolder(f"{directory} is not a folder; expected a folder of JPEG/PNG images")
    found = _walk_images(directory) if recursive else (p for p in directory.iterdir() if p.is_file())
    paths = sorted((p for p in found if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: p.relative_to(directory).parts)
    if not paths:
        where = " or its subfolders" if recursive else ""
        raise NoImages(f"{directory}: no images{where}; expected files ending in {', '.join(IMAGE_SUFFIXES)} "
                       f"(any case)")
    seen: dict[str, Path] = {}
    for p in paths:
        key = image_id(p, directory)
        if key in seen:
            raise ImageError(f"{directory}: {image_name(seen[key], directory)} and {image_name(p, directory)} "
                             f"share the id {key!r}; expected one image per id")
        seen[key] = p
    return paths


def _walk_images(directory: Path) -> list[Path]:
    """Files below ``directory``, hidden folders and links to folders left out."""
    files = []
    for root, folders, names in os.walk(directory, followlinks=False):
        folders[:] = [f for f in folders if not f.startswith(".")]
        files.extend(Path(root) / n for n in names if (Path(root) / n).is_file())
    return files


def image_name(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> str:
    """``path`` relative to ``directory`` in POSIX form (``sub/x.jpg``; the file name for a flat folder)."""
    return Path(path).relative_to(directory).as_posix()


def image_id(path: str | os.PathLike[str], directory: str | os.PathLike[str]) -> str:
    """:func:`image_name` without its suffix (``sub/x``): the key of an image's outputs (``masks/sub/x.png``)."""
    name = image_name(path, directory)
    return name[: len(name) - len(Path(name).suffix)]


def save_png(path: str | os.PathLike[str], array: np.ndarray, *, text: dict[str, str] | None = None) -> None:
    """Write ``array`` losslessly as PNG, atomically (``text``: tEXt chunks, e.g. ``{"Software": ...}``).

    ``array``: uint8 ``H x W`` (grey, e.g. a bit-field mask), ``H x W x 3`` (RGB) or ``H x W x 4``;
    a bool ``H x W`` mask is written as 0/255.
    """
    array = np.asarray(array)
    if array.dtype == bool and array.ndim == 2:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"save_png({path}): got {array.dtype} array of shape {array.shape}; "
                         f"expected uint8 HxW, HxWx3 or HxWx4 (or bool HxW)")
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", pnginfo=info)


def png_text(path: str | os.PathLike[str], key: str) -> str | None:
    """The tEXt chunk ``key`` of a PNG file (``None`` when absent or not a readable PNG)."""
    try:
        with Image.open(path) as image:
            return image.text.get(key) if hasattr(image, "text") else None
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def to_tensor(image: np.ndarray, size: int | None = None) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float32 ``(3, size, size)`` in ``[-1, 1]``.

    Shrinking averages the input pixels under each output pixel (``area``); enlarging is bilinear.
    ``size=None`` keeps ``H x W``. Non-square inputs are squashed (full frame, no crop).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"to_tensor: got {image.dtype} array of shape {image.shape}; expected uint8 HxWx3")
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    if size is not None and tuple(x.shape[1:]) != (size, size):
        if size <= min(x.shape[1:]):  # shrinking: box average over each output pixel's footprint
            x = F.interpolate(x[None], size=(size, size), mode="area")[0]
        else:
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x.clamp_(-1.0, 1.0)


def stack_images(paths, size: int) -> np.ndarray:
    """uint8 ``(N, size, size, 3)``: the images at ``paths`` (any iterable of paths), each resized by
    :func:`to_tensor`."""
    return np.stack([to_uint8(to_tensor(load_rgb(p), size)) for p in paths])


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float ``(3, H, W)`` in ``[-1, 1]`` (values outside are clipped) -> uint8 ``H x W x 3``."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"to_uint8: got a tensor of shape {tuple(tensor.shape)}; expected (3, H, W)")
    x = tensor.detach().float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5).round()
    return x.permute(1, 2, 0).to(torch.uint8).numpy()


def resize_map(map2d: np.ndarray | torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Bring a 2-D map back to an input's ``(H, W)``: float maps bilinear (float32), bool masks nearest."""
    if isinstance(map2d, torch.Tensor):
        map2d = map2d.detach().cpu().numpy()
    map2d = np.asarray(map2d)
    if map2d.ndim != 2:
        raise ValueError(f"resize_map: got an array of shape {map2d.shape}; expected a 2-D map")
    if tuple(map2d.shape) == tuple(shape):
        return map2d.copy() if map2d.dtype == bool else map2d.astype(np.float32)
    if map2d.dtype == bool:
        x = torch.from_numpy(map2d.astype(np.float32))[None, None]
        return F.interpolate(x, size=tuple(shape), mode="nearest")[0, 0].numpy() > 0.5
    x = torch.from_numpy(map2d.astype(np.float32))[None, None]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def shades_of_gray(x: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Colour constancy (Finlayson & Trezzi 2004): each channel of ``x`` ``(B, 3, S, S)`` in ``[0, 1]``
    scaled so that the image's illuminant estimate, the ``p``-norm mean per channel, is grey."""
    illuminant = x.clamp_min(1e-6).pow(p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / p)
    return (x * illuminant.mean(dim=-3, keepdim=True) / illuminant).clamp(0.0, 1.0)
