"""Benchmark: `dermclean audit` of the real ISIC set with a segment detector, against its human labels.

Builds the segment detector bundle from a trained segmenter (``--segmenter``: the ``train_segmenter``
stage's ``models/segmenter``, or ``benchmarks/lofo_segment.py --fold -1``'s ``<work>/model``) as the
``detect`` stage does: pixel threshold, image score and per-type operating points fitted on the
prepared manifest's validation split. Then reports, for the same bundle:

- the audit of every image of ``--images`` against ``--labels`` (``flags.csv``, ``shortcut_risk.csv``,
  ``report.html`` under ``--out``), whose ``audit.json`` also holds the risk table from the human
  labels and the flags' agreement with them (all labelled images, training images included);
- the detector's per-type image AUROC on the test split's human labels alone
  (:func:`dermclean.detection.family_eval.real_label_report`), the figure to compare the agreement with.

    python benchmarks/audit_real.py --segmenter models/segmenter --manifest data/prepared/manifest.csv \\
        --images ../shared/data/isic2017-train-256/images --labels ../shared/data/isic2017-train-256/labels.csv \\
        --bundle runs/audit_real/detector_segment --out runs/audit_real/report
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dermclean.audit import run_audit
from dermclean.config import load_params, params_seed
from dermclean.detection.bundles import segment_config
from dermclean.detection.config import detection_config
from dermclean.detection.storage import build_detector, save_detector
from dermclean.detection.evaluate import fit_on_validation, fit_operating_points
from dermclean.detection.family_eval import real_label_report
from dermclean.io import read_json, write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--segmenter", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True, help="prepared manifest of the same images, with splits")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True, help="where to save the fitted segment bundle")
    parser.add_argument("--out", type=Path, required=True, help="the audit's report folder")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params, profile=args.profile)
    seed = params_seed(params)
    detector = build_detector(detector_kind="segment", unet_dir=args.segmenter,
                              config=segment_config(detection_config(params)[0]), device=args.device)
    detector.threshold, detector.image_scorer = fit_on_validation(detector, args.manifest, split="val", seed=seed)
    detector.operating_points = fit_operating_points(detector, args.manifest, split="val")
    save_detector(detector, args.bundle, meta={"profile": args.profile, "manifest": str(args.manifest)})
    began = time.perf_counter()
    result = run_audit(args.images, args.labels, args.out, model=str(args.bundle), overwrite=True)
    seconds = time.perf_counter() - began
    summary = read_json(args.out / "audit.json")
    test = real_label_report(detector, args.manifest, "test", seed=seed)
    print(result.risk.to_string(index=False))
    for kind, a in summary.get("agreement", {}).items():
        t = test["image_auroc"][kind]
        print(f"{kind:8s} flags vs human labels (all images): AUROC {a['auroc']:.3f} [{a['low']:.3f}, {a['high']:.3f}] "
              f"precision {a['precision']:.3f} recall {a['recall']:.3f}; detector on test: "
              f"{t['auroc']:.3f} [{t['low']:.3f}, {t['high']:.3f}]")
    write_json(args.out.with_suffix(".json"), {"audit_seconds": seconds, "n_images": summary["n_images"],
                                               "risk": summary["risk"], "human_risk": summary.get("human_risk"),
                                               "agreement": summary.get("agreement"), "test": test,
                                               "operating_points": summary["operating_points"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
