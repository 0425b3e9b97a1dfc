"""DVC stage ``prepare``: build ``--out`` (manifest.csv; images/ and masks/ when synthetic).

Reads ``data`` and ``seed`` from ``--params`` (profile applied), calls
:func:`dermclean.data.prepare.prepare_dataset` (the output folder is built aside and renamed, so a
failure leaves nothing half-written) and writes split/label counts to ``--metrics``. Paths in
params (``data.folder``) are relative to the folder holding ``--params`` (the repository root).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params
from dermclean.data.prepare import prepare_dataset, summarize_manifest
from dermclean.errors import USER_ERRORS
from dermclean.io import write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/prepare.json"))
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        df = prepare_dataset(params, repo_root=args.params.resolve().parent, out_dir=args.out)
    except USER_ERRORS as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    summary = summarize_manifest(df)
    write_json(args.metrics, summary)
    print(f"prepare: {summary['n_images']} images from {params['data']['source']} -> {args.out / 'manifest.csv'}; "
          f"splits {summary['splits']}, melanoma {summary['melanoma']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
