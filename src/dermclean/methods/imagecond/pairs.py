"""Training pairs of the image-conditioned model (Baugh et al., "Image-Conditioned Diffusion Models for
Medical Anomaly Detection", UNSURE 2024): clean images, corrupted with painted artifacts.

Real images whose labels say they carry none of ruler/ink/patches are each corrupted with
:func:`dermclean.data.artifacts.paint_random` (fresh artifacts every step) except an
``untouched_fraction`` (~20 %) left as they are, so the model also learns to copy clean skin. Styles
in ``HELDOUT_STYLES`` are never painted in training; the removal evaluation reports them apart, so
we measure "remove what does not belong" rather than "undo one renderer".

A mask-conditioned model (:mod:`~dermclean.methods.imagecond.model`) is told, for a ``mask_fraction``
of the painted pairs, their painted mask dilated by a random radius in ``mask_dilation`` (the removal
dilates its masks too); the rest, and every untouched pair, get an empty mask, which is how the
detector runs the model (it must find the artifacts). ``mask_loss_weight`` (any model) makes painted
pixels, and the whole mask a pair is told, count more in the loss: they are what removal is judged
on, while every other pixel is copied through the residual.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dermclean.config import from_dict
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.artifacts import HELDOUT_STYLES, paint_random
from dermclean.data.families import paint_random_family
from dermclean.data.images import stack_images
from dermclean.data.manifest import clean_mask, image_paths, in_split, read_manifest
from dermclean.data.masks import crop_origin, dilate_mask
from dermclean.diffusion.train import DiffusionBatch
from dermclean.methods.imagecond.model import prefill


PAINTERS = ("styles", "families", "both")


@dataclass
class CorruptionConfig:
    """How training images are corrupted (``params["imagecond"]["corruption"]``)."""

    untouched_fraction: float = 0.2
    kinds: list[str] = field(default_factory=lambda: list(OUTLIER_CLASSES))
    n_min: int = 1
    n_max: int = 2
    mask_fraction: float = 0.5    # painted pairs told their mask (models with a mask condition only)
    mask_dilation: list[int] = field(default_factory=lambda: [1, 5])  # px, drawn uniformly (inclusive)
    mask_loss_weight: float = 0.0  # extra loss weight: 1 + this on painted pixels and inside a told mask
    painter: str = "styles"       # styles (data.artifacts) | families (data.families) | both (half each)
    exclude_families: list[str] = field(default_factory=list)  # "kind/family" never painted (a held-out fold)

    def __post_init__(self) -> None:
        self.kinds = list(self.kinds)
        self.exclude_families = list(self.exclude_families)
        if self.painter not in PAINTERS:
            raise ValueError(f"painter must be one of {PAINTERS}; got {self.painter!r}")
        self.mask_dilation = [int(r) for r in self.mask_dilation]
        if self.mask_loss_weight < 0:
            raise ValueError(f"mask_loss_weight must be >= 0; got {self.mask_loss_weight}")
        if not 0.0 <= self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction must be in [0, 1]; got {self.mask_fraction}")
        if len(self.mask_dilation) != 2 or not 0 <= self.mask_dilation[0] <= self.mask_dilation[1]:
            raise ValueError(f"mask_dilation must be [min, max] px with 0 <= min <= max; got {self.mask_dilation}")
        if not 0.0 <= self.untouched_fraction <= 1.0:
            raise ValueError(f"untouched_fraction must be in [0, 1]; got {self.untouched_fraction}")
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"expected 1 <= n_min <= n_max; got n_min={self.n_min}, n_max={self.n_max}")


def corruption_from_params(section: dict[str, Any], **overrides: Any) -> CorruptionConfig:
    """The :class:`CorruptionConfig` of an ``imagecond`` params section (its ``corruption`` subsection; the
    defaults when absent), with ``overrides``."""
    return from_dict(CorruptionConfig, {**(section.get("corruption") or {}), **overrides},
                     where="imagecond.corruption")


@dataclass
class TrainingPair:
    """One training example: ``target`` (clean) and ``corrupted`` uint8 ``S x S x 3``."""

    target: np.ndarray
    corrupted: np.ndarray
    mask: np.ndarray            # bool S x S, union of painted masks (all False when untouched)
    styles: list[str]           # styles painted, as "kind/style"
    untouched: bool
    condition: np.ndarray | None = None  # uint8 S x S x 3 the model sees (None: ``corrupted``)
    given_mask: np.ndarray | None = None  # bool S x S the model is told to fill (mask-conditioned models)


def heldout_styles() -> Any:
    """The renderer styles held out of training (``dermclean.data.artifacts.HELDOUT_STYLES``)."""
    return HELDOUT_STYLES


def corrupt(image: np.ndarray, rng: np.random.Generator, config: CorruptionConfig) -> TrainingPair:
    """Paint random artifacts (never a held-out style or family) onto ``image`` unless it is drawn untouched.

    ``config.painter`` picks the renderers: the styles of :mod:`dermclean.data.artifacts`, the families
    of :mod:`dermclean.data.families` (whose image degradation, noise and JPEG, is applied to the
    target too, so the pair differs only where the artifact is), or either with equal odds.
    """
    if rng.random() < config.untouched_fraction:
        return TrainingPair(target=image, corrupted=image.copy(), mask=np.zeros(image.shape[:2], bool),
                            styles=[], untouched=True)
    if config.painter == "families" or (config.painter == "both" and rng.random() < 0.5):
        return _corrupt_with_families(image, rng, config)
    painted = paint_random(image, rng, kinds=config.kinds, n_min=config.n_min, n_max=config.n_max,
                           exclude_styles=heldout_styles())
    mask = np.zeros(image.shape[:2], bool)
    for m in painted.masks.values():
        mask |= np.asarray(m, dtype=bool)
    styles = [f"{kind}/{style}" for kind, names in dict(painted.styles).items() for style in names]
    return TrainingPair(target=image, corrupted=painted.image, mask=mask, styles=styles, untouched=False)


def _corrupt_with_families(image: np.ndarray, rng: np.random.Generator, config: CorruptionConfig) -> TrainingPair:
    painted = paint_random_family(image, rng, kinds=config.kinds, n_min=config.n_min, n_max=config.n_max,
                                  exclude_families=config.exclude_families)
    mask = np.zeros(image.shape[:2], bool)
    for m in painted.masks.values():
        mask |= m
    styles = [f"{kind}/{family}" for kind, names in painted.families.items() for family in names]
    return TrainingPair(target=painted.clean, corrupted=painted.image, mask=mask, styles=styles, untouched=False)


def _stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 N x S x S x 3 -> float (N,3,S,S) in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).contiguous()


class ImagecondBatches:
    """Endless, resumable batches of corrupted/clean pairs as :class:`DiffusionBatch`.

    Batch ``k`` draws its images and artifacts from ``np.random.default_rng([seed, k])``, so
    ``iter_from(k)`` resumes exactly and no two steps see the same corruption. With ``crop`` the
    artifacts are painted on the whole image (so they have their native size) and a ``crop`` px
    square is cut from both images; ``artifact_crop_fraction`` of the painted pairs are cut around a
    random artifact pixel, the rest (and every untouched pair) anywhere. With ``mask_condition`` the
    condition is built (:meth:`tell`) on the whole image too, then cut like the pair.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], *, batch_size: int, seed: int,
                 corruption: CorruptionConfig, crop: int | None = None,
                 artifact_crop_fraction: float = 0.5, mask_condition: str | None = None) -> None:
        if len(images) == 0:
            raise ValueError("train_imagecond: no clean training images (labels with none of ruler/ink/patches); "
                             "expected at least one")
        if not 0.0 <= artifact_crop_fraction <= 1.0:
            raise ValueError(f"artifact_crop_fraction must be in [0, 1]; got {artifact_crop_fraction}")
        self.images, self.batch_size, self.seed, self.corruption = images, batch_size, seed, corruption
        self.crop, self.artifact_crop_fraction = crop, artifact_crop_fraction
        self.mask_condition = mask_condition

    def batch(self, k: int) -> DiffusionBatch:
        rng = np.random.default_rng([self.seed, k])
        idx = rng.integers(0, len(self.images), size=self.batch_size)
        pairs = [self._cut(self.tell(corrupt(np.asarray(self.images[i]), rng, self.corruption), rng), rng)
                 for i in idx]
        cond = _stack([p.corrupted if p.condition is None else p.condition for p in pairs])
        if self.mask_condition:
            cond = torch.cat([cond, torch.from_numpy(np.stack([p.given_mask for p in pairs]))[:, None].float()], 1)
        weight = None
        if self.corruption.mask_loss_weight:
            region = [p.mask if p.given_mask is None else p.mask | p.given_mask for p in pairs]
            weight = 1.0 + self.corruption.mask_loss_weight * torch.from_numpy(np.stack(region))[:, None].float()
        return DiffusionBatch(target=_stack([p.target for p in pairs]), labels=None, cond_image=cond, weight=weight)

    def tell(self, pair: TrainingPair, rng: np.random.Generator) -> TrainingPair:
        """``pair`` with the mask the model is told (a ``mask_fraction`` of painted pairs: their painted
        mask, randomly dilated; otherwise empty) and its condition image (:func:`prefill`). Unchanged,
        drawing nothing from ``rng``, for a model without a mask condition."""
        if not self.mask_condition:
            return pair
        given = np.zeros_like(pair.mask)
        if not pair.untouched and rng.random() < self.corruption.mask_fraction:
            low, high = self.corruption.mask_dilation
            given = dilate_mask(pair.mask, int(rng.integers(low, high + 1)))
        return dataclasses.replace(pair, condition=prefill(pair.corrupted, given, self.mask_condition),
                                   given_mask=given)

    def _cut(self, pair: TrainingPair, rng: np.random.Generator) -> TrainingPair:
        """``pair`` cropped to ``crop`` px (unchanged without ``crop``)."""
        if self.crop is None:
            return pair
        c = self.crop
        top, left = crop_origin(pair.mask, c, rng,
                                around_artifact=bool(pair.mask.any()) and rng.random() < self.artifact_crop_fraction)
        box = (slice(top, top + c), slice(left, left + c))
        return TrainingPair(target=pair.target[box], corrupted=pair.corrupted[box], mask=pair.mask[box],
                            styles=pair.styles, untouched=pair.untouched,
                            condition=None if pair.condition is None else pair.condition[box],
                            given_mask=None if pair.given_mask is None else pair.given_mask[box])

    def iter_from(self, step: int) -> Iterator[DiffusionBatch]:
        k = step
        while True:
            yield self.batch(k)
            k += 1

    def __iter__(self) -> Iterator[DiffusionBatch]:
        return self.iter_from(0)


def load_clean_images(manifest_path: str | os.PathLike[str], *, split: str, size: int) -> np.ndarray:
    """uint8 ``(N, size, size, 3)``: the ``split`` images whose labels carry none of ruler/ink/patches."""
    df = read_manifest(manifest_path)
    rows = df[in_split(df, split) & clean_mask(df).to_numpy()]
    if rows.empty:
        raise ValueError(f"{manifest_path}: no {split!r} images labelled free of ruler/ink/patches; the "
                         f"image-conditioned model trains on such images")
    return stack_images(image_paths(rows, manifest_path), size)
