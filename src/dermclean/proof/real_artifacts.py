"""Real artifacts as counterfactuals: cut from real images, pasted into others, removed by cleaning.

The planted trap asks whether cleaning removes a shortcut we put there; these sets ask the same of
the shortcuts a dataset really holds (coloured patches on ISIC's benign lesions, Nauta et al. 2022):

- :func:`cut_bank`: an :class:`ArtifactBank` of real artifacts of one type, cut with their pixels
  from the training images whose human label says that type is present and the other outlier types
  absent, along the detect stage's mask (``detections/masks/<image_id>.png``): each connected
  component of the mask whose area lies in ``[min_area, max_area]`` of the image, the largest
  ``per_image`` per image.
- :func:`bank_painter`: a :data:`~dermclean.proof.painting.Painter` that pastes one cutout (chosen
  at random, flipped at random) at a random position that keeps it inside the image and away from
  the central disc where the lesion sits; a cutout that touched the border of its image (a sticker
  partly out of frame, a ruler along the edge) stays on the matching border and moves along it.
  The counterfactual insertion (:mod:`dermclean.proof.counterfactual`, with its same-shape skin
  control) thus uses real artifacts.
- :func:`pipeline_cleaner`: the pipeline's detector and remover as a
  :data:`~dermclean.proof.counterfactual.Cleaner`, so an insertion can also be shown to a classifier
  the way it is deployed for cleaned data (paste, detect, clean, classify).
- :func:`removal_set`: the images of some splits whose human label says the type is present, raw
  and as the pipeline cleaned them (the ``clean`` stage's dataset of the pipeline's remover), so a
  classifier's probability shift under removal can be measured on real artifacts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.artifacts import Painted
from dermclean.data.images import load_rgb, to_tensor
from dermclean.data.manifest import image_paths, in_split, read_manifest
from dermclean.data.masks import dilate_mask, read_mask
from dermclean.detection.memo import image_digest
from dermclean.errors import DataError
from dermclean.proof.counterfactual import LESION_RADIUS, Cleaner
from dermclean.proof.painting import Painter


@dataclass(frozen=True, kw_only=True)
class Cutout:
    """One real artifact: ``rgb`` uint8 h x w x 3 and ``mask`` bool h x w (its bounding box), cut from an
    image ``source_side`` pixels on its shorter side."""

    rgb: np.ndarray
    mask: np.ndarray
    source_id: str
    source_side: int
    edges: frozenset[str] = frozenset()  # image borders the artifact touched: top, bottom, left, right


@dataclass(frozen=True, kw_only=True)
class ArtifactBank:
    artifact: str
    cutouts: list[Cutout]
    n_source_images: int


def only_type_rows(df: pd.DataFrame, artifact: str) -> np.ndarray:
    """Rows labelled 1 for ``artifact`` and 0 for the other outlier types (unlabelled rows excluded)."""
    if artifact not in OUTLIER_CLASSES:
        raise ValueError(f"artifact {artifact!r}; expected one of {list(OUTLIER_CLASSES)}")
    flags = {f: pd.to_numeric(df[f], errors="coerce") for f in OUTLIER_CLASSES}
    keep = flags[artifact].eq(1)
    for other in OUTLIER_CLASSES:
        if other != artifact:
            keep &= flags[other].eq(0)
    return keep.fillna(False).to_numpy(dtype=bool)


def rows_of_type_alone(df: pd.DataFrame, split: str, artifact: str) -> pd.DataFrame:
    """The rows of ``split`` labelled with ``artifact`` alone (:func:`only_type_rows`), by image id."""
    return df[in_split(df, split) & only_type_rows(df, artifact)].sort_values("image_id")


def components(mask: np.ndarray, *, min_area: float, max_area: float, per_image: int) -> list[np.ndarray]:
    """The largest ``per_image`` connected components of ``mask`` whose share of the image is in range."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    total = float(mask.size)
    kept = [k for k in range(1, count) if min_area <= stats[k, cv2.CC_STAT_AREA] / total <= max_area]
    kept.sort(key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    return [labels == k for k in kept[:per_image]]


def cutouts_of(image: np.ndarray, mask: np.ndarray, *, source_id: str, min_area: float = 0.002,
               max_area: float = 0.25, per_image: int = 1) -> list[Cutout]:
    """The :func:`components` of ``mask`` (bool, ``image``'s size) cut from ``image`` with their pixels."""
    cutouts = []
    for comp in components(mask, min_area=min_area, max_area=max_area, per_image=per_image):
        ys, xs = np.nonzero(comp)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        edges = {name for name, touches in (("top", ys.min() == 0), ("bottom", ys.max() == mask.shape[0] - 1),
                                            ("left", xs.min() == 0), ("right", xs.max() == mask.shape[1] - 1))
                 if touches}
        cutouts.append(Cutout(rgb=image[box].copy(), mask=comp[box].copy(), source_id=source_id,
                              source_side=min(image.shape[:2]), edges=frozenset(edges)))
    return cutouts


def cut_bank(manifest_path: str | os.PathLike[str], detections_dir: str | os.PathLike[str], artifact: str, *,
             split: str = "train", min_area: float = 0.002, max_area: float = 0.25, per_image: int = 1,
             max_images: int | None = None) -> ArtifactBank:
    """Cut the real ``artifact``s of ``split`` along the detected masks (see the module docstring)."""
    manifest_path = Path(manifest_path)
    df = read_manifest(manifest_path)
    rows = rows_of_type_alone(df, split, artifact)
    if max_images:
        rows = rows.iloc[:max_images]
    cutouts = []
    for image_id, path in zip(rows["image_id"], image_paths(rows, manifest_path)):
        image = load_rgb(path, min_size=1)
        mask = read_mask(Path(detections_dir) / "masks" / f"{image_id}.png")
        if mask.shape != image.shape[:2]:
            raise DataError(f"{detections_dir}/masks/{image_id}.png: {mask.shape[1]}x{mask.shape[0]} px; expected "
                            f"the size of its image {path} ({image.shape[1]}x{image.shape[0]})")
        cutouts += cutouts_of(image, mask, source_id=str(image_id), min_area=min_area, max_area=max_area,
                              per_image=per_image)
    return ArtifactBank(artifact=artifact, cutouts=cutouts, n_source_images=len(rows))


def _fit(cutout: Cutout, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The cutout scaled from its source image's side to ``side``, no larger than the target image."""
    rgb, mask = cutout.rgb, cutout.mask
    scale = min(side / cutout.source_side, side / max(mask.shape))
    if abs(scale - 1.0) > 1e-6:
        h, w = max(1, round(mask.shape[0] * scale)), max(1, round(mask.shape[1] * scale))
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return rgb, mask


_MIRROR_X = {"left": "right", "right": "left"}
_MIRROR_Y = {"top": "bottom", "bottom": "top"}


def bank_painter(bank: ArtifactBank, *, candidates: int = 8) -> Painter:
    """A painter pasting ``bank``'s cutouts (see the module docstring); the style names the source image."""
    if not bank.cutouts:
        raise DataError(f"no real {bank.artifact} to paste: none of the {bank.n_source_images} training images "
                        f"labelled with {bank.artifact} alone has a detected region in the size range")

    def paint(image: np.ndarray, rng: np.random.Generator) -> Painted:
        cutout = bank.cutouts[int(rng.integers(len(bank.cutouts)))]
        h_img, w_img = image.shape[:2]
        rgb, mask = _fit(cutout, min(h_img, w_img))
        edges = set(cutout.edges)
        if rng.random() < 0.5:
            rgb, mask, edges = rgb[:, ::-1], mask[:, ::-1], {_MIRROR_X.get(e, e) for e in edges}
        if rng.random() < 0.5:
            rgb, mask, edges = rgb[::-1], mask[::-1], {_MIRROR_Y.get(e, e) for e in edges}
        h, w = mask.shape
        cy, cx, radius = (h_img - 1) / 2, (w_img - 1) / 2, LESION_RADIUS * min(h_img, w_img)
        yy, xx = np.nonzero(mask)
        best, best_cost = (0, 0), np.inf
        for _ in range(candidates):
            y0, x0 = int(rng.integers(0, h_img - h + 1)), int(rng.integers(0, w_img - w + 1))
            y0 = 0 if "top" in edges else h_img - h if "bottom" in edges else y0
            x0 = 0 if "left" in edges else w_img - w if "right" in edges else x0
            cost = float(((yy + y0 - cy) ** 2 + (xx + x0 - cx) ** 2 < radius ** 2).mean())
            if cost < best_cost:
                best, best_cost = (y0, x0), cost
        out, full = image.copy(), np.zeros((h_img, w_img), dtype=bool)
        box = (slice(best[0], best[0] + h), slice(best[1], best[1] + w))
        out[box][mask] = rgb[mask]
        full[box] = mask
        return Painted(image=out, mask=full & np.any(out != image, axis=-1), kind=bank.artifact,
                       style=f"real:{cutout.source_id}")

    return paint


@dataclass(frozen=True, kw_only=True)
class RemovalSet:
    """Images carrying a real ``artifact`` (human label), raw and cleaned, as classifier tensors ``(N, 3, S, S)``."""

    artifact: str
    image_ids: list[str]
    original: torch.Tensor
    cleaned: torch.Tensor
    melanoma: np.ndarray


def removal_set(manifest_path: str | os.PathLike[str], cleaned_manifest: str | os.PathLike[str], artifact: str, *,
                size: int, splits: Sequence[str] = ("val", "test")) -> RemovalSet | None:
    """The rows of ``splits`` labelled with ``artifact`` and their cleaned images (``None`` when there are none)."""
    df = read_manifest(manifest_path)
    flag = pd.to_numeric(df[artifact], errors="coerce").eq(1).fillna(False).to_numpy(dtype=bool)
    chosen = np.zeros(len(df), dtype=bool)
    for split in splits:
        chosen |= in_split(df, split)
    rows = df[chosen & flag].sort_values("image_id")
    if rows.empty:
        return None
    cleaned = read_manifest(cleaned_manifest).set_index("image_id")
    missing = sorted(set(rows["image_id"]) - set(cleaned.index))
    if missing:
        raise DataError(f"{cleaned_manifest}: no cleaned image for {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                        f"expected every image of {manifest_path} (rerun the clean stage)")
    cleaned_rows = cleaned.loc[list(rows["image_id"])].reset_index()
    return RemovalSet(artifact=artifact, image_ids=list(rows["image_id"]),
                      original=torch.stack([to_tensor(load_rgb(p, min_size=1), size)
                                            for p in image_paths(rows, manifest_path)]),
                      cleaned=torch.stack([to_tensor(load_rgb(p, min_size=1), size)
                                           for p in image_paths(cleaned_rows, cleaned_manifest)]),
                      melanoma=rows["melanoma"].astype(int).to_numpy())


def pipeline_cleaner(detector: Any, remover: Any, *, dilation: int, batch_size: int = 16,
                     max_bytes: int = 1 << 29) -> Cleaner:
    """Detect with ``detector`` (a loaded :class:`~dermclean.detection.detector.Detector`), dilate each mask by
    ``dilation`` px and fill it with ``remover`` (:func:`~dermclean.removal.engine.make_remover`), as ``clean`` does.

    Each distinct image (by its pixels) is cleaned once per cleaner: the originals that several insertion sets
    share are detected and filled once and return the same cleaned image every time. Cleaned images are kept
    until they fill ``max_bytes``; later ones are cleaned each time they come."""
    done: dict[bytes, np.ndarray] = {}
    kept = 0

    def clean(images: list[np.ndarray]) -> list[np.ndarray]:
        nonlocal kept
        keys = [image_digest(im) for im in images]
        todo = list({k: im for k, im in zip(keys, images) if k not in done}.items())
        fresh: dict[bytes, np.ndarray] = {}
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            pixels = [im for _, im in chunk]
            masks = [dilate_mask(d.mask, dilation) for d in detector.detect(pixels, batch_size=batch_size)]
            for (k, _), cleaned in zip(chunk, remover.fill(pixels, masks)):
                fresh[k] = cleaned
                if kept + cleaned.nbytes <= max_bytes:
                    done[k] = cleaned
                    kept += cleaned.nbytes
        return [(fresh[k] if k in fresh else done[k]).copy() for k in keys]

    return clean
