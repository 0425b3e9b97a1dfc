"""DVC stage ``train_diffusion``: the class-conditional UNet and the noise-aware classifier of the guided method.

Trains both with :func:`dermclean.methods.guided.fit.fit_guided` (``diffusion``, ``data.image_size`` and
``seed``; checkpoints under ``--checkpoints``, resumed when the params match) inside the MLflow run
``train_diffusion-<profile>`` (experiment ``dermclean-diffusion``), writes ``--out/unet/`` and
``--out/noisy_classifier/`` (model folders, EMA weights for the UNet) and ``--out/mlflow_run.json``
atomically, and ``--metrics``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.methods.guided.fit import fit_guided
from dermclean.tracking.diffusion_runs import training_run


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
    device, profile = pick_device(args.device), params["profile"]
    logged = {"profile": profile, "seed": params_seed(params), "data": {"image_size": params["data"]["image_size"]},
              "diffusion": params["diffusion"]}
    with training_run(f"train_diffusion-{profile}", logged, args.manifest, device=device) as run:
        fit = fit_guided(params, args.manifest, checkpoints=args.checkpoints, device=device,
                         progress=not args.no_progress, on_log=run.log_step, where=str(args.params))
        run.log_metrics(fit.summary())
        run.publish(args.out, lambda folder: fit.save(folder, run_id=run.run_id, profile=profile))
    write_json(args.metrics, fit.metrics)
    unet, nc = fit.metrics["unet"], fit.metrics["noisy_classifier"]
    print(f"unet loss {unet['final_loss']:.4f} (val {unet['val_loss']:.4f}) in {unet['seconds']:.0f} s; classifier "
          f"val AUROC@t0 {nc['val_auroc_t0']} (D4-averaged {nc['val_auroc_t0_tta']}); models in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
