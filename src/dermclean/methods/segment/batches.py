"""Training batches of the artifact segmenter: painted pixels as full labels, real images' human labels
as weak ones.

Each batch mixes three sources, drawn from ``np.random.default_rng([seed, k])`` for batch ``k`` (so a
resumed run sees exactly the batches an uninterrupted one would):

- **painted**: a clean real image (none of ruler/ink/patches in its labels) with ``n_min..n_max``
  artifacts of the renderer families (:func:`dermclean.data.families.paint_random_family`, never a
  family in ``exclude_families``); every channel is supervised per pixel by the painted masks;
- **labelled backgrounds**: with ``labelled_background_fraction``, a painted or untouched image is drawn
  from the real images whose labels name some type (``weak``) instead of the clean ones; only the types
  its label says are absent are painted and supervised (per pixel and by the multiple-instance term), the
  present types' channels not at all, since where their real artifact lies is unknown. A ruler-labelled
  image so teaches the ink and sticker channels that real ruler ticks are neither, and the backgrounds
  the network sees are no longer the clean images alone;
- **styles**: with ``style_fraction``, a painted image is painted instead by the project's style renderer
  (:func:`dermclean.data.artifacts.paint_random`, never a style of ``HELDOUT_STYLES``), a second hand
  beside the families, so what the network learns of a ruler, a pen mark or a sticker is shared by two
  renderers rather than one;
- **untouched**: a clean real image with only the families' image degradation (noise, blur, JPEG):
  every channel's target is empty, so specular highlights, the dark rim of the field, hair, gel
  bubbles and gel borders are negatives the model sees at every step (the hard negatives);
- **distractors**: with ``distractor_fraction``, a painted or untouched image first receives 1-2
  acquisition effects of the project's own renderer (:func:`dermclean.data.artifacts.paint_artifact`:
  hair, the dark rim of the field, gel bubbles, gel borders) that stay negatives in every channel, so
  thin dark hair is taught apart from ruler ticks and pen strokes more often than real clean images
  carry it;
- **lifelike hair**: with ``hair_fraction``, a painted or untouched image first receives hair of
  :func:`dermclean.data.hair.paint_hair` (tapered, curling strands, often a dense tuft), a negative in
  every channel like the distractors;
- **colour casts**: with ``colour_cast_fraction``, a painted or untouched view is given a random white
  balance and exposure (per-channel gain and one gamma, :func:`colour_cast`) after painting, its targets
  unchanged, so a whole field of bluish or yellowish skin is a negative and a sticker must differ from
  its surroundings rather than have a sticker's colour;
- **real cut-outs**: with ``real_paste_fraction``, a painted image also receives one real artifact cut
  from a labelled training image (an :class:`~dermclean.proof.real_artifacts.ArtifactBank` of
  :func:`~dermclean.methods.segment.real_bank.confident_bank`), pasted with its pixels away from the
  lesion; the pasted pixels are its type's target and no other type's;
- **opacity**: every family artifact's alpha is scaled by one draw of ``U(opacity)`` per image (the
  families' own range by default); a lower bound paints fainter, lower-contrast ticks and pen marks;
- **weak**: a real image whose labels say some type is present. A type labelled absent is supervised
  per pixel (empty); a type labelled present only through the multiple-instance term: the mean of
  its ``mil_topk`` largest logits must be high (:func:`~dermclean.methods.segment.model.topk_mean`).

With ``crop`` (px) the model trains on ``crop``-sized views: painted and untouched images are cut at
their native scale (a ``artifact_crop_fraction`` of painted ones around an artifact pixel), except a
``scale_fraction`` of them shrunk whole; weak images are always shrunk whole, since a cut could miss
the artifact their label promises (shrinking by area keeps it, thinner). Every view is turned by a
random quarter turn and mirror (artifacts have no orientation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dermclean.constants import ACQUISITION_EFFECTS, OUTLIER_CLASSES
from dermclean.data.artifacts import HELDOUT_STYLES, paint_artifact, paint_random
from dermclean.data.families import DegradeConfig, paint_random_family
from dermclean.data.hair import paint_hair
from dermclean.data.masks import crop_origin
from dermclean.proof.real_artifacts import ArtifactBank, bank_painter


@dataclass
class SegmentDataConfig:
    """How the batches are drawn (``params["segment"]["data"]``)."""

    untouched_fraction: float = 0.25
    weak_fraction: float = 0.25
    n_min: int = 1
    n_max: int = 3
    exclude_families: list[str] = field(default_factory=list)  # "kind/family" never painted (a held-out fold)
    crop: int | None = 128             # train on crop x crop px views (None: whole images)
    artifact_crop_fraction: float = 0.5
    scale_fraction: float = 0.25       # painted/untouched images shrunk whole to crop rather than cut
    distractor_fraction: float = 0.0   # painted/untouched images given 1-2 acquisition effects as negatives
    distractors: list[str] = field(default_factory=lambda: list(ACQUISITION_EFFECTS))
    hair_fraction: float = 0.0         # painted/untouched images given lifelike hair as a negative
    colour_cast_fraction: float = 0.0  # painted/untouched views given a random white balance and exposure
    colour_cast_strength: float = 0.25  # log-range of the per-channel gains (gamma: half of it)
    real_paste_fraction: float = 0.0   # painted images also given one real cut-out (needs banks)
    style_fraction: float = 0.0        # painted images drawn by the style renderer instead of the families
    labelled_background_fraction: float = 0.0  # painted/untouched images drawn from the labelled (weak) images
    opacity: tuple[float, float] = DegradeConfig().opacity  # painted artifacts' alpha scaled by U(low, high)

    def __post_init__(self) -> None:
        self.exclude_families = list(self.exclude_families)
        self.distractors = list(self.distractors)
        try:  # DegradeConfig holds the rule; the message names the params key
            low, high = (float(v) for v in self.opacity)
            self.opacity = DegradeConfig(opacity=(low, high)).opacity
        except (TypeError, ValueError):
            raise ValueError(f"segment opacity must be two numbers [low, high] with 0 < low <= high <= 1; "
                             f"got {self.opacity!r}") from None
        if not self.distractors or not set(self.distractors) <= set(ACQUISITION_EFFECTS):
            raise ValueError(f"segment distractors must be acquisition effects of {list(ACQUISITION_EFFECTS)}; "
                             f"got {self.distractors}")
        for name in ("untouched_fraction", "weak_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"segment {name} must be in [0, 1]; got {getattr(self, name)}")
        if self.untouched_fraction + self.weak_fraction > 1.0:
            raise ValueError(f"segment untouched_fraction + weak_fraction must be at most 1; got "
                             f"{self.untouched_fraction} + {self.weak_fraction}")
        for name in ("artifact_crop_fraction", "scale_fraction", "distractor_fraction", "hair_fraction",
                     "colour_cast_fraction", "colour_cast_strength", "real_paste_fraction", "style_fraction",
                     "labelled_background_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"segment {name} must be in [0, 1]; got {getattr(self, name)}")
        if self.crop is not None and self.crop < 8:
            raise ValueError(f"segment crop must be at least 8 px (or null); got {self.crop}")
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"segment: expected 1 <= n_min <= n_max; got {self.n_min}, {self.n_max}")


@dataclass
class SegmentBatch:
    """``x (B,3,S,S)`` in [-1, 1]; ``target (B,K,S,S)`` in {0, 1}; ``pixel_weight (B,K)``: 1 where the
    channel is supervised per pixel; ``image_label`` / ``image_weight (B,K)``: the multiple-instance
    targets and where they apply."""

    x: torch.Tensor
    target: torch.Tensor
    pixel_weight: torch.Tensor
    image_label: torch.Tensor
    image_weight: torch.Tensor


def _shrink(image: np.ndarray, target: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` uint8 and ``target`` {0,1} ``(S,S,K)`` shrunk to ``side``: the image by area, the target by
    max (a pixel holding any artifact stays an artifact pixel)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    t = torch.from_numpy(np.ascontiguousarray(target)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(side, side), mode="area").round().clamp(0, 255).to(torch.uint8)
    t = F.adaptive_max_pool2d(t, (side, side))
    return x[0].permute(1, 2, 0).numpy(), t[0].permute(1, 2, 0).numpy()


def _cut(image: np.ndarray, target: np.ndarray, side: int, rng: np.random.Generator,
         around_artifact: bool) -> tuple[np.ndarray, np.ndarray]:
    top, left = crop_origin(target.max(-1) > 0, side, rng, around_artifact=around_artifact)
    return image[top:top + side, left:left + side], target[top:top + side, left:left + side]


def colour_cast(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """``image`` uint8 ``(S,S,3)`` under another white balance and exposure: each channel times
    ``exp(u)``, ``u ~ U(-strength, strength)``, then one gamma ``exp(v)``, ``v ~ U(-strength/2, strength/2)``."""
    gains = np.exp(rng.uniform(-strength, strength, 3)).astype(np.float32)
    gamma = float(np.exp(rng.uniform(-strength / 2, strength / 2)))
    x = np.clip(image.astype(np.float32) / 255.0 * gains, 0.0, 1.0) ** gamma
    return np.round(x * 255.0).astype(np.uint8)


def _turn(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = [np.rot90(a, k, axes=(0, 1)) for a in arrays]
    return [np.ascontiguousarray(a[:, ::-1] if flip else a) for a in out]


class SegmentBatches:
    """Endless, resumable :class:`SegmentBatch` es of ``batch_size`` images.

    ``clean``: uint8 ``(N, S, S, 3)`` images labelled free of the three types; ``weak`` and
    ``weak_labels``: images with at least one type present and their 0/1 labels ``(M, K)`` in
    ``OUTLIER_CLASSES`` order (``M`` may be 0: then the weak share is drawn from ``clean`` as untouched);
    ``banks``: real cut-outs to paste (required, non-empty, when ``config.real_paste_fraction > 0``).
    """

    def __init__(self, clean: np.ndarray, weak: np.ndarray, weak_labels: np.ndarray, *, batch_size: int,
                 seed: int, config: SegmentDataConfig, banks: Sequence[ArtifactBank] = ()) -> None:
        if len(clean) == 0:
            raise ValueError("train_segmenter: no clean training images (labels with none of ruler/ink/patches); "
                             "expected at least one")
        if len(weak) != len(weak_labels):
            raise ValueError(f"train_segmenter: {len(weak)} weak images but {len(weak_labels)} label rows")
        self.clean, self.weak = clean, weak
        self.weak_labels = np.asarray(weak_labels, dtype=np.float32).reshape(len(weak), len(OUTLIER_CLASSES))
        self.batch_size, self.seed, self.config = batch_size, seed, config
        banks = [b for b in banks if b.cutouts]
        if config.real_paste_fraction > 0 and not banks:
            raise ValueError(f"train_segmenter: real_paste_fraction is {config.real_paste_fraction} but no real "
                             f"cut-outs were given; expected a non-empty bank (or real_paste_fraction 0)")
        self.painters = [(OUTLIER_CLASSES.index(b.artifact), bank_painter(b)) for b in banks]
        self.degrade = DegradeConfig(opacity=config.opacity)
        self.weak_absent = (self.weak_labels == 0).astype(np.float32)  # per weak image: the types it lacks
        self.backgrounds = np.flatnonzero(self.weak_absent.max(1) > 0)  # weak images with some type absent

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One image with its target ``(S,S,K)``, pixel weights, image labels and image weights ``(K,)``."""
        cfg, k = self.config, len(OUTLIER_CLASSES)
        u = rng.random()
        if u < cfg.weak_fraction and len(self.weak):
            i = int(rng.integers(len(self.weak)))
            labels = self.weak_labels[i]
            image = np.asarray(self.weak[i])
            target = np.zeros((*image.shape[:2], k), np.float32)
            if cfg.crop is not None and cfg.crop < image.shape[0]:
                image, target = _shrink(image, target, cfg.crop)
            return image, target, self.weak_absent[i], labels, np.ones(k, np.float32)
        absent = np.ones(k, np.float32)  # the types this image may be painted with and is supervised on
        if cfg.labelled_background_fraction > 0 and len(self.backgrounds) \
                and rng.random() < cfg.labelled_background_fraction:
            i = int(self.backgrounds[int(rng.integers(len(self.backgrounds)))])
            image, absent = np.asarray(self.weak[i]), self.weak_absent[i]
        else:
            image = np.asarray(self.clean[int(rng.integers(len(self.clean)))])
        kinds = [c for c, a in zip(OUTLIER_CLASSES, absent) if a]
        if cfg.distractor_fraction > 0 and rng.random() < cfg.distractor_fraction:
            for _ in range(int(rng.integers(1, 3))):
                image = paint_artifact(image, cfg.distractors[int(rng.integers(len(cfg.distractors)))], rng).image
        if cfg.hair_fraction > 0 and rng.random() < cfg.hair_fraction:
            image = paint_hair(image, rng)[0]
        untouched = u < cfg.weak_fraction + cfg.untouched_fraction
        if not untouched and cfg.style_fraction > 0 and rng.random() < cfg.style_fraction:
            painted = paint_random(image, rng, kinds=kinds, n_min=cfg.n_min, n_max=cfg.n_max,
                                   exclude_styles=HELDOUT_STYLES)
        else:
            painted = paint_random_family(image, rng, kinds=kinds, n_min=0 if untouched else cfg.n_min,
                                          n_max=0 if untouched else cfg.n_max,
                                          exclude_families=cfg.exclude_families, config=self.degrade)
        target = np.stack([painted.masks.get(c, np.zeros(image.shape[:2], bool)) for c in OUTLIER_CLASSES],
                          axis=-1).astype(np.float32)
        image = painted.image
        if not untouched and cfg.real_paste_fraction > 0 and rng.random() < cfg.real_paste_fraction:
            channel, paint = self.painters[int(rng.integers(len(self.painters)))]
            pasted = paint(image, rng)
            image = pasted.image
            target[pasted.mask] = 0.0
            target[pasted.mask, channel] = 1.0
        if cfg.crop is not None and cfg.crop < image.shape[0]:
            if rng.random() < cfg.scale_fraction:
                image, target = _shrink(image, target, cfg.crop)
            else:
                image, target = _cut(image, target, cfg.crop, rng, rng.random() < cfg.artifact_crop_fraction)
        if cfg.colour_cast_fraction > 0 and rng.random() < cfg.colour_cast_fraction:
            image = colour_cast(image, rng, cfg.colour_cast_strength)
        present = target.reshape(-1, k).max(0)
        return image, target, absent, present, absent

    def batch(self, step: int) -> SegmentBatch:
        rng = np.random.default_rng([self.seed, step])
        xs, ts, pw, il, iw = [], [], [], [], []
        for _ in range(self.batch_size):
            image, target, pixel_w, label, image_w = self._sample(rng)
            image, target = _turn([image, target], rng)
            xs.append(image)
            ts.append(target)
            pw.append(pixel_w)
            il.append(label)
            iw.append(image_w)
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
        target = torch.from_numpy(np.stack(ts)).permute(0, 3, 1, 2).contiguous()
        return SegmentBatch(x=x, target=target, pixel_weight=torch.from_numpy(np.stack(pw)),
                            image_label=torch.from_numpy(np.stack(il)), image_weight=torch.from_numpy(np.stack(iw)))

    def iter_from(self, step: int) -> Iterator[SegmentBatch]:
        while True:
            yield self.batch(step)
            step += 1
