"""The detector: diffusion model(s) or a segmenter + detection config + fitted threshold, as one object.

A bundle is saved and loaded as one folder by :mod:`dermclean.detection.storage`.

Per-type scores: the noisy classifier's sigmoid probabilities at t = 0 (Wolleb et al.'s classifier is
an image-level per-type detector on its own). Without one, a guided bundle uses the conditional UNet
as a "diffusion classifier" (:func:`~dermclean.methods.guided.anomaly.diffusion_class_scores`) and an
imagecond bundle reports NaN and a segment bundle the sigmoid of its per-type top-k logits (its maps are
its probabilities, unsmoothed). Image score: see :class:`~dermclean.detection.config.DetectionConfig`;
:attr:`Detector.image_score_kind` says which one a detector actually uses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import resize_map, shades_of_gray, to_tensor
from dermclean.detection.config import DetectionConfig
from dermclean.detection.image_score import ImageScore, any_artifact_probability, map_features
from dermclean.detection.memo import MapMemo, detector_identity
from dermclean.detection.operating_points import OperatingPoints
from dermclean.detection.threshold import Threshold
from dermclean.diffusion.augment import dihedral_map_mean
from dermclean.env import cpu_bf16, pick_device
from dermclean.errors import UsageError
from dermclean.methods.guided.anomaly import diffusion_class_scores, guided_anomaly_maps, smooth
from dermclean.methods.guided.noisy_classifier import class_probabilities
from dermclean.methods.imagecond.sample import imagecond_anomaly_map
from dermclean.methods.segment.model import topk_mean

DETECTOR_KINDS = ("guided", "imagecond", "segment")
MAP_KEYS = ("guidance", "noise_level", "guidance_scale", "steps", "inversion_iters", "smoothing_sigma", "map_tta",
            "map_colour_constancy")
"""Config keys that change the anomaly maps (changing one invalidates the fitted threshold)."""
MIRRORS = (0, 2, 4, 6)
"""The D4 elements ``map_tta`` averages over: the image, turned half-way, mirrored, mirrored and turned
(they keep a non-square image's shape)."""


class NotADetectorError(UsageError, ValueError):
    """A folder that is not a detector bundle."""


@dataclass
class Detection:
    """One image's result: ``anomaly_map`` float32 ``H x W`` and ``mask`` bool ``H x W`` at the input size;
    ``map_peak`` the map's maximum at the model's resolution (what the fitted image score reads) and
    ``map_features`` its :func:`~dermclean.detection.image_score.map_features` (what the stacked one reads)."""

    image_name: str
    anomaly_map: np.ndarray
    score: float
    type_scores: dict[str, float]
    mask: np.ndarray
    map_peak: float = float("nan")
    map_features: np.ndarray | None = None


@dataclass
class Component:
    """A model inside a bundle: the module, its model-folder kind (``unet``, ``noisy_classifier``...) and meta."""

    module: nn.Module
    kind: str
    meta: dict[str, Any]


class Detector:
    """Anomaly maps, scores and masks from a guided or image-conditioned diffusion model."""

    def __init__(self, *, detector_kind: str, config: DetectionConfig, unet: Component,
                 classifier: Component | None = None, threshold: Threshold | None = None,
                 image_scorer: ImageScore | None = None, device: str | torch.device | None = None,
                 source: str = "", meta: dict | None = None, operating_points: OperatingPoints | None = None) -> None:
        if detector_kind not in DETECTOR_KINDS:
            raise ValueError(f"detector_kind {detector_kind!r}; expected one of {DETECTOR_KINDS}")
        self.detector_kind, self.config, self.threshold = detector_kind, config, threshold
        self.image_scorer, self.operating_points = image_scorer, operating_points
        self.device = pick_device(str(device) if device is not None else None)
        self.unet = Component(unet.module.to(self.device).eval(), unet.kind, unet.meta)
        self.classifier = (None if classifier is None else
                           Component(classifier.module.to(self.device).eval(), classifier.kind, classifier.meta))
        self.source, self.meta = source, dict(meta or {})
        self.memo: MapMemo | None = None
        self._identity: bytes | None = None

    @property
    def identity(self) -> bytes:
        """What :class:`~dermclean.detection.memo.MapMemo` keys this detector's outputs by (computed once)."""
        if self._identity is None:
            self._identity = detector_identity(self)
        return self._identity

    @property
    def name(self) -> str:
        if self.detector_kind in ("imagecond", "segment"):
            return self.detector_kind
        return self.config.guidance if self.config.guidance_scale > 0 else "none"

    def with_config(self, **overrides: Any) -> "Detector":
        """Same models, ``config.replace(**overrides)``; the threshold and the fitted image score are
        dropped when the maps change (both were fitted on the old maps). A shared memo stays (its keys hold
        the settings that shape the maps)."""
        config = self.config.replace(**overrides)
        same_maps = all(getattr(config, k) == getattr(self.config, k) for k in MAP_KEYS)
        changed = Detector(detector_kind=self.detector_kind, config=config, unet=self.unet,
                           classifier=self.classifier, threshold=self.threshold if same_maps else None,
                           image_scorer=self.image_scorer if same_maps else None, device=self.device,
                           source=self.source, meta=self.meta,
                           operating_points=self.operating_points if same_maps else None)
        changed.memo = self.memo
        return changed

    @torch.no_grad()
    def anomaly_maps(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B,3,S,S)`` in [-1,1] at ``config.image_size`` -> smoothed maps ``(B,S,S)`` float32 on CPU."""
        cfg = self.config
        x = x.to(self.device).float()
        with cpu_bf16(cfg.cpu_bf16):
            if self.detector_kind == "segment":
                maps = self._segment(x)[0]
            elif self.detector_kind == "imagecond":
                if cfg.map_colour_constancy:
                    x = shades_of_gray((x + 1) / 2) * 2 - 1
                maps = imagecond_anomaly_map(self.unet.module, x, steps=cfg.steps,
                                             noise_level=cfg.imagecond_noise_level)
                maps = smooth(maps.float(), cfg.smoothing_sigma)
            else:
                guidance = "none" if cfg.guidance_scale == 0 else cfg.guidance
                maps = guided_anomaly_maps(self.unet.module, x, noise_level=cfg.noise_level, steps=cfg.steps,
                                           guidance=guidance, scale=cfg.guidance_scale,
                                           classifier=self.classifier.module if self.classifier else None,
                                           smoothing_sigma=cfg.smoothing_sigma, fixed_point_iters=cfg.inversion_iters)
        return maps.float().cpu()

    def _segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The segmenter's maps ``(B,S,S)`` (maximum over types of its probabilities) and per-type scores
        ``(B,3)`` (sigmoid of each type's top-k logit mean), from one forward pass (with ``map_tta``, the
        mean of four: :data:`MIRRORS`)."""
        x, net = x.to(self.device).float(), self.unet.module
        logits = (dihedral_map_mean(lambda v: net(v).float(), x, MIRRORS) if self.config.map_tta
                  else net(x).float())
        return torch.sigmoid(logits).amax(dim=1), torch.sigmoid(topk_mean(logits, self.unet.module.config.score_topk))

    def maps_and_types(self, x: torch.Tensor, x_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`anomaly_maps` of ``x`` and :meth:`type_scores` of ``x_scores``; a segmenter computes both
        from one forward pass (its scores read the model-resolution image)."""
        if self.detector_kind == "segment":
            with torch.no_grad():
                maps, types = self._segment(x)
            return maps.cpu(), types.cpu()
        return self.anomaly_maps(x), self.type_scores(x_scores)

    @property
    def score_size(self) -> int:
        """Side of the images :meth:`type_scores` wants: the noisy classifier's ``input_size`` (it may see
        more pixels than the diffusion model), else ``config.image_size``."""
        if self.classifier is not None:
            return int(self.classifier.module.config.input_size)
        return int(self.config.image_size)

    @torch.no_grad()
    def type_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-type scores ``(B, 3)`` (ruler, ink, patches); probabilities when a noisy classifier is present.

        ``x`` at :attr:`score_size` (the classifier upsamples a model-resolution ``x``, losing detail)."""
        x = x.to(self.device).float()
        if self.classifier is not None:
            return class_probabilities(self.classifier.module, x, t=0, tta=bool(self.config.score_tta)).cpu()
        if self.detector_kind == "segment":
            return self._segment(x)[1].cpu()
        if self.detector_kind == "guided":
            return diffusion_class_scores(self.unet.module, x, t=max(1, self.config.noise_level // 2)).cpu()
        return torch.full((x.shape[0], len(OUTLIER_CLASSES)), float("nan"))

    @property
    def has_type_probabilities(self) -> bool:
        """Whether :meth:`type_scores` are probabilities: a noisy classifier's, or a segmenter's own."""
        return self.classifier is not None or self.detector_kind == "segment"

    @property
    def image_score_kind(self) -> str:
        """The image score this detector computes: ``fitted``, ``stacked``, ``classifier`` or ``map``.

        ``fitted`` and ``stacked`` need their :class:`ImageScore` (fitted by
        :func:`~dermclean.detection.evaluate.fit_on_validation`); until then, or after
        :meth:`with_config` changed the maps, such a detector scores as ``auto`` does.
        """
        wanted = self.config.image_score
        if wanted in ("fitted", "stacked") and self.image_scorer is not None:
            return self.image_scorer.kind
        if wanted == "classifier" or (wanted in ("auto", "fitted", "stacked") and self.has_type_probabilities):
            return "classifier"
        return "map"

    def image_scores(self, maps: torch.Tensor, types: torch.Tensor, features: np.ndarray | None = None) -> torch.Tensor:
        """Image-level scores ``(B,)`` from maps ``(B,S,S)`` and type scores ``(B,3)``; a stacked score also
        reads the maps' ``features`` ``(B, F)`` (computed here when not given)."""
        kind = self.image_score_kind
        if kind == "map":
            return torch.quantile(maps.flatten(1), self.config.score_quantile, dim=1)
        if not self.has_type_probabilities:
            raise ValueError(f"detection.image_score {self.config.image_score!r} needs a noisy classifier in the bundle")
        p_any = any_artifact_probability(types)
        if kind == "classifier":
            return p_any
        peaks = maps.flatten(1).amax(dim=1)
        if kind == "stacked" and features is None:
            features = np.stack([map_features(m) for m in maps.numpy()])
        return torch.from_numpy(self.image_scorer.apply(p_any.double().numpy(), peaks.double().numpy(),
                                                        features)).float()

    def detect(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, *,
               batch_size: int | None = None, progress: bool = False) -> list[Detection]:
        """Detect on uint8 ``H x W x 3`` images (any sizes); maps and masks come back at each input's size.

        Without a fitted threshold the masks are all False.
        """
        names = list(names) if names is not None else [f"image_{i}" for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f"detect: {len(images)} images but {len(names)} names")
        out: list[Detection] = []
        bs = max(1, batch_size or self.config.batch_size)
        bar = _bar(len(images), progress)
        for start in range(0, len(images), bs):
            chunk = images[start:start + bs]
            maps, types = self._outputs(chunk)
            features = np.stack([map_features(m) for m in maps.numpy()])
            scores = self.image_scores(maps, types, features)
            peaks = maps.flatten(1).amax(dim=1)
            for i, img in enumerate(chunk):
                full = resize_map(maps[i].numpy(), tuple(np.asarray(img).shape[:2])).astype(np.float32)
                mask = self.threshold.apply(full) if self.threshold else np.zeros(full.shape, dtype=bool)
                out.append(Detection(image_name=names[start + i], anomaly_map=full, score=float(scores[i]),
                                     type_scores={c: float(types[i, k]) for k, c in enumerate(OUTLIER_CLASSES)},
                                     mask=mask, map_peak=float(peaks[i]), map_features=features[i]))
            bar.update(len(chunk))
        bar.close()
        return out

    def _outputs(self, chunk: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-resolution maps ``(B,S,S)`` and type scores ``(B,3)`` of ``chunk``; with a :attr:`memo`, images
        it holds are not run again, an image repeated in ``chunk`` runs once, and the others are added to it."""
        size, memo = self.config.image_size, self.memo
        if memo is None:
            return self._run(chunk, size)
        keys = [memo.key(self.identity, np.asarray(img)) for img in chunk]
        found: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}
        missing: dict[bytes, int] = {}  # the first place of each image the memo lacks
        for i, key in enumerate(keys):
            if key in found or key in missing:
                continue
            hit = memo.get(key)
            if hit is None:
                missing[key] = i
            else:
                found[key] = hit
        todo = list(missing.values())
        if todo:
            began = time.perf_counter()
            maps, types = self._run([chunk[i] for i in todo], size)
            each = (time.perf_counter() - began) / len(todo)
            for j, i in enumerate(todo):
                found[keys[i]] = (maps[j], types[j])
                memo.put(keys[i], maps[j], types[j], seconds=each)
        return torch.stack([found[k][0] for k in keys]), torch.stack([found[k][1] for k in keys])

    def _run(self, images: Sequence[np.ndarray], size: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([to_tensor(np.asarray(img), size) for img in images])
        x_scores = x if self.score_size == size else torch.stack(
            [to_tensor(np.asarray(img), self.score_size) for img in images])
        return self.maps_and_types(x, x_scores)


def _bar(total: int, enabled: bool):
    return tqdm(total=total, disable=not enabled or total < 2, desc="detect", unit="img")

