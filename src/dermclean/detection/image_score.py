"""The fitted image score: the noisy classifier and the anomaly map's peak, combined on validation labels.

With ``detection.image_score: fitted`` the image-level score is

    sigmoid(w_c * logit(p_any) + w_m * log(peak + eps) + b)

where ``p_any = 1 - prod_k(1 - p_k)`` is the noisy classifier's any-artifact probability at t = 0 and
``peak`` the maximum of the image's smoothed anomaly map at the model's resolution (what
:attr:`dermclean.detection.detector.Detection.map_peak` holds). ``w_c``, ``w_m`` and ``b`` come from an
L2-regularised logistic regression (Newton's method, the penalty ``l2 / 2 * |w|^2`` leaves ``b`` out)
on the validation images whose human labels are complete: any of ruler / ink / patches against none.
Like :class:`~dermclean.detection.threshold.Threshold` it is an object fitted on validation data
only and saved beside the model (``image_score.json`` in the detector bundle); it belongs to the maps
it was fitted on, so a detector whose maps change drops it.

Why: the classifier looks at the whole image, the map at where something does not belong; on the real
set's validation split the peak adds what the classifier misses (README, "image-level detector").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-6
"""Floor of the map peak and clip of the probabilities before the logs."""


def any_artifact_probability(type_probs):
    """``1 - prod_k(1 - p_k)`` over the last axis of per-type probabilities (numpy array or torch tensor):
    the classifier's image score, and the first feature of the fitted one."""
    return 1.0 - (1.0 - type_probs).prod(-1)


def _features(p_any: np.ndarray, peak: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p_any, dtype=np.float64), EPS, 1.0 - EPS)
    return np.stack([np.log(p / (1.0 - p)), np.log(np.maximum(np.asarray(peak, dtype=np.float64), 0.0) + EPS)], 1)


@dataclass
class ImageScore:
    """``weights`` (classifier logit, log map peak) and ``bias``; provenance: ``n_images`` (fitted on),
    ``n_artifact`` (of them with an artifact), ``l2``, ``fitted_on``."""

    weights: tuple[float, float]
    bias: float
    n_images: int
    n_artifact: int
    l2: float = 1.0
    fitted_on: str = ""

    @classmethod
    def fit(cls, p_any: np.ndarray, peak: np.ndarray, has_artifact: np.ndarray, *, l2: float = 1.0,
            fitted_on: str = "", iterations: int = 50) -> "ImageScore":
        """Fit on validation images: classifier ``p_any`` (N,), map ``peak`` (N,), 0/1 ``has_artifact`` (N,)."""
        x = _features(p_any, peak)
        y = np.asarray(has_artifact, dtype=np.float64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ImageScore.fit: {x.shape[0]} images but {y.shape[0]} labels")
        if not np.isfinite(x).all():
            raise ValueError("ImageScore.fit: a classifier probability or map peak is NaN; the fitted image "
                             "score needs a noisy classifier in the bundle and finite maps")
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            raise ValueError(f"ImageScore.fit: {len(y)} validation images, {n_pos} with an artifact; expected "
                             f"both images with ruler/ink/patches and images with none (complete labels)")
        design = np.hstack([x, np.ones((len(y), 1))])
        penalty = np.diag([l2, l2, 0.0])
        beta = np.zeros(3)
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-design @ beta))
            grad = design.T @ (p - y) + penalty @ beta
            hess = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(3)
            step = np.linalg.solve(hess, grad)
            beta -= step
            if np.abs(step).max() < 1e-10:
                break
        return cls(weights=(float(beta[0]), float(beta[1])), bias=float(beta[2]), n_images=len(y), n_artifact=n_pos,
                   l2=float(l2), fitted_on=fitted_on)

    def apply(self, p_any: np.ndarray, peak: np.ndarray) -> np.ndarray:
        """Scores in (0, 1) for classifier ``p_any`` (N,) and map ``peak`` (N,)."""
        z = _features(p_any, peak) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        return {**asdict(self), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, data: dict) -> "ImageScore":
        try:
            weights = [float(w) for w in data["weights"]]
            if len(weights) != 2:
                raise ValueError(f"image_score.json: weights has {len(weights)} entries; expected 2 "
                                 f"(classifier logit, log map peak)")
            return cls(weights=(weights[0], weights[1]), bias=float(data["bias"]), n_images=int(data["n_images"]),
                       n_artifact=int(data["n_artifact"]), l2=float(data.get("l2", 1.0)),
                       fitted_on=str(data.get("fitted_on", "")))
        except KeyError as exc:
            raise ValueError(f"image_score.json is missing {exc}; expected weights, bias, n_images, n_artifact") from exc
