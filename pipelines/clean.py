"""DVC stage ``clean``: one cleaned dataset per removal method, and the removal metrics.

1. For each method in ``removal.methods`` (``inpaint``: RePaint with the guided model in
   ``--diffusion``; ``imagecond``: the model in ``--imagecond``; ``telea``: OpenCV), clean every
   manifest image inside its detected mask (``--detections/masks/<image_id>.png``, dilated by
   ``removal.dilation``) into ``--out/<method>/`` (images/, masks/, manifest.csv with provenance)
   with :func:`dermclean.removal.build_cleaned_dataset`. The raw data is only read.
2. :func:`dermclean.removal.evaluate_removal` on the ``test`` split's clean images with painted
   artifacts (training styles and held-out styles apart): PSNR/SSIM inside and outside the mask per
   method and type -> ``--metrics``; before/after grids -> ``--plots``; both logged to MLflow
   (experiment ``dermclean-removal``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import mlflow

from dermclean.config import from_dict, load_params, params_seed
from dermclean.env import pick_device
from dermclean.io import atomic_path, write_json
from dermclean.removal import build_cleaned_dataset, evaluate_removal
from dermclean.removal.engine import RemovalConfig
from dermclean.tracking import configure_tracking, start_run
from dermclean.values import flat_metrics

EXPERIMENT = "dermclean-removal"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--detections", type=Path, default=Path("data/detections"))
    parser.add_argument("--diffusion", type=Path, default=Path("models/diffusion"))
    parser.add_argument("--imagecond", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--out", type=Path, default=Path("data/cleaned"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/clean.json"))
    parser.add_argument("--plots", type=Path, default=Path("reports/removal"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    seed = params_seed(params)
    config = from_dict(RemovalConfig, {"seed": seed, **params["removal"]}, where=f"{args.params}: removal")
    device = str(pick_device(args.device))
    models = {"inpaint": args.diffusion / "unet", "imagecond": args.imagecond, "telea": None}

    configure_tracking()
    run_params = {"profile": params["profile"], "seed": seed, "removal": params["removal"]}
    with start_run(EXPERIMENT, "clean", params=run_params,
                   data_paths=[args.manifest.parent, args.detections, args.diffusion, args.imagecond],
                   tags={"device": device}):
        datasets = {}
        if args.out.exists():  # a DVC output: rebuilt whole; each method's folder is written atomically
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for method in config.methods:
            df = build_cleaned_dataset(args.manifest, args.detections, args.out / method, method=method,
                                       model_dir=models[method], dilation=config.dilation, device=device,
                                       batch_size=config.batch_size, config=config,
                                       progress=not args.no_progress)
            area = df["mask_area"].astype(float)
            datasets[method] = {"n_images": len(df), "model_version": str(df["model_version"].iloc[0]),
                                "mean_mask_area": float(area.mean()),
                                "images_with_mask": int((area > 0).sum())}
            print(f"clean: {method}: {len(df)} images, mean mask area {area.mean():.4f} -> {args.out / method}")
        with atomic_path(args.plots) as plots:
            plots.mkdir()
            evaluation = evaluate_removal(args.manifest, split="test", methods=config.methods,
                                          guided_model=models["inpaint"], imagecond_model=models["imagecond"],
                                          config=config, device=device, seed=seed, plots_dir=plots)
        metrics = {"datasets": datasets, "evaluation": evaluation}
        mlflow.log_metrics(flat_metrics(evaluation, prefix="eval."))
        mlflow.log_artifacts(str(args.plots), artifact_path="removal_figures")
    write_json(args.metrics, metrics)
    for method, r in evaluation["methods"].items():
        a = r["all"]["all"]
        print(f"{method}: PSNR in {a['psnr_in']:.2f} dB / out {a['psnr_out']:.2f} dB, SSIM in {a['ssim_in']:.3f}, "
              f"{r['seconds_per_image']:.3f} s/img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
