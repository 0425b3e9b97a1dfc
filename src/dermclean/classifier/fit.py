"""Training the diagnosis classifiers of the proof: every data variant, every seed, natural and trap.

Two families, each for every data variant (``raw`` and every cleaned dataset) and every seed of
``classifier.seeds``:

- **natural** (``<out>/<variant>/seed<k>/``): trained on the variant's train split as it is (ISIC:
  patches go with benign lesions). ``dermclean-classifier-<variant>`` registers these and
  ``dermclean classify`` runs them.
- **trap** (``<out>/<variant>/trap/seed<k>/``): trained on the trap set (:mod:`dermclean.proof.trap_sets`),
  raw or cleaned by the variant's method.

For each classifier the epoch with the best validation AUROC is kept and the operating threshold
(``classifier.threshold``, Youden's J by default) is fitted on the same validation split; it is
written as a model folder with ``threshold.json`` and ``history.json`` and logged to MLflow
(:mod:`dermclean.tracking.classifier_runs`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dermclean.classifier.metrics import OperatingThreshold, fit_operating_threshold
from dermclean.classifier.model import ClassifierConfig
from dermclean.classifier.predict import save_classifier
from dermclean.classifier.train import TrainHistory, auxiliary_counts, predict_proba, train_classifier
from dermclean.data.dataset import ManifestDataset
from dermclean.data.manifest import read_manifest
from dermclean.errors import DataError
from dermclean.io import write_json
from dermclean.tracking.classifier_runs import log_classifier_run


@dataclass(frozen=True, kw_only=True)
class FittedClassifier:
    """A trained classifier with its history, validation threshold, time and split sizes."""

    model: torch.nn.Module
    history: TrainHistory
    threshold: OperatingThreshold
    seconds: float
    n_train: int
    n_val: int

    def summary(self) -> dict[str, Any]:
        return {"val_auroc": self.history.best_val_auroc, "best_epoch": self.history.best_epoch,
                "threshold": self.threshold.threshold, "val_sensitivity": self.threshold.sensitivity,
                "val_specificity": self.threshold.specificity, "train_seconds": self.seconds,
                "n_train": self.n_train, "n_val": self.n_val}


def classifier_config(params: dict[str, Any]) -> ClassifierConfig:
    """The architecture of ``params["classifier"]`` (``image_size`` null = ``data.image_size``)."""
    section = params["classifier"]
    size = section.get("image_size") or params["data"]["image_size"]
    return ClassifierConfig(arch=section.get("arch", "resnet18"), width=int(section.get("width", 16)),
                            image_size=int(size), init_weights=section.get("init_weights"),
                            colour_constancy=bool(section.get("colour_constancy", False)),
                            auxiliary=list(section.get("auxiliary") or []))


def auxiliary_targets(rows: pd.DataFrame, names: list[str]) -> np.ndarray | None:
    """``(len(rows), len(names))``: 1 where a row's ``diagnosis`` is the name, 0 where it is another or the
    row is a melanoma, NaN where neither is known; ``None`` without names."""
    if not names:
        return None
    diagnosis = rows["diagnosis"].astype("string")
    melanoma = rows["melanoma"].eq(1).fillna(False).to_numpy(dtype=bool)
    known = diagnosis.notna().to_numpy(dtype=bool) | melanoma
    out = np.full((len(rows), len(names)), np.nan, dtype=np.float32)
    for j, name in enumerate(names):
        out[known, j] = diagnosis.eq(name).fillna(False).to_numpy(dtype=bool)[known]
    return out


def variants(manifest: Path, folder: Path) -> dict[str, Path]:
    """``raw`` (``manifest``) plus every ``folder/<method>/manifest.csv``, in name order."""
    found = {"raw": Path(manifest)}
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if (p / "manifest.csv").is_file()):
            found[sub.name] = sub / "manifest.csv"
    return found


def fit_classifier(manifest: Path, config: ClassifierConfig, section: dict[str, Any], *, seed: int,
                   device: torch.device, progress: bool) -> FittedClassifier:
    """Train on ``manifest``'s train split, keep the best validation epoch, fit the threshold on val."""
    df = read_manifest(manifest)
    known = df["melanoma"].notna()
    split = {s: df[(df["split"].eq(s).fillna(False) & known).astype(bool)] for s in ("train", "val")}
    for name, rows in split.items():
        if rows.empty:
            raise DataError(f"{manifest}: no {name} rows with a melanoma label; run the prepare stage (data.splits)")
    auxiliary = auxiliary_targets(split["train"], config.auxiliary)
    if auxiliary is not None:
        for name, pos, neg in zip(config.auxiliary, *auxiliary_counts(auxiliary), strict=True):
            if pos == 0 or neg == 0:
                raise DataError(f"{manifest}: classifier.auxiliary names {name!r}, but the train split has {pos} "
                                f"rows with that diagnosis and {neg} without; expected both (diagnosis column)")
    train_ds = ManifestDataset(split["train"], manifest, size=config.image_size)
    val_ds = ManifestDataset(split["val"], manifest, size=config.image_size)
    began = time.perf_counter()
    model, history = train_classifier(train_ds, val_ds, config, epochs=int(section["epochs"]),
                                      batch_size=int(section["batch_size"]), lr=float(section["lr"]), seed=seed,
                                      device=device, weight_decay=float(section.get("weight_decay", 0.01)),
                                      augment=str(section.get("augment", "geometric")),
                                      lr_schedule=str(section.get("lr_schedule", "constant")),
                                      mixup=float(section.get("mixup") or 0.0),
                                      ema_decay=None if section.get("ema_decay") is None else float(section["ema_decay"]),
                                      auxiliary=auxiliary,
                                      auxiliary_weight=float(section.get("auxiliary_weight", 1.0)),
                                      progress=progress)
    seconds = time.perf_counter() - began
    p_val = predict_proba(model, val_ds, batch_size=int(section["batch_size"]), device=device)
    threshold = fit_operating_threshold(p_val, val_ds.melanoma, method=section.get("threshold", "youden"),
                                        target_sensitivity=float(section.get("target_sensitivity", 0.9)))
    return FittedClassifier(model=model, history=history, threshold=threshold, seconds=seconds,
                            n_train=len(train_ds), n_val=len(val_ds))


def train_classifiers(params: dict[str, Any], *, manifest: Path, cleaned: Path, trap: Path | None,
                      trap_cleaned: Path | None, out_dir: Path, device: torch.device,
                      progress: bool = True) -> dict[str, Any]:
    """Every natural and trap classifier into ``out_dir`` (see the module docstring); returns the metrics.

    ``trap`` is the painted trap set (``None``: no trap classifiers), ``trap_cleaned`` the folder of
    its cleaned variants.
    """
    section, config = params["classifier"], classifier_config(params)
    seeds = [int(s) for s in section["seeds"]]
    natural = variants(manifest, cleaned)
    jobs = [("natural", v, m, out_dir / v) for v, m in natural.items()]
    trap_info = None
    if trap is not None:
        trap_sets = variants(trap / "manifest.csv", trap_cleaned) if trap_cleaned else {"raw": trap / "manifest.csv"}
        jobs += [("trap", v, m, out_dir / v / "trap") for v, m in trap_sets.items()]
        trap_info = {"dir": str(trap.parent), "variants": sorted(trap_sets)}
    metrics: dict[str, Any] = {"config": dataclasses.asdict(config), "seeds": seeds, "trap": trap_info,
                               "natural": {}, "trap_models": {}}
    for family, variant, data, folder in jobs:
        for seed in seeds:
            print(f"train_classifier: {family} {variant} seed {seed} on {data}", flush=True)
            fitted = fit_classifier(data, config, section, seed=seed, device=device, progress=progress)
            model_dir = folder / f"seed{seed}"
            meta = {"family": family, "variant": variant, "seed": seed, "manifest": str(data),
                    "best_epoch": fitted.history.best_epoch, "val_auroc": fitted.history.best_val_auroc}
            save_classifier(model_dir, module=fitted.model, config=config, threshold=fitted.threshold, meta=meta)
            write_json(model_dir / "history.json", [dataclasses.asdict(e) for e in fitted.history.epochs])
            log_classifier_run(model_dir, fitted=fitted, config=config, section=section,
                               proof=params["proof"], family=family, variant=variant, seed=seed, manifest=data)
            metrics["natural" if family == "natural" else "trap_models"].setdefault(variant, {})[f"seed{seed}"] = \
                fitted.summary()
    return metrics
