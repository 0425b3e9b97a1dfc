"""The classical rules (:mod:`dermclean.methods.classical.rules`) as a detector, so evaluation treats
them as another detector: same ``detect`` / ``threshold`` / ``name`` interface as
:class:`~dermclean.detection.detector.Detector`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dermclean.detection.detector import Detection
from dermclean.detection.threshold import Threshold
from dermclean.methods.classical.rules import ClassicalConfig, combined_map, type_maps, type_scores


class ClassicalDetector:
    """Rule-based detector with the :class:`Detector` interface (``detect``, ``threshold``, ``name``)."""

    detector_kind = "classical"
    name = "classical"

    def __init__(self, *, config: ClassicalConfig | None = None, threshold: Threshold | None = None) -> None:
        self.config = config or ClassicalConfig()
        self.threshold = threshold

    def anomaly_map(self, image: np.ndarray) -> np.ndarray:
        return combined_map(type_maps(image, self.config))

    def detect(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, *,
               batch_size: int | None = None, progress: bool = False) -> list[Detection]:
        names = list(names) if names is not None else [f"image_{i}" for i in range(len(images))]
        out = []
        for image, name in zip(images, names, strict=True):
            maps = type_maps(np.asarray(image), self.config)
            full = combined_map(maps)
            types = type_scores(maps, self.config)
            mask = self.threshold.apply(full) if self.threshold else np.zeros(full.shape, dtype=bool)
            out.append(Detection(image_name=name, anomaly_map=full, score=max(types.values()),
                                 type_scores=types, mask=mask))
        return out
