"""DVC stage ``detect``: build the detector bundles, fit thresholds on validation, detect over the manifest.

Reads ``detection`` (profile applied, then ``sweep_best.yaml`` beside params.yaml when present),
``imagecond.sample`` and ``seed``; :mod:`dermclean.detection.bundles` builds the guided bundle from
``--diffusion`` (``unet/`` + optional ``noisy_classifier/``) into ``--out-model`` and the
image-conditioned one from ``--imagecond`` into ``<out-model>_imagecond`` (the segmenter's from
``--segmenter`` into ``<out-model>_segment``, and with both the fused one into ``<out-model>_fused``),
fits and saves them, and
writes the ``detect`` contract over every manifest image to ``--out`` with the bundle
``detection.pipeline_detector`` names. ``--metrics`` gets the figures; the MLflow run
(``dermclean-detector``) logs them with both bundles.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.detection.bundles import build_bundles, fit_and_detect
from dermclean.io import write_json
from dermclean.tracking.detector_runs import log_detect_run
from dermclean.values import json_ready


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--diffusion", type=Path, required=True)
    p.add_argument("--imagecond", type=Path, default=None)
    p.add_argument("--out-model", type=Path, required=True)
    p.add_argument("--out-model-imagecond", type=Path, default=None)
    p.add_argument("--segmenter", type=Path, default=None)
    p.add_argument("--out-model-segment", type=Path, default=None)
    p.add_argument("--out-model-fused", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    params = load_params(args.params, overrides=[args.params.parent / "sweep_best.yaml"])
    seed = params_seed(params)
    bundles, chosen = build_bundles(params, diffusion=args.diffusion, imagecond=args.imagecond,
                                    out_model=args.out_model, out_model_imagecond=args.out_model_imagecond,
                                    segmenter=args.segmenter, out_model_segment=args.out_model_segment,
                                    out_model_fused=args.out_model_fused, device=args.device)
    metrics = fit_and_detect(bundles, chosen, args.manifest, args.out, seed=seed,
                             meta={"profile": params.get("profile"), "seed": seed, "manifest": str(args.manifest)})
    log_detect_run(params, args.manifest, {name: b.out for name, b in bundles.items()}, metrics)
    write_json(args.metrics, json_ready(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
