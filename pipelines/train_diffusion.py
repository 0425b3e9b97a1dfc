"""DVC stage ``train_diffusion``: the class-conditional UNet and the noise-aware classifier.

Trains, on the manifest's ``train`` split at ``data.image_size``:

1. :class:`~dermclean.diffusion.unet.DermUNet` conditioned on (ruler, ink, patches) with condition
   dropout, for classifier-free guidance (Wolleb et al. 2022; Ho & Salimans 2022);
2. :class:`~dermclean.methods.guided.noisy_classifier.NoisyClassifier` on noised images, for classifier
   guidance (Wolleb et al. 2022).

Writes ``--out/unet/`` and ``--out/noisy_classifier/`` (model folders, EMA weights for the UNet) and
``--out/mlflow_run.json`` atomically, logs to the MLflow experiment ``dermclean-diffusion`` and writes
``--metrics``. Checkpoints go to ``--checkpoints/unet/<key>/`` and ``--checkpoints/noisy_classifier/<key>/``,
each ``key`` hashing that model's own params (``diffusion.unet`` + ``diffusion.train``, or
``diffusion.noisy_classifier``), image size, seed and the manifest: an interrupted run resumes, a
changed config starts that model afresh, and the other model's checkpoint is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import mlflow
import torch

from dermclean.config import from_dict, load_params, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.dataset import load_split
from dermclean.diffusion.train import (
    TrainConfig, batches_from_dataset, checkpoint_key, evaluate_diffusion_loss, ordered_batches, train_diffusion,
)
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.env import pick_device
from dermclean.io import atomic_path, write_json
from dermclean.methods.guided.noisy_classifier import NoisyClassifier
from dermclean.methods.guided.noisy_classifier_train import (
    auroc_per_class, noisy_classifier_from_params, pos_weight_from_labels, predict_proba, train_noisy_classifier,
)
from dermclean.modelio import save_model_dir
from dermclean.tracking import configure_tracking, log_model_folder, start_run

EXPERIMENT = "dermclean-diffusion"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("models/diffusion"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/train_diffusion"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_diffusion.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    diff, seed, size = params["diffusion"], params_seed(params), int(params["data"]["image_size"])
    device = pick_device(args.device)
    progress = not args.no_progress
    unet_cfg = from_dict(UNetConfig, {**diff["unet"], "sample_size": size, "num_classes": len(OUTLIER_CLASSES)},
                         where=f"{args.params}: diffusion.unet")
    train_cfg = from_dict(TrainConfig, {"seed": seed, **diff["train"]}, where=f"{args.params}: diffusion.train")
    nc_cfg, nc_train = noisy_classifier_from_params(diff["noisy_classifier"], unet=unet_cfg,
                                                    where=f"{args.params}: diffusion.noisy_classifier")

    train_ds = load_split(args.manifest, "train", size)
    val_ds = load_split(args.manifest, "val", size)
    nc_train_ds, nc_val_ds = train_ds, val_ds
    if nc_cfg.input_size != size:  # the classifier sees more pixels than the UNet
        nc_train_ds = load_split(args.manifest, "train", nc_cfg.input_size)
        nc_val_ds = load_split(args.manifest, "val", nc_cfg.input_size)
    common = {"image_size": size, "seed": seed}
    unet_ckpt = args.checkpoints / "unet" / checkpoint_key(
        {"unet": diff["unet"], "train": diff["train"], **common}, args.manifest)
    nc_ckpt = args.checkpoints / "noisy_classifier" / checkpoint_key(
        {"noisy_classifier": diff["noisy_classifier"], **common}, args.manifest)
    print(f"train_diffusion: {len(train_ds)} train / {len(val_ds)} val images at {size} px on {device}; "
          f"checkpoints in {unet_ckpt} and {nc_ckpt}")

    configure_tracking()
    run_params = {"profile": params["profile"], "seed": seed, "data": {"image_size": size}, "diffusion": diff}
    with start_run(EXPERIMENT, f"train_diffusion-{params['profile']}", params=run_params,
                   data_paths=[args.manifest.parent], tags={"device": str(device)}) as run:
        torch.manual_seed(seed)
        unet = DermUNet(unet_cfg)
        result = train_diffusion(
            unet, batches_from_dataset(train_ds, batch_size=train_cfg.batch_size, seed=seed), train_cfg,
            checkpoint_dir=unet_ckpt, device=device, progress=progress,
            on_log=lambda step, m: mlflow.log_metrics({f"unet_{k}": v for k, v in m.items()}, step=step))
        unet_val = evaluate_diffusion_loss(result.model, ordered_batches(val_ds, batch_size=train_cfg.batch_size),
                                           device=device, seed=seed)

        torch.manual_seed(seed)
        clf_logs: list[float] = []

        def log_clf(step: int, m: dict[str, float]) -> None:
            clf_logs.append(m["loss"])
            mlflow.log_metrics({f"classifier_{k}": v for k, v in m.items()}, step=step)

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
            "noisy_classifier": {"final_loss": clf_logs[-1] if clf_logs else None, "steps": nc_train.steps,
                                 "seconds": nc_seconds, "val_auroc_t0": aurocs, "val_auroc_t0_tta": aurocs_tta,
                                 "parameters": sum(p.numel() for p in classifier.parameters())},
            "device": str(device), "train_images": len(train_ds), "val_images": len(val_ds),
        }
        mlflow.log_metrics({"unet_val_loss": unet_val, "unet_seconds": result.seconds,
                            "classifier_seconds": nc_seconds,
                            **{f"classifier_val_auroc_t0_{k}": v for k, v in aurocs.items()},
                            **{f"classifier_val_auroc_t0_tta_{k}": v for k, v in aurocs_tta.items()}})
        meta = {"run_id": run.info.run_id, "profile": params["profile"], "train_config": dataclasses.asdict(train_cfg),
                "steps_done": result.steps_done, "classes": list(OUTLIER_CLASSES)}
        with atomic_path(args.out) as tmp:
            tmp.mkdir()
            save_model_dir(tmp / "unet", kind="unet", config=unet_cfg, module=result.model, meta=meta)
            save_model_dir(tmp / "noisy_classifier", kind="noisy_classifier", config=nc_cfg, module=classifier,
                           meta={"run_id": run.info.run_id, "classes": list(OUTLIER_CLASSES),
                                 **dataclasses.asdict(nc_train), "val_auroc_t0": aurocs})
            unet_uri = log_model_folder(tmp / "unet", name="unet")
            nc_uri = log_model_folder(tmp / "noisy_classifier", name="noisy_classifier")
            write_json(tmp / "mlflow_run.json", {"run_id": run.info.run_id, "model_uri": unet_uri,
                                                 "model_uris": {"unet": unet_uri, "noisy_classifier": nc_uri}})
    write_json(args.metrics, metrics)
    print(f"unet loss {result.final_loss:.4f} (val {unet_val:.4f}) in {result.seconds:.0f} s; "
          f"classifier val AUROC@t0 {aurocs} (D4-averaged {aurocs_tta}); models in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
