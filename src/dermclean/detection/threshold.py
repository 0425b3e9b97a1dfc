"""The pixel threshold: an object fitted on validation data only, saved beside the model.

Fitted on the anomaly maps of *clean* validation images (labels say none of ruler/ink/patches) by
one of two rules (``detection.threshold_rule``):

- ``pixels``: the ``1 - fpr_budget`` quantile of their pixel values, so that at most ``fpr_budget``
  of those images' pixels are flagged;
- ``upper_bound``: the smallest value at which the one-sided ``confidence`` bootstrap upper bound
  (resampling the images) of the flagged share of clean pixels is at most ``fpr_budget``. The flagged
  area of clean images is carried by a few images (a bluish acquisition, dense hair), so a threshold
  that flags exactly the budget on the validation images flags more on new ones about half the
  time; this rule keeps new images' flagged area within the budget with that confidence, at the
  cost of a higher threshold (fewer artifact pixels flagged). Pixel AP does not depend on it.

Following anomalib's ``metrics/threshold`` objects: ``fit``, ``apply``, ``to_dict`` / ``from_dict``,
stored as ``threshold.json`` in the detector bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

THRESHOLD_RULES = ("pixels", "upper_bound")
N_BOOT = 1000


def threshold_settings(config: Any) -> dict[str, Any]:
    """``Threshold.fit``'s budget and rule from a detector's config (the defaults where it has none)."""
    return {"fpr_budget": float(getattr(config, "fpr_budget", 0.01)),
            "rule": str(getattr(config, "threshold_rule", "pixels")),
            "confidence": float(getattr(config, "threshold_confidence", 0.95))}


@dataclass
class Threshold:
    """``value``: maps strictly above it are flagged. Provenance: ``fpr_budget``, ``n_images``, ``n_pixels``,
    ``fitted_on`` (a description such as ``"val clean images"``), ``rule`` and, for ``upper_bound``,
    ``confidence``."""

    value: float
    fpr_budget: float
    n_images: int
    n_pixels: int
    fitted_on: str = ""
    rule: str = "pixels"
    confidence: float | None = None

    @classmethod
    def fit(cls, clean_maps: Sequence[np.ndarray], *, fpr_budget: float, fitted_on: str = "", rule: str = "pixels",
            confidence: float = 0.95, seed: int = 0) -> "Threshold":
        """Fit on anomaly maps (each ``H x W``, any sizes) of clean images by ``rule`` (module docstring).

        ``pixels``: ``value`` is the smallest map value ``v`` such that the fraction of pixels ``> v`` is at
        most ``fpr_budget`` (computed exactly over all pixels, ties included). ``upper_bound``: the
        smallest map value whose bootstrap upper bound (``N_BOOT`` resamples of the images drawn with
        ``seed``, the ``confidence`` quantile of the resampled flagged shares) is at most ``fpr_budget``.
        """
        if not 0.0 < fpr_budget < 1.0:
            raise ValueError(f"Threshold.fit: fpr_budget {fpr_budget}; expected a rate in (0, 1)")
        if rule not in THRESHOLD_RULES:
            raise ValueError(f"Threshold.fit: rule {rule!r}; expected one of {THRESHOLD_RULES}")
        if len(clean_maps) == 0:
            raise ValueError("Threshold.fit: no clean maps; the validation split needs images whose labels "
                             "say they carry none of ruler/ink/patches")
        per_image = [np.sort(np.asarray(m, dtype=np.float64).ravel()) for m in clean_maps]
        values = np.sort(np.concatenate(per_image))
        n = values.size
        allowed = int(np.floor(fpr_budget * n))  # pixels that may stay above the threshold
        value = float(values[n - 1 - allowed])
        if rule == "upper_bound":
            if not 0.5 <= confidence < 1.0:
                raise ValueError(f"Threshold.fit: confidence {confidence}; expected a level in [0.5, 1)")
            value = _upper_bound_value(per_image, values, start=n - 1 - allowed, fpr_budget=fpr_budget,
                                       confidence=confidence, seed=seed)
        return cls(value=value, fpr_budget=float(fpr_budget), n_images=len(clean_maps), n_pixels=int(n),
                   fitted_on=fitted_on, rule=rule, confidence=float(confidence) if rule == "upper_bound" else None)

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
                       fitted_on=str(data.get("fitted_on", "")), rule=str(data.get("rule", "pixels")),
                       confidence=None if data.get("confidence") is None else float(data["confidence"]))
        except KeyError as exc:
            raise ValueError(f"threshold.json is missing {exc}; expected value, fpr_budget, n_images, n_pixels") from exc


def _upper_bound_value(per_image: list[np.ndarray], values: np.ndarray, *, start: int, fpr_budget: float,
                       confidence: float, seed: int) -> float:
    """The smallest of the sorted pooled ``values`` at or above ``values[start]`` (the pixel rule's
    threshold, which the bound can only raise) whose bootstrap upper bound of the flagged share is within
    ``fpr_budget``; found by bisection, the bound falling as the threshold rises."""
    sizes = np.array([v.size for v in per_image], dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, len(per_image), size=(N_BOOT, len(per_image)))
    boot_pixels = sizes[draws].sum(axis=1)

    def bound(v: float) -> float:
        flagged = np.array([m.size - np.searchsorted(m, v, side="right") for m in per_image], dtype=np.float64)
        return float(np.quantile(flagged[draws].sum(axis=1) / boot_pixels, confidence))

    lo, hi = start, values.size - 1  # bound(values[-1]) = 0: nothing lies above the largest value
    if bound(float(values[lo])) <= fpr_budget:
        return float(values[lo])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bound(float(values[mid])) <= fpr_budget:
            hi = mid
        else:
            lo = mid
    return float(values[hi])
