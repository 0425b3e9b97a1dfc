"""DVC stage ``train_imagecond``: the image-conditioned diffusion model (Baugh et al. 2024).

Trains it with :func:`dermclean.methods.imagecond.fit.fit_imagecond` (``imagecond.unet``, ``imagecond.train``,
``imagecond.corruption``, ``data.image_size`` and ``seed``; never the inference settings) inside the MLflow run
``train_imagecond`` (experiment ``dermclean-diffusion``), writes ``--out`` (a model folder of kind ``unet``
with EMA weights, plus ``mlflow_run.json``) atomically, and ``--metrics``. Checkpoints:
``--checkpoints/<key>/``, resumed when the training params match. The restoration check of the trained
model is the ``evaluate_imagecond`` stage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.methods.imagecond.fit import fit_imagecond, training_section
from dermclean.tracking.diffusion_runs import training_run


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
    device, profile = pick_device(args.device), params["profile"]
    logged = {"profile": profile, "seed": params_seed(params), "data": {"image_size": params["data"]["image_size"]},
              "imagecond": training_section(params, where=str(args.params))}
    with training_run("train_imagecond", logged, args.manifest, device=device, tags={"model": "imagecond"}) as run:
        fit = fit_imagecond(params, args.manifest, checkpoints=args.checkpoints, device=device,
                            progress=not args.no_progress, on_log=lambda step, m: run.log_step("imagecond", step, m),
                            where=str(args.params))
        run.publish(args.out, lambda folder: fit.save(folder, run_id=run.run_id, profile=profile))
    write_json(args.metrics, fit.metrics)
    print(f"imagecond loss {fit.metrics['final_loss']}; model in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
