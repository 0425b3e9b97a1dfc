"""The fitted image scores: the noisy classifier and the anomaly map, combined on labels.

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

With ``detection.image_score: stacked`` the map's peak is replaced by what a small model reads from the
map's shape, :class:`MapModel`:

    sigmoid(w_c * logit(p_any) + w_m * logit(q_map) + b)

``q_map`` is the probability that the image carries an artifact given :func:`map_features` of its
anomaly map (quantiles, peak on the border band and in the centre, size, count and elongation of the
regions above a fraction of the peak): a one-hidden-layer network (an average of a few seeds), trained
on the *training* split's human labels. The classifier was trained on those labels too, so its
training-split outputs are overconfident; the two are therefore combined on validation, as for
``fitted``. Both are plain numbers in ``image_score.json`` (no pickled objects).

Why: the classifier looks at the whole image, the map at where something does not belong; on the real
set's validation split the map adds what the classifier misses (docs/experiments.md, "Image-level score"), and
its shape (a long line along the border is a ruler) more than its peak alone.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

EPS = 1e-6
"""Floor of the map peak and clip of the probabilities before the logs."""

MAP_FEATURES: tuple[str, ...] = ("q50", "q90", "q99", "q999", "peak", "border_peak", "border_q99", "centre_peak",
                                 "area", "regions", "largest", "elongation")
"""What :func:`map_features` returns, in order."""

MAP_LEVEL = 0.3
"""Regions of a map are where it exceeds this fraction of its own peak (chosen on validation, docs/experiments.md)."""

MAP_EPS = 1e-4
"""Floor of the map values before their logs in :func:`map_features`."""


def any_artifact_probability(type_probs):
    """``1 - prod_k(1 - p_k)`` over the last axis of per-type probabilities (numpy array or torch tensor):
    the classifier's image score, and the first feature of the fitted one."""
    return 1.0 - (1.0 - type_probs).prod(-1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p / (1.0 - p))


def map_features(anomaly_map: np.ndarray, level: float = MAP_LEVEL) -> np.ndarray:
    """The shape of one anomaly map ``(S, S)`` (the detector's, at the model's resolution) as the
    :data:`MAP_FEATURES` vector (float64): log quantiles and peak; log peak and 99th percentile of the
    border band (an eighth of the side: rulers lie along the edge) and log peak inside it; and, for the
    regions where the map exceeds ``level`` (:data:`MAP_LEVEL`) of its peak, the log of their area fraction, of
    their count + 1, of the largest one's area fraction and of its elongation (bounding extent squared
    over area: about 1 for a blob, large for a line)."""
    from scipy import ndimage

    m = np.maximum(np.asarray(anomaly_map, dtype=np.float64), 0.0)
    if m.ndim != 2 or min(m.shape) < 2:
        raise ValueError(f"map_features: expected a 2-D map of at least 2 x 2; got shape {m.shape}")
    band = max(1, min(m.shape) // 8)
    border = np.zeros(m.shape, dtype=bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True
    quantiles = np.quantile(m, [0.5, 0.9, 0.99, 0.999])
    peak = m.max()
    centre = m[~border] if (~border).any() else m.ravel()
    regions = m > level * peak if peak > 0 else np.zeros(m.shape, dtype=bool)
    labels, count = ndimage.label(regions)
    largest, elongation = 0.0, 1.0
    if count:
        sizes = np.bincount(labels.ravel())[1:]
        ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
        largest = float(sizes.max())
        elongation = float(max(np.ptp(ys), np.ptp(xs)) + 1) ** 2 / largest
    values = [*quantiles, peak, m[border].max(), np.quantile(m[border], 0.99), centre.max()]
    return np.array([*(np.log(v + MAP_EPS) for v in values),
                     np.log(regions.mean() + 1e-5), np.log1p(count), np.log(largest / m.size + 1e-5),
                     np.log(elongation)], dtype=np.float64)


@dataclass
class MapModel:
    """P(artifact | :func:`map_features`): a one-hidden-layer ReLU network per seed, probabilities averaged.

    ``mean`` / ``scale`` standardise the features; ``members`` hold each network's ``[W1, b1, W2, b2]``
    as nested lists. Provenance: ``n_images``, ``n_artifact``, ``fitted_on``, ``hidden``, ``alpha``.
    """

    mean: list[float]
    scale: list[float]
    members: list[list[list]]
    n_images: int
    n_artifact: int
    hidden: int = 16
    alpha: float = 0.01
    fitted_on: str = ""
    features: list[str] = field(default_factory=lambda: list(MAP_FEATURES))

    @classmethod
    def fit(cls, features: np.ndarray, has_artifact: np.ndarray, *, hidden: int = 16, alpha: float = 0.01,
            seeds: int = 3, fitted_on: str = "") -> "MapModel":
        """Train on ``features`` (N, F) from :func:`map_features` and 0/1 ``has_artifact`` (N,): L2 penalty
        ``alpha``, Adam, ``seeds`` networks from seeds 0.. (deterministic)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        if seeds < 1 or hidden < 1 or alpha < 0:
            raise ValueError(f"MapModel.fit: expected seeds >= 1, hidden >= 1 and alpha >= 0; got seeds={seeds}, "
                             f"hidden={hidden}, alpha={alpha}")
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(has_artifact).astype(int)
        if x.ndim != 2 or x.shape[1] != len(MAP_FEATURES) or x.shape[0] != y.shape[0]:
            raise ValueError(f"MapModel.fit: features of shape {x.shape} and {y.shape[0]} labels; expected "
                             f"(N, {len(MAP_FEATURES)}) and N")
        if not np.isfinite(x).all():
            raise ValueError("MapModel.fit: a map feature is not finite; expected finite anomaly maps")
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == len(y):
            raise ValueError(f"MapModel.fit: {len(y)} training images, {n_pos} with an artifact; expected both "
                             f"images with ruler/ink/patches and images with none (complete labels)")
        mean, scale = x.mean(0), x.std(0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        members = []
        for seed in range(seeds):
            net = MLPClassifier((hidden,), alpha=alpha, max_iter=2000, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                net.fit(z, y)
            members.append([net.coefs_[0].tolist(), net.intercepts_[0].tolist(),
                            net.coefs_[1].tolist(), net.intercepts_[1].tolist()])
        return cls(mean=mean.tolist(), scale=scale.tolist(), members=members, n_images=len(y), n_artifact=n_pos,
                   hidden=int(hidden), alpha=float(alpha), fitted_on=fitted_on)

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(artifact) (N,) for ``features`` (N, F)."""
        z = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - np.asarray(self.mean)) / np.asarray(self.scale)
        out = np.zeros(z.shape[0])
        for w1, b1, w2, b2 in self.members:
            h = np.maximum(z @ np.asarray(w1) + np.asarray(b1), 0.0)
            out += 1.0 / (1.0 + np.exp(-(h @ np.asarray(w2) + np.asarray(b2))[:, 0]))
        return out / len(self.members)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MapModel":
        features = list(data.get("features", MAP_FEATURES))
        if features != list(MAP_FEATURES):
            raise ValueError(f"image_score.json: map_model was trained on features {features}; this version "
                             f"computes {list(MAP_FEATURES)} (refit it: dvc repro detect)")
        try:
            return cls(mean=[float(v) for v in data["mean"]], scale=[float(v) for v in data["scale"]],
                       members=data["members"], n_images=int(data["n_images"]), n_artifact=int(data["n_artifact"]),
                       hidden=int(data.get("hidden", 16)), alpha=float(data.get("alpha", 0.01)),
                       fitted_on=str(data.get("fitted_on", "")))
        except KeyError as exc:
            raise ValueError(f"image_score.json: map_model is missing {exc}; expected mean, scale, members, "
                             f"n_images, n_artifact") from exc


@dataclass
class ImageScore:
    """``weights`` (classifier logit, map term) and ``bias``; provenance: ``n_images`` (fitted on),
    ``n_artifact`` (of them with an artifact), ``l2``, ``fitted_on``. The map term is ``log(peak + eps)``,
    or with a ``map_model`` (``image_score: stacked``) the logit of its probability."""

    weights: tuple[float, float]
    bias: float
    n_images: int
    n_artifact: int
    l2: float = 1.0
    fitted_on: str = ""
    map_model: MapModel | None = None

    @property
    def kind(self) -> str:
        """``stacked`` with a map model, else ``fitted``."""
        return "fitted" if self.map_model is None else "stacked"

    @staticmethod
    def _design(map_model: MapModel | None, p_any: np.ndarray, peak: np.ndarray | None,
                features: np.ndarray | None) -> np.ndarray:
        """Per image: the classifier's logit and the map term (log peak, or the map model's logit)."""
        if map_model is None:
            if peak is None:
                raise ValueError("ImageScore: the map peak is needed")
            second = np.log(np.maximum(np.asarray(peak, dtype=np.float64), 0.0) + EPS)
        else:
            if features is None:
                raise ValueError("ImageScore: a stacked image score needs the maps' map_features")
            second = _logit(map_model.probability(features))
        return np.stack([_logit(p_any), second], 1)

    @classmethod
    def fit(cls, p_any: np.ndarray, peak: np.ndarray | None, has_artifact: np.ndarray, *, l2: float = 1.0,
            fitted_on: str = "", iterations: int = 50, map_model: MapModel | None = None,
            features: np.ndarray | None = None) -> "ImageScore":
        """Fit on validation images: classifier ``p_any`` (N,), map ``peak`` (N,), 0/1 ``has_artifact`` (N,);
        with ``map_model``, its probability on ``features`` (N, F) (:func:`map_features`) instead of the peak."""
        x = cls._design(map_model, p_any, peak, features)
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
                   l2=float(l2), fitted_on=fitted_on, map_model=map_model)

    def apply(self, p_any: np.ndarray, peak: np.ndarray | None, features: np.ndarray | None = None) -> np.ndarray:
        """Scores in (0, 1) for classifier ``p_any`` (N,) and map ``peak`` (N,) or, stacked, ``features`` (N, F)."""
        z = self._design(self.map_model, p_any, peak, features) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def summary(self) -> dict:
        """:meth:`to_dict` with the map model's provenance in place of its networks (for ``run.json``)."""
        out = self.to_dict()
        if self.map_model is not None:
            out["map_model"] = {k: v for k, v in out["map_model"].items() if k not in ("members", "mean", "scale")}
        return out

    def to_dict(self) -> dict:
        out = {**asdict(self), "weights": list(self.weights)}
        if self.map_model is None:
            out.pop("map_model")
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ImageScore":
        try:
            weights = [float(w) for w in data["weights"]]
            if len(weights) != 2:
                raise ValueError(f"image_score.json: weights has {len(weights)} entries; expected 2 "
                                 f"(classifier logit, log map peak)")
            return cls(weights=(weights[0], weights[1]), bias=float(data["bias"]), n_images=int(data["n_images"]),
                       n_artifact=int(data["n_artifact"]), l2=float(data.get("l2", 1.0)),
                       fitted_on=str(data.get("fitted_on", "")),
                       map_model=MapModel.from_dict(data["map_model"]) if data.get("map_model") else None)
        except KeyError as exc:
            raise ValueError(f"image_score.json is missing {exc}; expected weights, bias, n_images, n_artifact") from exc
