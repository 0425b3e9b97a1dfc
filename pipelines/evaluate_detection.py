"""DVC stage ``evaluate_detection``: every detector side by side on the test split (thresholds from val).

Calls :func:`dermclean.detection.compare.compare_detectors` on ``--detector`` (and its variants, the
classical rules, ``--detector-imagecond``, ``--detector-segment``); writes ``--out-metrics`` (one block per detector, plus
the gated bundles' validation figures) and a copy beside the figures in ``--plots``; the MLflow run
(``dermclean-detector``) logs the figures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.detection.compare import compare_detectors
from dermclean.io import write_json
from dermclean.tracking.detector_runs import log_evaluation_run
from dermclean.values import json_ready


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--detector", type=Path, required=True)
    p.add_argument("--detector-imagecond", type=Path, default=None)
    p.add_argument("--detector-segment", type=Path, default=None)
    p.add_argument("--detector-fused", type=Path, default=None)
    p.add_argument("--out-metrics", type=Path, required=True)
    p.add_argument("--plots", type=Path, required=True)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    params = load_params(args.params, overrides=[args.params.parent / "sweep_best.yaml"])
    found = compare_detectors(args.detector, args.detector_imagecond, args.manifest, args.plots,
                              seed=params_seed(params), device=args.device, detector_segment=args.detector_segment,
                              detector_fused=args.detector_fused)
    write_json(args.plots / "detection_eval.json", json_ready(found.metrics))
    log_evaluation_run(params, args.manifest, {n: r.metrics for n, r in found.results.items()}, found.summary,
                       found.figures)
    write_json(args.out_metrics, json_ready(found.metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
