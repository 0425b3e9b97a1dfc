"""DVC stage ``clean``: one cleaned dataset per removal method, and the removal metrics.

1. For each method in ``removal.methods`` (``inpaint``: RePaint with the guided model in
   ``--diffusion``; ``imagecond``: the model in ``--imagecond``, sampling with ``imagecond.sample``;
   ``telea``: OpenCV), clean every manifest image inside its detected mask
   (``--detections/masks/<image_id>.png``, dilated by ``removal.dilation``) into ``--out/<method>/``
   (images/, masks/, manifest.csv with provenance). The raw data is only read.
2. Removal metrics on the ``test`` split's clean images with painted artifacts (training styles and
   held-out styles apart): PSNR/SSIM inside and outside the mask per method and type -> ``--metrics``;
   before/after grids -> ``--plots``; both logged to MLflow (experiment ``dermclean-removal``).

Both are :func:`dermclean.removal.stages.clean_and_evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.removal.engine import removal_config
from dermclean.removal.stages import clean_and_evaluate
from dermclean.tracking.removal_runs import clean_run, log_clean


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
    config = removal_config(params, seed=params_seed(params))
    device = str(pick_device(args.device))
    models = {"inpaint": args.diffusion / "unet", "imagecond": args.imagecond, "telea": None}
    logged = {"profile": params["profile"], "seed": config.seed, "removal": params["removal"],
              "imagecond": {"sample": params["imagecond"].get("sample")}}
    with clean_run(logged, [args.manifest.parent, args.detections, args.diffusion, args.imagecond], device=device):
        metrics = clean_and_evaluate(args.manifest, args.detections, args.out, args.plots, models=models,
                                     config=config, device=device, progress=not args.no_progress)
        log_clean(metrics["evaluation"], args.plots)
    write_json(args.metrics, metrics)
    for method, r in metrics["evaluation"]["methods"].items():
        a = r["all"]["all"]
        print(f"{method}: PSNR in {a['psnr_in']:.2f} dB / out {a['psnr_out']:.2f} dB, SSIM in {a['ssim_in']:.3f}, "
              f"{r['seconds_per_image']:.3f} s/img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
