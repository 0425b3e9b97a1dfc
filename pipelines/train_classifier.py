"""DVC stage ``train_classifier``: diagnosis classifiers on raw and cleaned data, several seeds.

Reads ``classifier``, ``proof``, ``data.image_size`` and ``seed`` from ``--params`` (profile applied)
and calls :func:`dermclean.classifier.fit.train_classifiers`: natural classifiers on the prepared
manifest and on every ``--cleaned/<method>/`` dataset, trap classifiers on ``--trap`` and on every
``--trap-cleaned/<method>/`` set; model folders under ``--out``, one MLflow run each, validation
figures per classifier in ``--metrics``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.classifier.fit import train_classifiers
from dermclean.config import load_params
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.tracking import configure_tracking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--cleaned", type=Path, default=Path("data/cleaned"))
    parser.add_argument("--trap", type=Path, default=Path("data/trap_sets/raw"))
    parser.add_argument("--trap-cleaned", type=Path, default=Path("data/trap_sets/cleaned"))
    parser.add_argument("--out", type=Path, default=Path("models/classifiers"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/classifier.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    configure_tracking()
    trap = args.trap if (args.trap / "manifest.csv").is_file() else None
    metrics = train_classifiers(params, manifest=args.manifest, cleaned=args.cleaned, trap=trap,
                                trap_cleaned=args.trap_cleaned, out_dir=args.out, device=pick_device(args.device),
                                progress=not args.no_progress)
    write_json(args.metrics, metrics)
    print(f"classifiers written to {args.out}; metrics in {args.metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
