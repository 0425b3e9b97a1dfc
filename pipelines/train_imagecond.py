"""DVC stage ``train_imagecond``: the image-conditioned diffusion model (Baugh et al. 2024).

Trains :class:`~dermclean.diffusion.unet.DermUNet` (3 condition channels, 4 with a mask condition; no class condition)
on the manifest's ``train`` images labelled free of ruler/ink/patches, each corrupted with painted
artifacts (held-out renderer styles excluded, ``imagecond.untouched_fraction`` left untouched), to
produce the clean original (:func:`dermclean.methods.imagecond.train.train_imagecond`). Then checks removal
on the ``val`` split's clean images with training-style and held-out-style artifacts.

Writes ``--out`` (a model folder of kind ``unet`` with EMA weights, plus ``mlflow_run.json``)
atomically, logs to the MLflow experiment ``dermclean-diffusion`` (run ``train_imagecond``), writes
``--metrics``. Checkpoints: ``--checkpoints/<key>/`` with ``key`` hashing the training params (not
the inference ones: ``steps``, ``noise_level``, ``eval_images``), image size, seed and the manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import mlflow

from dermclean.config import from_dict, load_params, params_seed
from dermclean.diffusion.train import TrainConfig, checkpoint_key
from dermclean.env import pick_device
from dermclean.io import atomic_path, write_json
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.imagecond.pairs import CORRUPTION_KEYS, corruption_from_params, heldout_styles, load_clean_images
from dermclean.methods.imagecond.train import train_imagecond
from dermclean.modelio import save_model_dir
from dermclean.removal.engine import RemovalConfig
from dermclean.removal.evaluate import evaluate_removal
from dermclean.tracking import configure_tracking, log_model_folder, start_run
from dermclean.values import flat_metrics

EXPERIMENT = "dermclean-diffusion"
INFERENCE_KEYS = ("steps", "noise_level", "eval_images")



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/train_imagecond"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_imagecond.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    ic, seed, size = dict(params["imagecond"]), params_seed(params), int(params["data"]["image_size"])
    device = pick_device(args.device)
    unet_cfg = imagecond_unet_config(sample_size=size, **ic["unet"])
    train_cfg = from_dict(TrainConfig, {"seed": seed, **ic["train"]}, where=f"{args.params}: imagecond.train")
    corruption = corruption_from_params(ic)
    unknown = sorted(set(ic) - {"unet", "train", *CORRUPTION_KEYS, *INFERENCE_KEYS})
    if unknown:
        raise ValueError(f"{args.params}: imagecond: unknown keys {unknown}")
    steps, noise_level = int(ic.get("steps", 8)), ic.get("noise_level")

    images = load_clean_images(args.manifest, split="train", size=unet_cfg.image_size)
    stage_params = {"imagecond": {k: v for k, v in ic.items() if k not in INFERENCE_KEYS}, "image_size": size,
                    "seed": seed}
    ckpt = args.checkpoints / checkpoint_key(stage_params, args.manifest)
    tiles = f" in {size} px crops" if unet_cfg.image_size != size else ""
    print(f"train_imagecond: {len(images)} clean train images at {unet_cfg.image_size} px{tiles} on {device}; "
          f"checkpoints in {ckpt}")

    configure_tracking()
    run_params = {"profile": params["profile"], "seed": seed, "data": {"image_size": size}, "imagecond": ic}
    with start_run(EXPERIMENT, "train_imagecond", params=run_params, data_paths=[args.manifest.parent],
                   tags={"device": str(device), "model": "imagecond"}) as run:
        losses: list[float] = []

        def log(step: int, m: dict[str, float]) -> None:
            losses.append(m["loss"])
            mlflow.log_metrics({f"imagecond_{k}": v for k, v in m.items()}, step=step)

        model = train_imagecond(images, unet_cfg, train_cfg, checkpoint_dir=ckpt, device=device, seed=seed,
                                corruption=corruption, on_log=log, progress=not args.no_progress)
        check_cfg = RemovalConfig(methods=["imagecond", "telea"], steps=steps, noise_level=noise_level,
                                  dilation=int(params.get("removal", {}).get("dilation", 3)),
                                  eval_images=int(ic.get("eval_images", 8)), seed=seed)
        check = evaluate_removal(args.manifest, split="val", methods=["imagecond", "telea"], guided_model=None,
                                 imagecond_model=model, config=check_cfg, device=str(device), seed=seed)
        metrics = {
            "final_loss": losses[-1] if losses else None, "steps": train_cfg.steps, "train_images": len(images),
            "parameters": sum(p.numel() for p in model.parameters()), "device": str(device),
            "val_removal": {m: {g: r[g]["all"] for g in ("train_styles", "heldout_styles", "all") if g in r}
                            for m, r in check["methods"].items()},
        }
        mlflow.log_metrics(flat_metrics(metrics["val_removal"], prefix="val_removal."))
        meta = {"run_id": run.info.run_id, "profile": params["profile"], "model": "imagecond",
                "train_config": dataclasses.asdict(train_cfg), "corruption": dataclasses.asdict(corruption),
                "heldout_styles": {k: list(v) for k, v in dict(heldout_styles()).items()},
                "inference": {"steps": steps, "noise_level": noise_level}}
        with atomic_path(args.out) as tmp:
            save_model_dir(tmp, kind="unet", config=unet_cfg, module=model, meta=meta)
            uri = log_model_folder(tmp, name="imagecond")
            write_json(tmp / "mlflow_run.json", {"run_id": run.info.run_id, "model_uri": uri})
    write_json(args.metrics, metrics)
    print(f"imagecond loss {metrics['final_loss']}; val removal {json.dumps(metrics['val_removal'])[:400]}; "
          f"model in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
