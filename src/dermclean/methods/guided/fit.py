"""Training of the guided method's two models from the effective params (what ``train_diffusion`` runs).

:func:`fit_guided` trains, on the manifest's ``train`` split at ``data.image_size``:

1. :class:`~dermclean.diffusion.unet.DermUNet` conditioned on (ruler, ink, patches) with condition
   dropout, for classifier-free guidance (Wolleb et al. 2022; Ho & Salimans 2022);
2. :class:`~dermclean.methods.guided.noisy_classifier.NoisyClassifier` on noised images, for classifier
   guidance (Wolleb et al. 2022).

Checkpoints go to ``checkpoints/unet/<key>/`` and ``checkpoints/noisy_classifier/<key>/``, each ``key``
hashing that model's own params (``diffusion.unet`` + ``diffusion.train``, or ``diffusion.noisy_classifier``),
image size, seed and the manifest: an interrupted run resumes, a changed config starts that model
afresh, and the other model's checkpoint is kept. :meth:`GuidedFit.save` writes both model folders.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dermclean.config import from_dict, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.dataset import load_split
from dermclean.diffusion.train import (
    TrainConfig, TrainResult, batches_from_dataset, checkpoint_key, evaluate_diffusion_loss, ordered_batches,
    train_diffusion,
)
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.guided.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from dermclean.methods.guided.noisy_classifier_train import (
    NoisyClassifierTraining, auroc_per_class, noisy_classifier_from_params, pos_weight_from_labels, predict_proba,
    train_noisy_classifier,
)
from dermclean.modelio import save_model_dir

StepLog = Callable[[str, int, dict[str, float]], None]
"""``on_log(model, step, metrics)``: ``model`` is ``unet`` or ``classifier``."""


@dataclass
class GuidedFit:
    """Both trained models, their configs and the figures of the run."""

    unet_config: UNetConfig
    train_config: TrainConfig
    classifier_config: NoisyClassifierConfig
    classifier_training: NoisyClassifierTraining
    unet: TrainResult
    classifier: NoisyClassifier
    metrics: dict[str, Any]

    def summary(self) -> dict[str, float]:
        """The run's final figures as flat MLflow metrics."""
        unet, nc = self.metrics["unet"], self.metrics["noisy_classifier"]
        return {"unet_val_loss": unet["val_loss"], "unet_seconds": unet["seconds"], "classifier_seconds": nc["seconds"],
                **{f"classifier_val_auroc_t0_{k}": v for k, v in nc["val_auroc_t0"].items()},
                **{f"classifier_val_auroc_t0_tta_{k}": v for k, v in nc["val_auroc_t0_tta"].items()}}

    def save(self, folder: Path, *, run_id: str, profile: str) -> dict[str, Path]:
        """Write ``folder/unet/`` (EMA weights) and ``folder/noisy_classifier/``; returns name -> model folder."""
        folder.mkdir()
        meta = {"run_id": run_id, "profile": profile, "train_config": dataclasses.asdict(self.train_config),
                "steps_done": self.unet.steps_done, "classes": list(OUTLIER_CLASSES)}
        save_model_dir(folder / "unet", kind="unet", config=self.unet_config, module=self.unet.model, meta=meta)
        save_model_dir(folder / "noisy_classifier", kind="noisy_classifier", config=self.classifier_config,
                       module=self.classifier,
                       meta={"run_id": run_id, "classes": list(OUTLIER_CLASSES),
                             **dataclasses.asdict(self.classifier_training),
                             "val_auroc_t0": self.metrics["noisy_classifier"]["val_auroc_t0"]})
        return {"unet": folder / "unet", "noisy_classifier": folder / "noisy_classifier"}


def guided_configs(params: dict[str, Any], *, where: str = "params"
                   ) -> tuple[UNetConfig, TrainConfig, NoisyClassifierConfig, NoisyClassifierTraining]:
    """The UNet, its training, the noisy classifier and its training, from ``diffusion`` and ``data.image_size``."""
    diff, size = params["diffusion"], int(params["data"]["image_size"])
    unet_cfg = from_dict(UNetConfig, {**diff["unet"], "sample_size": size, "num_classes": len(OUTLIER_CLASSES)},
                         where=f"{where}: diffusion.unet")
    train_cfg = from_dict(TrainConfig, {"seed": params_seed(params), **diff["train"]}, where=f"{where}: diffusion.train")
    nc_cfg, nc_train = noisy_classifier_from_params(diff["noisy_classifier"], unet=unet_cfg,
                                                    where=f"{where}: diffusion.noisy_classifier")
    return unet_cfg, train_cfg, nc_cfg, nc_train


def fit_guided(params: dict[str, Any], manifest: Path, *, checkpoints: Path, device: torch.device,
               progress: bool = True, on_log: StepLog | None = None, where: str = "params") -> GuidedFit:
    """Train the class-conditional UNet, then the noisy classifier (each seeded with the top-level ``seed``)
    and evaluate both on the ``val`` split (UNet loss; classifier AUROC at t = 0, plain and D4-averaged)."""
    log = on_log or (lambda model, step, m: None)
    diff, seed, size = params["diffusion"], params_seed(params), int(params["data"]["image_size"])
    unet_cfg, train_cfg, nc_cfg, nc_train = guided_configs(params, where=where)
    train_ds, val_ds = load_split(manifest, "train", size), load_split(manifest, "val", size)
    nc_train_ds, nc_val_ds = train_ds, val_ds
    if nc_cfg.input_size != size:  # the classifier sees more pixels than the UNet
        nc_train_ds, nc_val_ds = load_split(manifest, "train", nc_cfg.input_size), load_split(manifest, "val", nc_cfg.input_size)
    common = {"image_size": size, "seed": seed}
    unet_ckpt = checkpoints / "unet" / checkpoint_key({"unet": diff["unet"], "train": diff["train"], **common}, manifest)
    nc_ckpt = checkpoints / "noisy_classifier" / checkpoint_key({"noisy_classifier": diff["noisy_classifier"], **common},
                                                                manifest)
    print(f"train_diffusion: {len(train_ds)} train / {len(val_ds)} val images at {size} px on {device}; "
          f"checkpoints in {unet_ckpt} and {nc_ckpt}")

    torch.manual_seed(seed)
    result = train_diffusion(DermUNet(unet_cfg), batches_from_dataset(train_ds, batch_size=train_cfg.batch_size, seed=seed),
                             train_cfg, checkpoint_dir=unet_ckpt, device=device, progress=progress,
                             on_log=lambda step, m: log("unet", step, m))
    unet_val = evaluate_diffusion_loss(result.model, ordered_batches(val_ds, batch_size=train_cfg.batch_size),
                                       device=device, seed=seed)

    torch.manual_seed(seed)
    clf_losses: list[float] = []

    def log_clf(step: int, m: dict[str, float]) -> None:
        clf_losses.append(m["loss"])
        log("classifier", step, m)

    began = time.perf_counter()
    classifier = train_noisy_classifier(
        NoisyClassifier(nc_cfg), batches_from_dataset(nc_train_ds, batch_size=nc_train.batch_size, seed=seed + 1),
        device=device, checkpoint_dir=nc_ckpt, seed=seed, progress=progress,
        pos_weight=pos_weight_from_labels(nc_train_ds.labels), on_log=log_clf, **nc_train.train_kwargs())
    nc_seconds = time.perf_counter() - began
    aurocs, aurocs_tta = (
        auroc_per_class(*predict_proba(classifier, ordered_batches(nc_val_ds, batch_size=nc_train.batch_size),
                                       device=device, t=0, tta=tta)) for tta in (False, True))
    metrics = {
        "unet": {"final_loss": result.final_loss, "val_loss": unet_val, "steps": result.steps_done,
                 "seconds": result.seconds, "resumed_from": result.resumed_from,
                 "parameters": sum(p.numel() for p in result.model.parameters())},
        "noisy_classifier": {"final_loss": clf_losses[-1] if clf_losses else None, "steps": nc_train.steps,
                             "seconds": nc_seconds, "val_auroc_t0": aurocs, "val_auroc_t0_tta": aurocs_tta,
                             "parameters": sum(p.numel() for p in classifier.parameters())},
        "device": str(device), "train_images": len(train_ds), "val_images": len(val_ds),
    }
    return GuidedFit(unet_config=unet_cfg, train_config=train_cfg, classifier_config=nc_cfg,
                     classifier_training=nc_train, unet=result, classifier=classifier, metrics=metrics)
