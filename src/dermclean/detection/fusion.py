"""Two detectors' maps as one: each map put on a common scale of rarity among clean pixels, then fused.

A detector's anomaly map has its own units (a diffusion model's reconstruction difference, a
segmenter's probability). :class:`MapCalibration` turns map values into *rarity*,
``-log10`` of the share of clean validation pixels whose value lies above (so ``2`` is as rare as the
1 % threshold), fitted on the same clean validation images as the pixel threshold; beyond the clean
values it continues with the slope of the nearest knot segment, so strong evidence stays ranked.
:class:`FusedDetector` maps images with both detectors and combines their rarity maps: a weighted
mean (``rule="mean"``, the weighted Fisher combination of the two exceedance rates) or the larger of
the two (``rule="max"``). Its pixel threshold is fitted on the fused maps of clean
validation images like any other (:func:`~dermclean.detection.evaluate.fit_threshold`). The image
score, the type scores and the map peak stay the first detector's (they rank images, the fused map
localises). Saved and loaded as a bundle by :mod:`dermclean.detection.storage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dermclean.detection.threshold import Threshold, threshold_settings

FUSION_RULES = ("mean", "max")

_LEVELS = 64  # knots between survival 1 and the rarest clean pixel


@dataclass(frozen=True)
class MapCalibration:
    """Piecewise-linear map from a detector's map values to rarity among clean pixels.

    ``values`` strictly increasing map values; ``rarity`` their ``-log10`` survival share (ascending).
    """

    values: np.ndarray
    rarity: np.ndarray

    @classmethod
    def fit(cls, clean_maps: Sequence[np.ndarray]) -> "MapCalibration":
        """Fit on the anomaly maps of clean images (any sizes)."""
        if len(clean_maps) == 0:
            raise ValueError("MapCalibration.fit: no clean maps; expected the maps of clean validation images")
        pixels = np.sort(np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in clean_maps]))
        n = pixels.size
        survival = np.logspace(0.0, np.log10(1.0 / n), _LEVELS)
        candidates = np.unique(np.quantile(pixels, 1.0 - survival, method="lower"))
        exceed = (n - np.searchsorted(pixels, candidates, side="right")) / n
        rarity = -np.log10(np.maximum(exceed, 1.0 / n))
        return cls(values=candidates, rarity=rarity)

    def apply(self, anomaly_map: np.ndarray) -> np.ndarray:
        """Rarity of every value of ``anomaly_map`` (float64, same shape): about ``0`` at the smallest clean
        value; outside the clean values it continues with the slope of the nearest knot segment, so values
        beyond them keep their order (inside, values between the two rarest clean pixels tie)."""
        v = np.asarray(anomaly_map, dtype=np.float64)
        out = np.interp(v, self.values, self.rarity)
        if self.values.size >= 2:
            fallback = 1.0 / max(self.values[-1] - self.values[0], 1e-12)  # a flat end (ties): rank by value
            for end, inner, beyond in ((-1, -2, v > self.values[-1]), (0, 1, v < self.values[0])):
                span = self.values[end] - self.values[inner]
                slope = (self.rarity[end] - self.rarity[inner]) / span if span != 0 else 0.0
                slope = slope if slope > 0 else fallback
                out[beyond] = self.rarity[end] + slope * (v[beyond] - self.values[end])
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {"values": self.values.tolist(), "rarity": self.rarity.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "MapCalibration":
        return cls(values=np.asarray(data["values"], dtype=np.float64),
                   rarity=np.asarray(data["rarity"], dtype=np.float64))


def check_fusion(rule: Any, weight: Any) -> None:
    """Raise ``ValueError`` unless ``rule`` is one of :data:`FUSION_RULES` and ``weight`` a share in [0, 1]."""
    if rule not in FUSION_RULES:
        raise ValueError(f"fusion rule {rule!r}; expected one of {FUSION_RULES}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight {weight!r}; expected a share in [0, 1]")


def fuse_rarity(maps: Sequence[np.ndarray], *, weight: float, rule: str) -> np.ndarray:
    """Combine two rarity maps: ``weight * a + (1 - weight) * b`` (``mean``) or ``max(a, b)`` (``max``)."""
    check_fusion(rule, weight)
    a, b = maps
    fused = np.maximum(a, b) if rule == "max" else weight * np.asarray(a) + (1.0 - weight) * np.asarray(b)
    return np.asarray(fused, dtype=np.float32)


class FusedDetector:
    """Two detectors whose maps are fused on the rarity scale, with the :class:`Detector` interface.

    ``calibrations`` one :class:`MapCalibration` per detector (``None`` until :meth:`fit`); ``threshold``
    the pixel threshold of the fused maps (``None``: masks all False). The config,
    device, image score and per-type operating points are the first detector's.
    """

    detector_kind = "fused"

    def __init__(self, detectors: Sequence[Any], calibrations: Sequence[MapCalibration] | None = None, *,
                 weight: float = 0.5, rule: str = "mean", threshold: Threshold | None = None, source: str = "",
                 meta: dict | None = None) -> None:
        if len(detectors) != 2 or (calibrations is not None and len(calibrations) != 2):
            found = "no" if calibrations is None else len(calibrations)
            raise ValueError(f"FusedDetector: {len(detectors)} detectors and {found} calibrations; "
                             "expected two of each")
        check_fusion(rule, weight)
        self.detectors = tuple(detectors)
        self.calibrations = None if calibrations is None else tuple(calibrations)
        self.weight, self.rule, self.threshold = float(weight), rule, threshold
        self.source, self.meta = source, dict(meta or {})

    @property
    def first(self) -> Any:
        return self.detectors[0]

    @property
    def config(self) -> Any:
        return self.first.config

    @property
    def device(self) -> Any:
        return getattr(self.first, "device", "cpu")

    @property
    def image_scorer(self) -> Any:
        return getattr(self.first, "image_scorer", None)

    @property
    def operating_points(self) -> Any:
        return getattr(self.first, "operating_points", None)

    @property
    def image_score_kind(self) -> str:
        return getattr(self.first, "image_score_kind", "map")

    @property
    def name(self) -> str:
        a, b = (d.name for d in self.detectors)
        return f"{a}+{b} ({self.rule}{'' if self.rule == 'max' else f' {self.weight:g}'})"

    def settings(self) -> dict[str, Any]:
        """What ``fusion.json`` and ``run.json`` record: the members, the rule, the weight, the calibrations."""
        return {"members": [d.detector_kind for d in self.detectors], "rule": self.rule, "weight": self.weight,
                "calibrations": None if self.calibrations is None else [c.to_dict() for c in self.calibrations]}

    def with_config(self, **overrides: Any) -> "FusedDetector":
        """Both members with ``batch_size`` changed (the only setting that leaves the fitted maps alone)."""
        if set(overrides) - {"batch_size"}:
            raise ValueError(f"a fused detector changes only batch_size; got {sorted(overrides)}")
        return FusedDetector([d.with_config(**overrides) for d in self.detectors], self.calibrations,
                             weight=self.weight, rule=self.rule, threshold=self.threshold, source=self.source,
                             meta=self.meta)

    def fit(self, clean_images: Sequence[np.ndarray], *, fitted_on: str = "") -> "FusedDetector":
        """Calibrate both members on their maps of ``clean_images`` (clean validation images), then fit the
        pixel threshold on the fused maps of the same images by the first member's ``fpr_budget`` and rule."""
        per_detector = [d.detect(clean_images) for d in self.detectors]
        self.calibrations = tuple(MapCalibration.fit([x.anomaly_map for x in dets]) for dets in per_detector)
        self.threshold = Threshold.fit([x.anomaly_map for x in self.fuse(per_detector)],
                                       **threshold_settings(self.config), fitted_on=fitted_on)
        return self

    def fuse(self, per_detector: Sequence[Sequence[Any]]) -> list[Any]:
        """Fuse detections already computed (one list per detector, same images in the same order): the
        first's detections with the fused map and its mask."""
        if self.calibrations is None:
            raise ValueError("FusedDetector: fit it on clean validation images first (FusedDetector.fit)")
        first, second = per_detector
        out = []
        for a, b in zip(first, second, strict=True):
            fused = fuse_rarity([self.calibrations[0].apply(a.anomaly_map), self.calibrations[1].apply(b.anomaly_map)],
                                weight=self.weight, rule=self.rule)
            mask = self.threshold.apply(fused) if self.threshold else np.zeros(fused.shape, dtype=bool)
            out.append(replace(a, anomaly_map=fused, mask=mask))
        return out

    def detect(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, *,
               batch_size: int | None = None, progress: bool = False) -> list[Any]:
        return self.fuse([d.detect(images, names, batch_size=batch_size, progress=progress) for d in self.detectors])
