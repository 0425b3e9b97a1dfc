"""DVC stage ``shortcut_report``: shortcut evidence for every classifier, on the same images.

Reads ``proof`` and ``seed`` from ``--params`` (profile applied) and calls
:func:`dermclean.proof.report.shortcut_report` over every classifier in ``--classifiers``, with the
raw test split of ``--manifest``, the trap set ``--trap`` and real artifacts (cut along ``--detections``'
masks, removed as in ``--cleaned``, pasted insertions also cleaned by the pipeline's detector
(``detection.pipeline_detector``) and remover (``removal.method``)): Evidently HTML reports and per-image
predictions into ``--out``, everything else (figures with intervals over seeds, the best cleaned
variant chosen on validation, the promote stage's gate inputs) into ``--metrics``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.proof.report import shortcut_report
from dermclean.proof.trap_sets import pipeline_detector
from dermclean.tracking import configure_tracking
from dermclean.values import json_ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--classifiers", type=Path, default=Path("models/classifiers"))
    parser.add_argument("--trap", type=Path, default=Path("data/trap_sets/raw"))
    parser.add_argument("--detections", type=Path, default=Path("data/detections"),
                        help="the detect stage's folder: real artifacts are cut along its masks")
    parser.add_argument("--cleaned", type=Path, default=Path("data/cleaned"),
                        help="the clean stage's folder: removal counterfactuals read cleaned/<removal.method>")
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--detector-imagecond", type=Path, default=Path("models/detector_imagecond"))
    parser.add_argument("--detector-segment", type=Path, default=Path("models/detector_segment"))
    parser.add_argument("--detector-fused", type=Path, default=Path("models/detector_fused"))
    parser.add_argument("--diffusion", type=Path, default=Path("models/diffusion"))
    parser.add_argument("--imagecond", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--definition", type=Path, default=Path("monitoring/evidently/shortcut_report.yaml"))
    parser.add_argument("--out", type=Path, default=Path("reports/shortcut"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/shortcut.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    configure_tracking()
    metrics = shortcut_report(params, manifest=args.manifest, classifiers=args.classifiers, trap_dir=args.trap,
                              definition=args.definition, out_dir=args.out, device=pick_device(args.device),
                              batch_size=args.batch_size, detections=args.detections, cleaned=args.cleaned,
                              detector=pipeline_detector(params, guided=args.detector, imagecond=args.detector_imagecond,
                                                         segment=args.detector_segment, fused=args.detector_fused),
                              remover_models={"inpaint": args.diffusion / "unet", "imagecond": args.imagecond,
                                              "telea": None})
    write_json(args.metrics, json_ready(metrics))
    print(f"reports in {args.out}; metrics in {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
