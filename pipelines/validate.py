"""DVC stage ``validate``: the Great Expectations gate over the prepared manifest.

Runs the suite ``--suite`` (monitoring/expectations/manifest.json) plus the image checks of
:func:`dermclean.data.validate.validate_manifest` with ``data.bounds``. On success writes the report
(statistics, no failures) to ``--out``. On failure prints the failing rows and why on stderr, writes
NOTHING (so DVC never records a failed gate as an output) and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from dermclean.config import load_params
from dermclean.data.validate import validate_manifest
from dermclean.errors import USER_ERRORS
from dermclean.io import write_json


def read_raw_manifest(path: Path) -> pd.DataFrame:
    """The manifest as text (empty cells <NA>), so that the gate reports bad values by row."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; run the prepare stage first")
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--suite", type=Path, default=Path("monitoring/expectations/manifest.json"))
    parser.add_argument("--out", type=Path, default=Path("reports/validation.json"))
    args = parser.parse_args(argv)
    try:
        bounds = load_params(args.params)["data"]["bounds"]
        result = validate_manifest(read_raw_manifest(args.manifest), args.manifest, suite_path=args.suite,
                                   min_size=int(bounds["min_size"]), max_size=int(bounds["max_size"]))
    except USER_ERRORS as exc:
        print(f"validate: {exc}", file=sys.stderr)
        return 1
    if not result.success:
        print(f"validate: {result.summary(where=str(args.manifest))}", file=sys.stderr)
        return 1
    write_json(args.out, {"manifest": str(args.manifest), "suite": str(args.suite), **result.to_dict()})
    stats = result.statistics
    print(f"validate: {args.manifest} passed {stats['successful_expectations']}/{stats['evaluated_expectations']} "
          f"expectations over {stats['n_rows']} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
