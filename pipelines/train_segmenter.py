"""DVC stage ``train_segmenter``: the artifact segmenter (per-type maps; :mod:`dermclean.methods.segment`).

Trains it with :func:`dermclean.methods.segment.fit.fit_segmenter` (``segment.model``, ``segment.data``,
``segment.train`` and ``seed``) inside the MLflow run ``train_segmenter`` (experiment
``dermclean-diffusion``), writes ``--out`` (a model folder of kind ``segmenter``, plus
``mlflow_run.json``) atomically, and ``--metrics``. Checkpoints: ``--checkpoints/<key>/``, resumed when
the params match.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params, params_seed
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.methods.segment.fit import fit_segmenter, segment_section
from dermclean.tracking.diffusion_runs import training_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("models/segmenter"))
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints/train_segmenter"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/train_segmenter.json"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    device, profile = pick_device(args.device), params["profile"]
    logged = {"profile": profile, "seed": params_seed(params), "segment": segment_section(params, where=str(args.params))}
    with training_run("train_segmenter", logged, args.manifest, device=device, tags={"model": "segmenter"}) as run:
        fit = fit_segmenter(params, args.manifest, checkpoints=args.checkpoints, device=device,
                            progress=not args.no_progress, on_log=lambda step, m: run.log_step("segmenter", step, m),
                            where=str(args.params))
        run.publish(args.out, lambda folder: fit.save(folder, meta={"run_id": run.run_id, "profile": profile}))
    write_json(args.metrics, fit.metrics)
    print(f"segmenter loss {fit.metrics['final_loss']}; model in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
