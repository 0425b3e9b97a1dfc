"""Benchmark: does the map add to the classifier's image score? Cross-validated on validation labels.

Reads the ``detect`` stage's outputs (``data/detections/scores.csv`` and ``maps/``, keyed by image id)
and the prepared manifest. On the validation images with complete human labels (any of ruler / ink /
patches against none) it repeats stratified k-fold cross-validation: each fold fits
:class:`~dermclean.detection.image_score.ImageScore` on the other folds, with the map's peak or
another of its quantiles as the second feature, and compares the held-out fold's AUROC with the
classifier's any-artifact probability alone (``1 - prod(1 - p_k)`` from the per-type columns, what
``image_score: auto`` scores with). The test split is not read: this is how the image score is chosen.

The ``stacked`` rows (``image_score: stacked``) replace the peak by a
:class:`~dermclean.detection.image_score.MapModel` of the maps' shape
(:func:`~dermclean.detection.image_score.map_features`, regions above ``--levels`` of the peak), trained
once on the *training* split's maps and labels; the cross-validation then fits only the combination on
the validation folds, as the ``detect`` stage fits it on validation. The maps are read as the stage
saved them, at the input's size: the model's own resolution for the image-conditioned detector on
256 px images, which the stage's map features read.

    python benchmarks/image_score_cv.py                       # after `dvc repro detect`
    python benchmarks/image_score_cv.py --quantiles 1 0.999 0.99 --levels 0.3 0.5 --folds 5 --repeats 10
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dermclean.config import params_parser
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.manifest import labelled_rows, read_manifest
from dermclean.detection.image_score import ImageScore, MapModel, any_artifact_probability, map_features
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
    """The benchmark as one script (see the module docstring): options, the measurement, its report; over 60
    lines for its options and printed table only."""
    parser = params_parser(__doc__.splitlines()[0])
    parser.add_argument("--detections", type=Path, default=Path("data/detections"))
    parser.add_argument("--quantiles", type=float, nargs="+", default=[1.0, 0.999, 0.99])
    parser.add_argument("--levels", type=float, nargs="*", default=[0.3, 0.5],
                        help="stacked rows: region levels (fractions of the peak) for the map features")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    scores = pd.read_csv(args.detections / "scores.csv")
    df = manifest.merge(scores, on="image_id", suffixes=("", "_score"))
    df, has_artifact = labelled_rows(df)
    in_train, in_val = (df["split"] == "train").to_numpy(), (df["split"] == "val").to_numpy()
    train, y_train = df[in_train], has_artifact[in_train].astype(int)
    df, y = df[in_val], has_artifact[in_val].astype(int)
    if df.empty:
        parser.error(f"{args.detections / 'scores.csv'}: no validation images with complete labels")
    p_any = any_artifact_probability(df[[f"{k}_score" for k in OUTLIER_CLASSES]].to_numpy(float))
    maps = [np.load(args.detections / "maps" / f"{i}.npy") for i in df["image_id"]]
    print(f"{len(y)} validation images, {y.sum()} with an artifact; classifier alone: AUROC {image_auroc(p_any, y):.4f}")
    print(f"{'second feature':22s} {'in-sample':>9s} {'mean CV gain':>12s} {'sd':>6s} {'folds > 0':>9s}  weights (classifier, map)")
    rng = np.random.default_rng(args.seed)
    fold_sets = [stratified_folds(y, args.folds, rng) for _ in range(args.repeats)]
    result = {"n_images": len(y), "n_artifact": int(y.sum()), "classifier_auroc": image_auroc(p_any, y), "quantiles": {},
              "stacked": {}}

    def cross_validate(name: str, peak: np.ndarray | None, features: np.ndarray | None,
                       map_model: MapModel | None) -> dict:
        gains = []
        for folds in fold_sets:
            for k in range(args.folds):
                fit_part, held = folds != k, folds == k
                fit = ImageScore.fit(p_any[fit_part], None if peak is None else peak[fit_part], y[fit_part],
                                     map_model=map_model, features=None if features is None else features[fit_part])
                scored = fit.apply(p_any[held], None if peak is None else peak[held],
                                   None if features is None else features[held])
                gains.append(image_auroc(scored, y[held]) - image_auroc(p_any[held], y[held]))
        full = ImageScore.fit(p_any, peak, y, map_model=map_model, features=features)
        in_sample = image_auroc(full.apply(p_any, peak, features), y)
        gains = np.array(gains)
        print(f"{name:22s} {in_sample:9.4f} {gains.mean():+12.4f} {gains.std():6.4f} {np.mean(gains > 0):9.0%}  "
              f"({full.weights[0]:.3f}, {full.weights[1]:.3f})")
        return {"in_sample_auroc": in_sample, "mean_cv_gain": float(gains.mean()), "sd_cv_gain": float(gains.std()),
                "folds_positive": float(np.mean(gains > 0)), "weights": list(full.weights)}

    for q in args.quantiles:
        feature = np.array([np.quantile(m, q) for m in maps])
        result["quantiles"][str(q)] = cross_validate(f"map quantile {q:g}", feature, None, None)
    if args.levels and train.empty:
        print("stacked rows skipped: no training-split images with complete labels in the detect output")
    elif args.levels:
        train_maps = [np.load(args.detections / "maps" / f"{i}.npy") for i in train["image_id"]]
        for level in args.levels:
            model = MapModel.fit(np.stack([map_features(m, level) for m in train_maps]), y_train)
            features = np.stack([map_features(m, level) for m in maps])
            row = cross_validate(f"stacked, level {level:g}", None, features, model)
            result["stacked"][str(level)] = {**row, "map_model_auroc": image_auroc(model.probability(features), y),
                                             "n_train": len(y_train)}
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
