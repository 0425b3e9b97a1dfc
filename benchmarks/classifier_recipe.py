"""Benchmark: can the diagnosis classifier diagnose? Melanoma AUROC of the profile's recipe on raw images.

Trains one classifier per seed on the prepared manifest's train split exactly as the
``train_classifier`` stage does (:func:`dermclean.classifier.fit.fit_classifier`: the profile's
``classifier`` section, ``--set key=value`` overriding its keys), keeping the epoch of best
validation AUROC. Reports the learning curve (validation AUROC per epoch), each classifier's
training time, and on ``--split``: AUROC per seed, their mean with a paired bootstrap 95 % interval
over images (:func:`dermclean.proof.stats.seed_interval`), and the AUROC of the seeds' mean
probability (the ensemble). Choose on ``val``; report ``test`` once: with ``--models DIR`` each
seed's classifier is saved there (``DIR/seed<N>``) and a later run with the same ``--models`` loads
it instead of training, so the test figures come from the very classifiers chosen on validation.
``--train-fraction F`` trains on a stratified share of the train split (same epochs): the learning
curve in training-set size.

    python benchmarks/classifier_recipe.py --manifest data/prepared/manifest.csv --seeds 0 1 2 --split val \\
        --set augment=strong --set image_size=128 --out recipe.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from dermclean.classifier.fit import classifier_config, fit_classifier
from dermclean.classifier.metrics import auroc
from dermclean.classifier.predict import load_classifier, save_classifier
from dermclean.classifier.train import predict_proba
from dermclean.config import load_params
from dermclean.data.dataset import ManifestDataset
from dermclean.data.manifest import image_paths, in_split, read_manifest, write_manifest
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.proof.stats import bootstrap_indices, seed_interval
from dermclean.proof.subgroups import auroc_stat


def _classifier(args: argparse.Namespace, config, section: dict, *, seed: int, device) -> tuple[object, dict]:
    """Seed ``seed``'s classifier: loaded from ``--models`` when saved there, else trained (and saved)."""
    folder = args.models / f"seed{seed}" if args.models else None
    if folder is not None and (folder / "config.json").is_file():
        loaded = load_classifier(folder, device=device)
        return loaded.module, {"seed": seed, **loaded.meta}
    began = time.perf_counter()
    fitted = fit_classifier(args.manifest, config, section, seed=seed, device=device, progress=False)
    run = {"seed": seed, "seconds": time.perf_counter() - began, "best_epoch": fitted.history.best_epoch,
           "val_auroc_per_epoch": [e.val_auroc for e in fitted.history.epochs]}
    if folder is not None:
        save_classifier(folder, module=fitted.model, config=config, threshold=fitted.threshold, meta=run)
    return fitted.model, run


def _subsample(manifest: Path, fraction: float, folder: Path) -> Path:
    """A manifest in ``folder`` with ``fraction`` of ``manifest``'s train rows (per melanoma class, seed 0),
    every other row kept, image paths made absolute."""
    df = read_manifest(manifest)
    df["image_path"] = [str(p.resolve()) for p in image_paths(df, manifest)]
    train = in_split(df, "train")
    rng = np.random.default_rng(0)
    drop = []
    for _, rows in df[train].groupby(df.loc[train, "melanoma"]):
        keep = max(1, round(fraction * len(rows)))
        drop += list(rng.permutation(rows.index.to_numpy())[keep:])
    out = folder / "manifest.csv"
    write_manifest(df.drop(index=drop), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the classifier section (YAML value)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--models", type=Path, default=None, help="save (or reuse) each seed's classifier here")
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="train on this share of the train split (stratified by melanoma; learning curve)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not 0.0 < args.train_fraction <= 1.0:
        parser.error(f"--train-fraction {args.train_fraction}; expected a share in (0, 1]")
    params = load_params(args.params, profile=args.profile)
    for item in args.set:
        key, _, value = item.partition("=")
        params["classifier"][key] = yaml.safe_load(value)
    section, config = params["classifier"], classifier_config(params)
    device = pick_device(args.device)
    df = read_manifest(args.manifest)
    rows = df[in_split(df, args.split) & df["melanoma"].notna().to_numpy()]
    data = ManifestDataset(rows, args.manifest, size=config.image_size)
    y = np.asarray(data.melanoma)
    runs, probabilities = [], []
    with tempfile.TemporaryDirectory(prefix="recipe-") as scratch:
        if args.train_fraction < 1.0:
            args.manifest = _subsample(args.manifest, args.train_fraction, Path(scratch))
        trained = [_classifier(args, config, section, seed=seed, device=device) for seed in args.seeds]
    for seed, (model, run) in zip(args.seeds, trained):
        p = predict_proba(model, data, device=device)
        probabilities.append(p)
        runs.append({**run, f"{args.split}_auroc": auroc(y, p)})
        print(f"seed {seed}: {args.split} AUROC {runs[-1][f'{args.split}_auroc']:.3f}, best epoch "
              f"{run['best_epoch']}, {run['seconds']:.0f} s", flush=True)
    indices = bootstrap_indices(len(y), n_boot=args.n_boot, seed=0)
    mean = seed_interval([auroc_stat(y, p) for p in probabilities], indices)
    ensemble = seed_interval([auroc_stat(y, np.mean(probabilities, axis=0))], indices)
    print(f"{args.split}: mean AUROC {mean.mean:.3f} [{mean.low:.3f}, {mean.high:.3f}] over {len(args.seeds)} seeds; "
          f"ensemble {ensemble.mean:.3f} [{ensemble.low:.3f}, {ensemble.high:.3f}]")
    write_json(args.out, {"profile": args.profile, "classifier": section, "train_fraction": args.train_fraction,
                          "split": args.split, "n_images": len(y),
                          "n_melanoma": int(y.sum()), "runs": runs, "mean_auroc": mean.as_dict(),
                          "ensemble_auroc": ensemble.as_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
