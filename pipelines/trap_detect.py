"""DVC stage ``trap_detect``: one detection pass over the painted trap train+val images.

The bundle is the one ``detection.pipeline_detector`` names (``--detector`` for guided,
``--detector-imagecond`` for imagecond), the one whose masks the ``clean`` stage used;
:func:`dermclean.proof.trap_sets.detect_trap_set` writes the ``detect`` contract to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params
from dermclean.proof.trap_sets import detect_trap_set, pipeline_detector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--trap", type=Path, default=Path("data/trap_sets/raw"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--detector-imagecond", type=Path, default=Path("models/detector_imagecond"))
    parser.add_argument("--detector-segment", type=Path, default=Path("models/detector_segment"))
    parser.add_argument("--detector-fused", type=Path, default=Path("models/detector_fused"))
    parser.add_argument("--out", type=Path, default=Path("data/trap_sets/detections"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    detector = pipeline_detector(params, guided=args.detector, imagecond=args.detector_imagecond,
                                 segment=args.detector_segment, fused=args.detector_fused)
    print(f"trap_detect: detecting on the painted train/val images with {detector}", flush=True)
    detect_trap_set(args.trap, detector, args.out, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
