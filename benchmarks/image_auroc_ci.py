"""Benchmark: the detect stage's image AUROC (any artifact) on one split, with bootstrap intervals.

Reads the ``detect`` stage's ``scores.csv`` (keyed by image id) and the prepared manifest. On the
``--split`` images whose human labels are complete (any of ruler / ink / patches against none) it
reports the AUROC of the ``score`` column with its 95 % percentile bootstrap interval over the images
(:func:`dermclean.proof.stats.bootstrap_ci`, ``--n-boot`` seeded resamples), and the paired difference,
on the same resamples, against the noise-aware classifier alone (``1 - prod(1 - p_k)`` from the per-type
columns, ``image_score: auto``) and, with ``--against``, against another run's ``scores.csv`` on the
same images (for example the run before a change of image score).

    python benchmarks/image_auroc_ci.py                                  # after `dvc repro detect`
    python benchmarks/image_auroc_ci.py --against OLD/scores.csv --n-boot 2000
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dermclean.config import params_parser
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.manifest import labelled_rows, read_manifest
from dermclean.detection.image_score import any_artifact_probability
from dermclean.detection.metrics import image_auroc
from dermclean.io import write_json
from dermclean.proof.stats import bootstrap_indices, difference, seed_interval


def main(argv: list[str] | None = None) -> int:
    parser = params_parser(__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, default=Path("data/detections/scores.csv"))
    parser.add_argument("--against", type=Path, default=None, help="another run's scores.csv to compare with")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.manifest)
    df = manifest.merge(pd.read_csv(args.scores), on="image_id", suffixes=("", "_score"))
    df, has_artifact = labelled_rows(df)
    in_split = (df["split"] == args.split).to_numpy()
    df, y = df[in_split], has_artifact[in_split].astype(int)
    if df.empty:
        parser.error(f"{args.scores}: no {args.split!r} images with complete labels")
    scores = {"score": df["score"].to_numpy(float),
              "classifier alone": any_artifact_probability(df[[f"{k}_score" for k in OUTLIER_CLASSES]].to_numpy(float))}
    if args.against is not None:
        other = pd.read_csv(args.against).set_index("image_id")["score"]
        missing = sorted(set(df["image_id"]) - set(other.index))
        if missing:
            parser.error(f"{args.against}: no score for {len(missing)} of the {args.split} images, "
                         f"e.g. {missing[0]}; expected the same manifest's detect output")
        scores[f"{args.against}"] = other.loc[df["image_id"]].to_numpy(float)

    def auroc_of(values: np.ndarray):
        return lambda idx: image_auroc(values[idx], y[idx])

    indices = bootstrap_indices(len(y), n_boot=args.n_boot, seed=args.seed)
    main_stat = auroc_of(scores["score"])
    result = {"split": args.split, "n_images": len(y), "n_artifact": int(y.sum()),
              "score": seed_interval([main_stat], indices).as_dict(), "paired_gain": {}}
    print(f"{args.split}: {len(y)} images with complete labels, {y.sum()} with an artifact")
    row = result["score"]
    print(f"image AUROC of `score`: {row['mean']:.4f} [{row['low']:.4f}, {row['high']:.4f}]")
    for name, values in list(scores.items())[1:]:
        gain = seed_interval([difference(main_stat, auroc_of(values))], indices).as_dict()
        result["paired_gain"][name] = {**gain, "auroc": image_auroc(values, y)}
        print(f"  gain over {name} (AUROC {image_auroc(values, y):.4f}): {gain['mean']:+.4f} "
              f"[{gain['low']:+.4f}, {gain['high']:+.4f}]")
    if args.out is not None:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
