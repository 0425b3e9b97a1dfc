"""Benchmark: the image-conditioned detector's and the segmenter's maps fused, on held-out families.

Loads a trained image-conditioned model (``--imagecond``, e.g. the ``--work`` of
``lofo_imagecond.py --painter styles``: every family unseen; or two, FOLD0 FOLD1, trained with
``--painter both`` and that fold's families held out) and the segmenters of both folds
(``--segment`` FOLD0 FOLD1, the ``--work`` folders of ``lofo_segment.py --fold 0`` and ``--fold 1``),
and for every fusion in ``--fusions`` (``mean:W``, ``W`` the image-conditioned model's weight, or
``max``) fits the fused detector as the pipeline's fused bundle is fitted
(:meth:`~dermclean.detection.fusion.FusedDetector.fit`: calibrations and threshold on the clean
validation images), then paints every family onto the clean images of ``--split`` from the
``--skip``-th on (``--n-images`` of them; all when omitted). Fold ``k``'s families are scored with
fold ``k``'s segmenter, so every family is held out of both models. Writes one JSON per fusion and
fold into ``--out`` (``<fusion>_f<k>.json``, read by ``lofo_summary.py``; further ``--segment``
pairs, other trainings, ``<fusion>_p<i>_f<k>.json``) and prints the held-out figures per fusion.
``mean:1`` and ``mean:0`` rank pixels as the two detectors alone do (up to float32 rounding). A
``--segment`` entry ``A+B`` is the ensemble of the segmenters ``A`` and ``B`` (their logits averaged, as
``segment.model.members`` trains one), saved once as ``--out``/``ensemble_<i>``. ``--classical W`` fuses
each fused map once more with the classical rules' map (:class:`~dermclean.detection.classical.ClassicalDetector`),
the fused map's weight ``W``: the rules as a third member (tags ``<fusion>_c<W>``).

Choose on ``val`` with ``--skip 64`` (the 64 images every recipe was chosen on left out); report
``test`` once.

    python benchmarks/lofo_fusion.py --manifest data/prepared/manifest.csv --imagecond runs/ic_styles/model \
        --segment runs/seg_f0/model runs/seg_f1/model --skip 64 --out runs/fusion_val
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from dermclean.config import from_dict, load_params, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.families import family_names, fold_exclusion
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.config import DetectionConfig, imagecond_detection_config
from dermclean.detection.storage import build_detector
from dermclean.detection.family_eval import clean_split_images, evaluate_families
from dermclean.detection.fusion import FusedDetector
from dermclean.detection.memo import MapMemo, share_memo
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.methods.segment.fit import join_segmenter_folders
from dermclean.modelio import read_model_config


def _segmenter_folder(spec: Path, out: Path, index: int) -> Path:
    """``spec`` itself, or for ``A+B+...`` the ensemble of those folders saved as ``out/ensemble_<index>``
    (kept for a rerun with the same members)."""
    parts = [Path(p) for p in str(spec).split("+")]
    if len(parts) == 1:
        return spec
    folder = out / f"ensemble_{index}"
    if folder.exists():
        joined = read_model_config(folder).get("meta", {}).get("joined_from")
        if joined != [str(p) for p in parts]:
            raise SystemExit(f"{folder} holds the ensemble of {joined}; expected {[str(p) for p in parts]} "
                             f"(use another --out)")
        return folder
    return join_segmenter_folders(parts, folder)


def _parse_fusion(text: str) -> tuple[str, float]:
    if text == "max":
        return "max", 1.0
    rule, _, weight = text.partition(":")
    if rule != "mean" or not weight:
        raise SystemExit(f"--fusions: {text!r}; expected mean:W (W in [0, 1]) or max")
    return "mean", float(weight)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--imagecond", type=Path, nargs="+", required=True, metavar="FOLDER",
                        help="image-conditioned model folder (every family unseen), or two: trained without fold 0's "
                             "and fold 1's families")
    parser.add_argument("--segment", type=Path, nargs="+", required=True, metavar="FOLD0 FOLD1",
                        help="segmenter model folders trained without fold 0's and fold 1's families; more pairs "
                             "(other trainings) are scored as runs of their own, p1, p2, ...")
    parser.add_argument("--fusions", nargs="+", default=["mean:1", "mean:0", "mean:0.75", "mean:0.5", "mean:0.25",
                                                          "max"])
    parser.add_argument("--classical", type=float, default=None, metavar="W",
                        help="fuse each fused map again with the classical rules' map, the fused map's weight W")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--skip", type=int, default=0, help="leave out the first SKIP clean images of --split")
    parser.add_argument("--n-images", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON files (created)")
    args = parser.parse_args(argv)
    fusions = [_parse_fusion(f) for f in args.fusions]
    if len(args.segment) % 2:
        raise SystemExit(f"--segment: {len(args.segment)} folders; expected pairs (fold 0, fold 1)")
    if len(args.imagecond) > 2:
        raise SystemExit(f"--imagecond: {len(args.imagecond)} folders; expected one, or two (fold 0, fold 1)")
    if args.classical is not None and not 0.0 <= args.classical <= 1.0:
        raise SystemExit(f"--classical {args.classical}; expected a weight in [0, 1]")
    args.out.mkdir(parents=True, exist_ok=True)
    params = load_params(args.params, profile=args.profile)
    seed, device = params_seed(params), pick_device(args.device)
    detection = {k: v for k, v in params["detection"].items() if k in DetectionConfig.__dataclass_fields__}
    imageconds = [build_detector(detector_kind="imagecond", unet_dir=d, config=imagecond_detection_config(params),
                                 device=device) for d in args.imagecond]
    imageconds = imageconds * (2 // len(imageconds))  # one per fold
    folders = [_segmenter_folder(d, args.out, i) for i, d in enumerate(args.segment)]
    segments = [build_detector(detector_kind="segment", unet_dir=d, config=from_dict(DetectionConfig, detection),
                               device=device) for d in folders]
    share_memo([*imageconds, *segments], MapMemo(max_bytes=1 << 40))  # each image mapped once per model, kept
    pairs = [segments[i:i + 2] for i in range(0, len(segments), 2)]
    calib_images = clean_split_images(args.manifest, "val")
    images = clean_split_images(args.manifest, args.split)[args.skip:]
    images = images[:args.n_images] if args.n_images else images
    if not images:
        raise SystemExit(f"--skip {args.skip}: no clean {args.split} images left")
    print(f"{len(calib_images)} clean val images calibrate; {len(images)} clean {args.split} images are painted")
    for (rule, weight), (p, pair) in itertools.product(fusions, enumerate(pairs)):
        tag = (("max" if rule == "max" else f"mean{weight:g}") + (f"_p{p}" if p else "")
               + ("" if args.classical is None else f"_c{args.classical:g}"))
        held_rows: list[dict] = []
        fps = []
        for fold, segment in enumerate(pair):
            fused = pair_fused = FusedDetector((imageconds[fold], segment), weight=weight, rule=rule).fit(
                calib_images, fitted_on="val clean images")
            if args.classical is not None:
                fused = FusedDetector((pair_fused, ClassicalDetector()), weight=args.classical, rule="mean").fit(
                    calib_images, fitted_on="val clean images")
            held = family_names(fold_exclusion(fold))
            result = evaluate_families(fused, images, seed=seed, held_out=held)
            rules = None if fused is pair_fused else [c.to_dict() for c in fused.calibrations]
            write_json(args.out / f"{tag}_f{fold}.json",
                       {"fusion": rule, "weight": weight, "fold": fold, "split": args.split, "skip": args.skip,
                        "n_images": len(images), "classical": args.classical, "threshold": fused.threshold.value,
                        "calibrations": [c.to_dict() for c in pair_fused.calibrations],
                        "classical_calibrations": rules,
                        **result.as_dict()})
            held_rows += [r.__dict__ for r in result.results if r.held_out]
            fps.append(result.fp_area_clean)
        per_kind = {k: np.mean([r["pixel_ap"] for r in held_rows if r["kind"] == k]) for k in OUTLIER_CLASSES}
        print(f"{tag:10s} all {np.mean([r['pixel_ap'] for r in held_rows]):.3f}  tolerant "
              f"{np.mean([r['tolerant_ap'] for r in held_rows]):.3f}  "
              + "  ".join(f"{k} {v:.3f}" for k, v in per_kind.items())
              + f"  flagged clean {100 * fps[0]:.2f} / {100 * fps[1]:.2f} %", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
