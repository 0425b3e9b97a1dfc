"""DVC stage ``evaluate_imagecond``: the image-conditioned model's restoration check on validation images.

Paints the ``val`` split's clean images with training-style and held-out-style artifacts and restores them
with the model in ``--imagecond`` (``imagecond.sample``, ``imagecond.evaluate``, ``removal.dilation``,
``seed``) and with Telea (:func:`dermclean.removal.stages.evaluate_imagecond`); writes ``--metrics``
(``val_removal``: PSNR/SSIM inside and outside the mask per method and style group) and logs them to the
MLflow run ``evaluate_imagecond`` (experiment ``dermclean-diffusion``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.removal.stages import evaluate_imagecond
from dermclean.tracking.diffusion_runs import log_imagecond_evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--imagecond", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/imagecond_eval.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    device = str(pick_device(args.device))
    metrics = evaluate_imagecond(params, args.manifest, args.imagecond, device=device)
    logged = {"profile": params["profile"], "seed": params_seed(params),
              "imagecond": {k: params["imagecond"].get(k) for k in ("sample", "evaluate")},
              "removal": {"dilation": params["removal"]["dilation"]}}
    log_imagecond_evaluation(logged, args.manifest, args.imagecond, metrics, device=device)
    write_json(args.metrics, metrics)
    print(f"imagecond val removal {json.dumps(metrics['val_removal'])[:400]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
