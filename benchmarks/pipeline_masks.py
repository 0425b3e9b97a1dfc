"""Benchmark helper: the pipeline's masks over a manifest from the two trained map models, without the guided model.

The ``detect`` stage builds its bundles from every model the pipeline trains, the guided diffusion model
and its noise-aware classifier included. This builds only what the ``clean`` stage's masks need when
the detector is not the guided one: the image-conditioned bundle from ``--imagecond``, the segment
bundle from ``--segmenter`` and their fused bundle (:func:`dermclean.detection.bundles.build_bundles`
without the diffusion model, fitted on the manifest's validation split as the stage fits them), then writes the ``detect`` contract over every
manifest image with ``--bundle`` (default: the profile's ``detection.pipeline_detector``) into
``--out/detections`` (the bundles into ``--out/detector_*``). Without the noise-aware classifier the
image-conditioned bundle scores images from its maps (``image_score: auto``), so the image scores and
flags differ from the pipeline's; the maps and masks do not.

    python benchmarks/pipeline_masks.py --params params.yaml --profile cpu --manifest data/prepared/manifest.csv \\
        --imagecond models/imagecond --segmenter models/segmenter --out runs/masks_fused
    python pipelines/clean.py --params <params with profile cpu> --manifest data/prepared/manifest.csv \\
        --detections runs/masks_fused/detections --imagecond models/imagecond --out runs/cleaned
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.detection.bundles import build_bundles, fit_and_detect
from dermclean.detection.config import detection_config
from dermclean.env import pick_device
from dermclean.errors import ConfigError, DermcleanError, OutputError
from dermclean.io import write_json
from dermclean.values import json_ready

BUNDLES = ("fused", "imagecond", "segment")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--imagecond", type=Path, required=True, help="the train_imagecond stage's model folder")
    parser.add_argument("--segmenter", type=Path, required=True, help="the train_segmenter stage's model folder")
    parser.add_argument("--bundle", choices=BUNDLES, default=None,
                        help="the bundle whose masks are written (default: the profile's pipeline detector)")
    parser.add_argument("--out", type=Path, required=True, help="new folder: detections/, detector_*/, metrics.json")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        if args.out.exists():
            raise OutputError(f"{args.out} exists; expected a new folder")
        params = load_params(args.params, profile=args.profile)
        _, chosen = detection_config(params)
        chosen = args.bundle or chosen
        if chosen not in BUNDLES:
            raise ConfigError(f"profile {args.profile!r} detects with {chosen!r}, which needs the guided model (the "
                              f"detect stage); expected one of {', '.join(BUNDLES)} or --bundle")
        bundles, chosen = build_bundles(params, diffusion=None, imagecond=args.imagecond, segmenter=args.segmenter,
                                        out_model=args.out / "detector", device=str(pick_device(args.device)),
                                        chosen=chosen)
        seed = params_seed(params)
        metrics = fit_and_detect(bundles, chosen, args.manifest, args.out / "detections", seed=seed,
                                 meta={"profile": args.profile, "seed": seed, "manifest": str(args.manifest)})
    except DermcleanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json(args.out / "metrics.json", json_ready(metrics))
    print(f"{chosen} threshold {metrics[f'{chosen}_threshold']:.4f}, mean mask area {metrics['mean_mask_area']:.4f}, "
          f"{metrics['seconds_per_image']:.3f} s/image; detections in {args.out / 'detections'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
