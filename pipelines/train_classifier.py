"""DVC stage ``train_classifier``: diagnosis classifiers on raw and cleaned data, several seeds.

Two families of classifiers, each for every data variant -- ``raw`` and every removal method with a
``--cleaned/<method>/manifest.csv`` -- and every seed of ``classifier.seeds``:

- **natural** (``--out/<variant>/seed<k>/``): trained on the variant's train split, the data as it
  is (ISIC: patches go with benign lesions). These are what ``dermclean-classifier-<variant>``
  registers and ``dermclean classify`` runs.
- **trap** (``--out/<variant>/trap/seed<k>/``): the controlled shortcut of Bissoto et al. A trap set
  is painted ONCE from the raw data (:func:`dermclean.proof.trap.make_trap_split`:
  ``proof.trap_artifact`` correlated with melanoma at ``proof.trap_strength``, renderer style held
  out of removal training) into ``--trap-out/raw/``. For each removal method, the painted
  train+val images are then cleaned with that method (``dermclean.removal.run_clean_dir``: the
  detector ``--detector`` finds the masks, the method's model fills them), giving
  ``--trap-out/<method>/``: the trap training set is painted FIRST and then cleaned, exactly as a
  cleaning method would meet a shortcut in practice. Masks come from one detection pass
  (``--trap-out/detections/``, the ``detect`` contract) with the bundle that
  ``detection.pipeline_detector`` names (``--detector`` for guided, ``--detector-imagecond``), the
  one whose masks the ``clean`` stage used; every method fills the same masks.

For each classifier: the epoch with the best validation AUROC is kept and the operating threshold
(``classifier.threshold``, Youden's J by default) is fitted on the same validation split; written as a
model folder with ``threshold.json`` and ``history.json``, logged to the MLflow experiment
``dermclean-classifier`` (config, metrics, DVC hash of the training data, the model as a pyfunc),
with ``mlflow_run.json`` beside it. ``--metrics`` gets validation figures per classifier.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import mlflow

from dermclean.classifier.metrics import fit_operating_threshold
from dermclean.classifier.model import ClassifierConfig
from dermclean.classifier.predict import save_classifier
from dermclean.classifier.train import predict_proba, train_classifier
from dermclean.config import from_dict, load_params, params_seed
from dermclean.data.dataset import ManifestDataset
from dermclean.data.manifest import read_manifest, write_manifest
from dermclean.detection.contract import run_detect_dir
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.proof.trap import TRAIN_IMAGES, make_trap_split
from dermclean.removal.clean_dir import run_clean_dir
from dermclean.removal.engine import RemovalConfig
from dermclean.tracking import configure_tracking, log_model_folder, start_run

EXPERIMENT = "dermclean-classifier"
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "seeds", "threshold", "target_sensitivity")


def classifier_config(params: dict) -> ClassifierConfig:
    section = params["classifier"]
    size = section.get("image_size") or params["data"]["image_size"]
    return ClassifierConfig(arch=section.get("arch", "resnet18"), width=int(section.get("width", 16)),
                            image_size=int(size), init_weights=section.get("init_weights"))


def variants(manifest: Path, cleaned: Path) -> dict[str, Path]:
    """``raw`` plus every ``cleaned/<method>/manifest.csv``, in name order."""
    found = {"raw": manifest}
    if cleaned.is_dir():
        for folder in sorted(p for p in cleaned.iterdir() if (p / "manifest.csv").is_file()):
            found[folder.name] = folder / "manifest.csv"
    return found


def build_trap_sets(params: dict, manifest: Path, methods: list[str], args: argparse.Namespace) -> dict[str, Path]:
    """Paint the raw trap set, detect on its train+val images once, then clean them with each method
    inside those masks; variant -> manifest."""
    proof = params["proof"]
    raw_dir = args.trap_out / "raw"
    trap = make_trap_split(read_manifest(manifest), manifest_path=manifest, out_dir=raw_dir,
                           artifact=proof["trap_artifact"], strength=float(proof["trap_strength"]),
                           seed=params_seed(params), heldout_style=proof.get("trap_style"),
                           artifact_with=proof.get("trap_with", "melanoma"), size=proof.get("trap_size"))
    out = {"raw": trap.manifest_path}
    removal = from_dict(RemovalConfig, params.get("removal"), where=f"{args.params}: removal")
    train_val = trap.manifest[trap.manifest["split"].isin(["train", "val"])].copy()
    detections = args.trap_out / "detections"
    if methods:
        detector = pipeline_detector(params, args)
        print(f"trap set: detecting on {len(train_val)} painted train/val images with {detector}", flush=True)
        run_detect_dir(raw_dir / TRAIN_IMAGES, detections, model=str(detector), device=args.device, overwrite=True)
    for method in methods:
        model = {"inpaint": args.diffusion / "unet", "imagecond": args.imagecond}.get(method)
        target = args.trap_out / method
        cleaned_dir = target / "images"
        print(f"trap set: cleaning {len(train_val)} painted train/val images with {method}", flush=True)
        run_clean_dir(raw_dir / TRAIN_IMAGES, cleaned_dir, method=method, masks_dir=detections / "masks",
                      model=str(model) if model is not None else None, device=args.device, overwrite=True,
                      config=removal)
        rows = train_val.copy()
        rows["image_path"] = [f"images/{i}.png" for i in rows["image_id"]]
        rows["source"] = rows["source"].astype(str) + f"+{method}"
        write_manifest(rows, target / "manifest.csv")
        out[method] = target / "manifest.csv"
    return out


def pipeline_detector(params: dict, args: argparse.Namespace) -> Path:
    """The detector bundle of ``detection.pipeline_detector`` (guided: ``--detector``; imagecond:
    ``--detector-imagecond``)."""
    chosen = (params.get("detection") or {}).get("pipeline_detector", "guided")
    bundles = {"guided": args.detector, "imagecond": args.detector_imagecond}
    if chosen not in bundles:
        raise ValueError(f"{args.params}: detection.pipeline_detector is {chosen!r}; expected guided or imagecond")
    return bundles[chosen]


def train_one(*, family: str, variant: str, seed: int, manifest: Path, config: ClassifierConfig, params: dict,
              out_dir: Path, device, progress: bool) -> dict:
    section = params["classifier"]
    df = read_manifest(manifest)
    known = df["melanoma"].notna()
    split = {s: df[(df["split"].eq(s).fillna(False) & known).astype(bool)] for s in ("train", "val")}
    for name, rows in split.items():
        if rows.empty:
            raise ValueError(f"{manifest}: no {name} rows; run the prepare stage (data.splits)")
    train_ds = ManifestDataset(split["train"], manifest, size=config.image_size)
    val_ds = ManifestDataset(split["val"], manifest, size=config.image_size)
    began = time.perf_counter()
    model, history = train_classifier(train_ds, val_ds, config, epochs=int(section["epochs"]),
                                      batch_size=int(section["batch_size"]), lr=float(section["lr"]), seed=seed,
                                      device=device, weight_decay=float(section.get("weight_decay", 0.01)),
                                      progress=progress)
    seconds = time.perf_counter() - began
    p_val = predict_proba(model, val_ds, batch_size=int(section["batch_size"]), device=device)
    threshold = fit_operating_threshold(p_val, val_ds.melanoma, method=section.get("threshold", "youden"),
                                        target_sensitivity=float(section.get("target_sensitivity", 0.9)))
    meta = {"family": family, "variant": variant, "seed": seed, "manifest": str(manifest),
            "best_epoch": history.best_epoch, "val_auroc": history.best_val_auroc}
    save_classifier(out_dir, module=model, config=config, threshold=threshold, meta=meta)
    write_json(out_dir / "history.json", [dataclasses.asdict(e) for e in history.epochs])
    run_name = f"{variant}-{'trap-' if family == 'trap' else ''}seed{seed}"
    with start_run(EXPERIMENT, run_name, params={"classifier": {**dataclasses.asdict(config), **section},
                                                 "proof": params["proof"] if family == "trap" else {},
                                                 "variant": variant, "family": family, "seed": seed},
                   data_paths=[manifest.parent], tags={"variant": variant, "seed": str(seed), "family": family}) as run:
        for record in history.epochs:
            mlflow.log_metrics({"train_loss": record.train_loss, "val_loss": record.val_loss,
                                "val_auroc": record.val_auroc}, step=record.epoch)
        mlflow.log_metrics({"best_val_auroc": history.best_val_auroc, "best_epoch": history.best_epoch,
                            "threshold": threshold.threshold, "val_sensitivity": threshold.sensitivity,
                            "val_specificity": threshold.specificity, "train_seconds": seconds})
        model_uri = log_model_folder(out_dir)
        run_id = run.info.run_id
    write_json(out_dir / "mlflow_run.json", {"run_id": run_id, "model_uri": model_uri, "experiment": EXPERIMENT,
                                              "family": family, "variant": variant, "seed": seed})
    return {"val_auroc": history.best_val_auroc, "best_epoch": history.best_epoch, "threshold": threshold.threshold,
            "val_sensitivity": threshold.sensitivity, "val_specificity": threshold.specificity,
            "train_seconds": seconds, "n_train": len(train_ds), "n_val": len(val_ds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--cleaned", type=Path, default=Path("data/cleaned"))
    parser.add_argument("--diffusion", type=Path, default=Path("models/diffusion"))
    parser.add_argument("--imagecond", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--detector-imagecond", type=Path, default=Path("models/detector_imagecond"))
    parser.add_argument("--out", type=Path, default=Path("models/classifiers"))
    parser.add_argument("--trap-out", type=Path, default=None,
                        help="where the trap sets go (default: <out>/trap_sets, inside the stage output)")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/classifier.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    args.trap_out = args.trap_out or args.out / "trap_sets"

    params = load_params(args.params)
    config = classifier_config(params)
    seeds = [int(s) for s in params["classifier"]["seeds"]]
    device = pick_device(args.device)
    configure_tracking()
    natural = variants(args.manifest, args.cleaned)
    jobs = [("natural", v, m, args.out / v) for v, m in natural.items()]
    trap_info = None
    if params["proof"].get("trap_artifact"):
        trap_sets = build_trap_sets(params, args.manifest, [v for v in natural if v != "raw"], args)
        jobs += [("trap", v, m, args.out / v / "trap") for v, m in trap_sets.items()]
        trap_info = {"dir": str(args.trap_out), "variants": sorted(trap_sets)}
    metrics: dict = {"config": dataclasses.asdict(config), "seeds": seeds, "trap": trap_info, "natural": {}, "trap_models": {}}
    for family, variant, manifest, folder in jobs:
        for seed in seeds:
            print(f"train_classifier: {family} {variant} seed {seed} on {manifest}", flush=True)
            result = train_one(family=family, variant=variant, seed=seed, manifest=manifest, config=config,
                               params=params, out_dir=folder / f"seed{seed}", device=device,
                               progress=not args.no_progress)
            metrics["natural" if family == "natural" else "trap_models"].setdefault(variant, {})[f"seed{seed}"] = result
    write_json(args.metrics, metrics)
    print(f"classifiers written to {args.out}; metrics in {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
