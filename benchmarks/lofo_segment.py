"""Benchmark: the artifact segmenter with renderer families held out, against real human labels.

Trains the segmenter of ``--profile`` (its ``segment`` section, ``--steps`` overriding the training
steps) with the families of fold ``--fold`` never painted (``data.families.fold_exclusion``; ``-1``
holds none out), fits the pixel threshold on the clean validation images at ``detection.fpr_budget``,
then reports on ``--split``:

- pixel AP per family (each family painted onto ``--n-images`` clean images), held-out families
  apart from the ones it trained on (:func:`dermclean.detection.family_eval.evaluate_families`);
- per-type image AUROC on the human labels with bootstrap CIs, and the flagged area on the clean
  images per acquisition effect (:func:`dermclean.detection.family_eval.real_label_report`).

With ``--paste-from MODEL`` a share ``--paste-fraction`` of the painted views also receives a real
artifact of ``--paste-kinds``, cut from the training images along MODEL's confident maps
(:func:`dermclean.methods.segment.real_bank.confident_bank`); the same flags must be given again to
reuse the trained model with ``--split test``.

Choose on ``val``; report ``test`` once.

    python benchmarks/lofo_segment.py --manifest data/prepared/manifest.csv --fold 0 --work runs/seg_f0 --out seg_f0.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dermclean.config import from_dict, load_params, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.families import family_names, fold_exclusion
from dermclean.detection.config import DetectionConfig
from dermclean.detection.storage import build_detector
from dermclean.detection.evaluate import fit_threshold
from dermclean.detection.family_eval import clean_split_images, evaluate_families, real_label_report
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.methods.segment.fit import fit_segmenter
from dermclean.methods.segment.real_bank import confident_bank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--fold", type=int, default=0, help="family fold held out of training (-1: none)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    parser.add_argument("--no-weak", action="store_true",
                        help="leave out the weakly labelled real images' multiple-instance share (weak_fraction 0)")
    parser.add_argument("--paste-from", type=Path, default=None,
                        help="segmenter folder whose confident maps cut the real cut-outs of --paste-kinds "
                             "(with --paste-fraction)")
    parser.add_argument("--paste-kinds", nargs="+", default=["patches"], choices=list(OUTLIER_CLASSES))
    parser.add_argument("--paste-fraction", type=float, default=0.25)
    parser.add_argument("--paste-threshold", type=float, default=0.5)
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--work", type=Path, required=True, help="folder for checkpoints and the model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(args.params, profile=args.profile)
    seed = params_seed(params)
    held = fold_exclusion(args.fold) if args.fold >= 0 else {}
    held_names = family_names(held)
    device = pick_device(args.device)
    banks = []
    if args.paste_from:
        banks = [confident_bank(args.paste_from, args.manifest, kind, threshold=args.paste_threshold, device=device)
                 for kind in args.paste_kinds]
        params["segment"]["data"] = {**params["segment"].get("data", {}), "real_paste_fraction": args.paste_fraction}
        for b in banks:
            print(f"real {b.artifact}: {len(b.cutouts)} cut-outs from {b.n_source_images} training images")
    began = time.perf_counter()
    fit = fit_segmenter(params, args.manifest, checkpoints=args.work / "checkpoints", device=device,
                        exclude_families=held_names, weak=not args.no_weak, steps=args.steps, banks=banks)
    train_seconds = time.perf_counter() - began
    fit.save(args.work / "model", meta={"fold": args.fold, "exclude_families": held_names})
    detection = {k: v for k, v in params["detection"].items() if k in DetectionConfig.__dataclass_fields__}
    detector = build_detector(detector_kind="segment", unet_dir=args.work / "model",
                              config=from_dict(DetectionConfig, detection), device=device)
    detector.threshold = fit_threshold(detector, args.manifest, split="val", seed=seed)
    families = evaluate_families(detector, clean_split_images(args.manifest, args.split, args.n_images), seed=seed,
                                 held_out=held_names)
    real = real_label_report(detector, args.manifest, args.split, seed=seed)
    for r in families.results:
        print(f"{r.kind:8s} {r.family:16s} pixel AP {r.pixel_ap:.3f}  tolerant {r.tolerant_ap:.3f}"
              f"{'  (held out)' if r.held_out else ''}")
    for name, a in real["image_auroc"].items():
        print(f"image AUROC {name:8s} {a['auroc']:.3f} [{a['low']:.3f}, {a['high']:.3f}]")
    print(f"flagged area on clean images: {real['fp_area']}; train {train_seconds:.0f} s")
    paste = {"paste_from": str(args.paste_from), "paste_fraction": args.paste_fraction,
             "paste_threshold": args.paste_threshold,
             "paste_cutouts": {b.artifact: len(b.cutouts) for b in banks}} if args.paste_from else {}
    write_json(args.out, {"profile": args.profile, "fold": args.fold, "weak": not args.no_weak, **paste, **fit.metrics,
                          "train_seconds": train_seconds, "split": args.split, "threshold": detector.threshold.value,
                          **families.as_dict(), "real": real})
    return 0


if __name__ == "__main__":
    sys.exit(main())
