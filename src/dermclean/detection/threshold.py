"""The pixel threshold: an object fitted on validation data only, saved beside the model.

Fitted as the ``1 - fpr_budget`` quantile of the anomaly-map values of *clean* validation images
(labels say none of ruler/ink/patches), so that at most ``fpr_budget`` of their pixels are flagged.
Following anomalib's ``metrics/threshold`` objects: ``fit``, ``apply``, ``to_dict`` / ``from_dict``,
stored as ``threshold.json`` in the detector bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Threshold:
    """``value``: maps strictly above it are flagged. Provenance: ``fpr_budget``, ``n_images``, ``n_pixels``,
    ``fitted_on`` (a description such as ``"val clean images"``)."""

    value: float
    fpr_budget: float
    n_images: int
    n_pixels: int
    fitted_on: str = ""

    @classmethod
    def fit(cls, clean_maps: Sequence[np.ndarray], *, fpr_budget: float, fitted_on: str = "") -> "Threshold":
        """Fit on anomaly maps (each ``H x W``, any sizes) of clean images.

        ``value`` is the smallest map value ``v`` such that the fraction of pixels ``> v`` is at most
        ``fpr_budget`` (computed exactly over all pixels, ties included).
        """
        if not 0.0 < fpr_budget < 1.0:
            raise ValueError(f"Threshold.fit: fpr_budget {fpr_budget}; expected a rate in (0, 1)")
        if len(clean_maps) == 0:
            raise ValueError("Threshold.fit: no clean maps; the validation split needs images whose labels "
                             "say they carry none of ruler/ink/patches")
        values = np.sort(np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in clean_maps]))
        n = values.size
        allowed = int(np.floor(fpr_budget * n))  # pixels that may stay above the threshold
        value = float(values[n - 1 - allowed])
        return cls(value=value, fpr_budget=float(fpr_budget), n_images=len(clean_maps), n_pixels=int(n),
                   fitted_on=fitted_on)

    def apply(self, anomaly_map: np.ndarray) -> np.ndarray:
        """Bool mask ``H x W``: ``anomaly_map > value``."""
        return np.asarray(anomaly_map) > self.value

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Threshold":
        try:
            return cls(value=float(data["value"]), fpr_budget=float(data["fpr_budget"]),
                       n_images=int(data["n_images"]), n_pixels=int(data["n_pixels"]),
                       fitted_on=str(data.get("fitted_on", "")))
        except KeyError as exc:
            raise ValueError(f"threshold.json is missing {exc}; expected value, fpr_budget, n_images, n_pixels") from exc
