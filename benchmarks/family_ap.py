"""Benchmark: pixel AP of a detector's maps per renderer family (data.families), held-out families apart.

Paints every family of ruler, ink and patches onto the clean images (labels: none of the three) of
``--split`` and reports, per family, the strict pixel AP and the boundary-tolerant AP (1 px), the
false-positive area of the fitted mask on the same images before painting, and the mean and worst
family over the families the detector never saw in training (``--held-out-fold K``: the families
``data.families.fold_exclusion(K)`` names, the ones to pass as ``imagecond.corruption.exclude_families`` when
training) and over the others. Choose on ``val``; report ``test`` once.

    python benchmarks/family_ap.py --detector models/detector_imagecond --split val
    python benchmarks/family_ap.py --classical --split val          # the colour/morphology rules
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dermclean.data.families import family_names, fold_exclusion
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.storage import load_detector
from dermclean.detection.family_eval import clean_split_images, evaluate_families
from dermclean.detection.threshold import Threshold
from dermclean.env import disable_telemetry
from dermclean.io import write_json


def main(argv: list[str] | None = None) -> int:
    disable_telemetry()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector_imagecond"))
    parser.add_argument("--classical", action="store_true", help="score the classical rules instead")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--n-images", type=int, default=32, help="clean images painted per family (0 = all)")
    parser.add_argument("--held-out-fold", type=int, default=None, help="families of this fold were held out")
    parser.add_argument("--tolerance", type=int, default=1, help="px, for the boundary-tolerant AP")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    detector = ClassicalDetector() if args.classical else load_detector(args.detector, device=args.device)
    if args.classical:  # the rules' own threshold is fitted in evaluate_detection; here: the map's upper tail
        detector.threshold = Threshold(value=0.5, fpr_budget=0.01, n_images=0, n_pixels=0)
    held = family_names(fold_exclusion(args.held_out_fold)) if args.held_out_fold is not None else []
    images = clean_split_images(args.manifest, args.split, args.n_images or None)
    result = evaluate_families(detector, images, seed=args.seed, tolerance_px=args.tolerance, held_out=held)
    for r in result.results:
        mark = " (held out)" if r.held_out else ""
        print(f"{r.kind:8s} {r.family:16s} pixel AP {r.pixel_ap:.3f}  tolerant AP {r.tolerant_ap:.3f}{mark}")
    print(f"false-positive area on the clean images: {100 * result.fp_area_clean:.2f} %")
    for name, report in (("held-out families", result.held_out_report), ("seen families", result.seen_report)):
        if report is not None:
            print(f"{name}: mean tolerant AP {report.mean:.3f}, worst {report.worst.kind}/{report.worst.family} "
                  f"{report.worst.value:.3f}")
    if args.out:
        write_json(args.out, {"split": args.split, "n_images": len(images), "held_out_fold": args.held_out_fold,
                              **result.as_dict()})
    else:
        print(json.dumps({"fp_area_clean": result.fp_area_clean}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
