"""DVC stage ``promote``: register trained models in MLflow and set ``champion`` / ``challenger``.

Reads each trained model's ``mlflow_run.json`` under ``--models`` and the metrics files in
``--metrics-dir`` (``detection_eval.json``, ``shortcut.json``; layouts in
:mod:`dermclean.tracking.promotion.inputs`), applies the gates of ``params.yaml`` ``promote``
(:func:`dermclean.tracking.promotion.promote`) and writes the decisions to ``--out`` atomically.
Rerunning with the same inputs changes nothing in the registry or the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params
from dermclean.io import write_json
from dermclean.tracking import configure_tracking
from dermclean.tracking.promotion import PromotionInputError, promote


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("reports/promotion.json"))
    args = parser.parse_args(argv)
    gates = load_params(args.params).get("promote")
    uri = configure_tracking()
    try:
        report = promote(gates, models_dir=args.models, metrics_dir=args.metrics_dir)
    except PromotionInputError as exc:
        print(f"promote: {exc}", file=sys.stderr)
        return 1
    report["tracking_uri"] = uri
    write_json(args.out, report)
    for name, entry in report["registered_models"].items():
        champion, challenger = (f"v{entry[a]}" if entry[a] else "none" for a in ("champion", "challenger"))
        print(f"{name}: champion {champion}, challenger {challenger}")
    print(f"decisions written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
