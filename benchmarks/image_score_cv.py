"""Benchmark: does the map's peak add to the classifier's image score? Cross-validated on validation labels.

Reads the ``detect`` stage's outputs (``data/detections/scores.csv`` and ``maps/``, keyed by image id)
and the prepared manifest. On the validation images with complete human labels (any of ruler / ink /
patches against none) it repeats stratified k-fold cross-validation: each fold fits
:class:`~dermclean.detection.image_score.ImageScore` on the other folds, with the map's peak or
another of its quantiles as the second feature, and compares the held-out fold's AUROC with the
classifier's any-artifact probability alone (``1 - prod(1 - p_k)`` from the per-type columns, what
``image_score: auto`` scores with). The test split is not read: this is how the image score is chosen.

    python benchmarks/image_score_cv.py                       # after `dvc repro detect`
    python benchmarks/image_score_cv.py --quantiles 1 0.999 0.99 --folds 5 --repeats 10
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dermclean.config import params_parser
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.manifest import read_manifest
from dermclean.detection.image_score import ImageScore, any_artifact_probability
from dermclean.detection.metrics import image_auroc
from dermclean.io import write_json


def stratified_folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per sample, each class dealt round-robin after a shuffle."""
    out = np.empty(len(y), dtype=int)
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        out[idx] = np.arange(len(idx)) % folds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = params_parser(__doc__.splitlines()[0])
    parser.add_argument("--detections", type=Path, default=Path("data/detections"))
    parser.add_argument("--quantiles", type=float, nargs="+", default=[1.0, 0.999, 0.99])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    scores = pd.read_csv(args.detections / "scores.csv")
    df = manifest.merge(scores, on="image_id", suffixes=("", "_score"))
    labels = df[list(OUTLIER_CLASSES)]
    df = df[(df["split"] == "val").to_numpy() & labels.notna().all(axis=1).to_numpy()]
    if df.empty:
        parser.error(f"{args.detections / 'scores.csv'}: no validation images with complete labels")
    y = (df[list(OUTLIER_CLASSES)].sum(axis=1) > 0).to_numpy(int)
    p_any = any_artifact_probability(df[[f"{k}_score" for k in OUTLIER_CLASSES]].to_numpy(float))
    maps = [np.load(args.detections / "maps" / f"{i}.npy") for i in df["image_id"]]
    print(f"{len(y)} validation images, {y.sum()} with an artifact; classifier alone: AUROC {image_auroc(p_any, y):.4f}")
    print(f"{'second feature':22s} {'in-sample':>9s} {'mean CV gain':>12s} {'sd':>6s} {'folds > 0':>9s}  weights (classifier, map)")
    rng = np.random.default_rng(args.seed)
    fold_sets = [stratified_folds(y, args.folds, rng) for _ in range(args.repeats)]
    result = {"n_images": len(y), "n_artifact": int(y.sum()), "classifier_auroc": image_auroc(p_any, y), "quantiles": {}}
    for q in args.quantiles:
        feature = np.array([np.quantile(m, q) for m in maps])
        gains = []
        for folds in fold_sets:
            for k in range(args.folds):
                train, held = folds != k, folds == k
                fit = ImageScore.fit(p_any[train], feature[train], y[train])
                gains.append(image_auroc(fit.apply(p_any[held], feature[held]), y[held])
                             - image_auroc(p_any[held], y[held]))
        full = ImageScore.fit(p_any, feature, y)
        gains = np.array(gains)
        print(f"map quantile {q:<9g} {image_auroc(full.apply(p_any, feature), y):9.4f} {gains.mean():+12.4f} "
              f"{gains.std():6.4f} {np.mean(gains > 0):9.0%}  ({full.weights[0]:.3f}, {full.weights[1]:.3f})")
        result["quantiles"][str(q)] = {"in_sample_auroc": image_auroc(full.apply(p_any, feature), y),
                                       "mean_cv_gain": float(gains.mean()), "sd_cv_gain": float(gains.std()),
                                       "folds_positive": float(np.mean(gains > 0)), "weights": list(full.weights)}
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
