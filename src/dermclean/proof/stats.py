"""Confidence intervals: a paired bootstrap over test images, combined across training seeds.

Method (stated with the proof tables in docs/results/):

1. One set of ``B`` bootstrap resamples of the test images is drawn once
   (:func:`bootstrap_indices`, seeded), and the *same* resamples are used for every classifier --
   every seed and every data variant -- because all of them are tested on the same images. This
   makes differences between variants paired.
2. For each seed ``s`` and resample ``b`` the figure ``f_s(b)`` is computed on the resampled images.
3. The combined replicate is the mean over seeds, ``F(b) = mean_s f_s(b)`` (a pooled bootstrap of
   the mean over seeds); the point estimate is ``mean_s f_s(all images)`` and the 95 % interval is
   the 2.5th-97.5th percentile of ``F(b)`` (percentile bootstrap). Replicates where a figure is
   undefined (e.g. an AUROC on a resample with one class) are skipped, and their count is kept.

The interval thus covers test-image sampling of the seed-averaged figure; the spread between seeds
is reported beside it (``seed_std``) rather than folded in, since 3 seeds are too few to resample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Statistic = Callable[[np.ndarray], float]
"""A figure computed on the test images selected by an index array ``(n,)`` (with repeats)."""


@dataclass(frozen=True, kw_only=True)
class Interval:
    """``mean`` over seeds with its 95 % bootstrap interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    per_seed: list[float] = field(default_factory=list)
    seed_std: float = float("nan")
    n_boot: int = 0
    n_valid: int = 0

    def as_dict(self) -> dict[str, float | list[float] | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "per_seed": list(self.per_seed),
                "seed_std": self.seed_std, "n_boot": self.n_boot, "n_valid": self.n_valid}

    def overlaps(self, other: "Interval") -> bool:
        return not (self.high < other.low or other.high < self.low)


def bootstrap_indices(n: int, *, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` int array: resamples with replacement of ``range(n)``."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"bootstrap over n={n} images with n_boot={n_boot}: expected both >= 1")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def seed_interval(stats: Sequence[Statistic], indices: np.ndarray, *, alpha: float = 0.05) -> Interval:
    """Combine one statistic per seed (``stats``) over the shared resamples ``indices`` (see module doc)."""
    if not stats:
        raise ValueError("seed_interval needs at least one seed's statistic")
    n = indices.shape[1]
    full = np.arange(n)
    per_seed = np.array([s(full) for s in stats], dtype=np.float64)
    reps = np.array([[s(idx) for s in stats] for idx in indices], dtype=np.float64)  # (B, seeds)
    combined = reps.mean(axis=1)  # NaN when any seed's figure is undefined on that resample
    valid = combined[np.isfinite(combined)]
    mean = float(np.mean(per_seed)) if np.all(np.isfinite(per_seed)) else float(np.nanmean(per_seed)) \
        if np.any(np.isfinite(per_seed)) else float("nan")
    if valid.size == 0:
        low = high = float("nan")
    else:
        low, high = (float(v) for v in np.percentile(valid, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 and np.all(np.isfinite(per_seed)) else float("nan")
    return Interval(mean=mean, low=low, high=high, per_seed=[float(v) for v in per_seed], seed_std=std,
                    n_boot=int(indices.shape[0]), n_valid=int(valid.size))


def bootstrap_ci(stat: Statistic, n: int, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Interval:
    """Percentile bootstrap interval of one statistic over ``n`` images (a single seed)."""
    return seed_interval([stat], bootstrap_indices(n, n_boot=n_boot, seed=seed), alpha=alpha)


def mean_of(values: np.ndarray) -> Statistic:
    """Statistic: the mean of per-image ``values`` (NaN entries ignored; NaN if none is left)."""
    values = np.asarray(values, dtype=np.float64)

    def stat(idx: np.ndarray) -> float:
        picked = values[idx]
        picked = picked[np.isfinite(picked)]
        return float(picked.mean()) if picked.size else float("nan")

    return stat


def ratio_of(numerator: np.ndarray, denominator: np.ndarray) -> Statistic:
    """Statistic: ``sum(numerator) / sum(denominator)`` over the selected images (NaN if the sum is 0)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)

    def stat(idx: np.ndarray) -> float:
        d = den[idx].sum()
        return float(num[idx].sum() / d) if d > 0 else float("nan")

    return stat


def difference(a: Statistic, b: Statistic) -> Statistic:
    """Statistic ``a - b`` on the same resample (paired)."""
    return lambda idx: a(idx) - b(idx)
