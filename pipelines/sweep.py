"""Sweep the detector's noise level L, guidance scale s, guidance kind and DDIM steps (Ray Tune + Optuna).

Runs :func:`dermclean.sweep.run_sweep` on the detector bundle ``--detector`` and the validation split
of ``--manifest``; writes ``--best`` (``sweep_best.yaml``, which overrides params.yaml's detection
values for the detect stage), ``--out/summary.json`` (best config, every trial, overhead),
``--out/threshold.json`` and ``--out/sweep_ap.png``; MLflow: a parent run ``sweep-<timestamp>`` in
``dermclean-detector`` with one child run per trial.

Examples::

    python pipelines/sweep.py --params params.yaml --manifest data/prepared/manifest.csv \\
        --detector models/detector --out reports/sweep --best sweep_best.yaml
    RAY_ADDRESS=10.0.0.5:6379 python pipelines/sweep.py ...      # on an existing Ray cluster
    python pipelines/sweep.py ... --resume                          # continue an interrupted sweep
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dermclean.env import disable_telemetry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default=None, help="params profile (default: `profile:` in params.yaml)")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--detector", type=Path, default=Path("models/detector"))
    parser.add_argument("--out", type=Path, default=Path("reports/sweep"))
    parser.add_argument("--best", type=Path, default=Path("sweep_best.yaml"))
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: params sweep.address, "
                                                        "then RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--storage", type=Path, default=None, help="Ray Tune storage folder (default: "
                                                                   "params sweep.storage_path)")
    parser.add_argument("--resume", action="store_true",
                        help="resume the newest unfinished sweep with the same inputs (error if there is none)")
    parser.add_argument("--fresh", action="store_true",
                        help="always start a new sweep (default: resume a matching unfinished one if any)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... inside trials (default: CUDA when available)")
    args = parser.parse_args(argv)

    disable_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dermclean.sweep import SweepError
    from dermclean.sweep.run import sweep_from_files

    try:
        result = sweep_from_files(params_path=args.params, manifest_path=args.manifest, detector_dir=args.detector,
                                  out_dir=args.out, best_path=args.best, address=args.address, resume=args.resume,
                                  fresh=args.fresh, profile=args.profile, storage_path=args.storage,
                                  device=args.device)
    except SweepError as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 1
    best, timing = result.best, result.timing
    print(f"best of {len(result.trials)} trials: {best.detection} pixel AP {best.pixel_ap:.4f} "
          f"(default {result.default.pixel_ap:.4f})" if result.default else
          f"best of {len(result.trials)} trials: {best.detection} pixel AP {best.pixel_ap:.4f}")
    print(f"overhead {100 * timing.overhead_fraction:.1f}% of slot time "
          f"({100 * timing.overhead_vs_trial_time:.1f}% of summed trial time); wrote {result.best_params_path}, "
          f"{result.summary_path}, {result.figure_path}; MLflow parent run {result.parent_run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
