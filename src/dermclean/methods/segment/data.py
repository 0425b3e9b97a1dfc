"""The segmenter's training images from a manifest: clean images, and labelled images with artifacts."""

from __future__ import annotations

import os

import numpy as np

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import stack_images
from dermclean.data.manifest import image_paths, in_split, labelled_rows, read_manifest
from dermclean.methods.imagecond.pairs import load_clean_images


def load_weak_images(manifest_path: str | os.PathLike[str], *, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(M, size, size, 3)`` images of ``split`` whose complete labels carry at least one of
    ruler/ink/patches, and those labels ``(M, 3)`` float32 in ``OUTLIER_CLASSES`` order."""
    df = read_manifest(manifest_path)
    rows, has_artifact = labelled_rows(df[in_split(df, split)])
    rows = rows[has_artifact]
    if rows.empty:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, len(OUTLIER_CLASSES)), np.float32)
    return stack_images(image_paths(rows, manifest_path), size), rows[list(OUTLIER_CLASSES)].to_numpy(dtype=np.float32)


def load_training_images(manifest_path: str | os.PathLike[str], *, size: int,
                         weak: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training split's clean images, and (with ``weak``) its labelled artifact images and labels."""
    clean = load_clean_images(manifest_path, split="train", size=size)
    if not weak:
        return clean, np.zeros((0, size, size, 3), np.uint8), np.zeros((0, len(OUTLIER_CLASSES)), np.float32)
    return (clean, *load_weak_images(manifest_path, split="train", size=size))
