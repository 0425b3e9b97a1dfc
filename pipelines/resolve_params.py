"""DVC stage ``resolve_params``: the effective parameters, the file every other stage lists its params from.

Writes ``--out``: ``params.yaml`` with the selected profile merged in and ``sweep_best.yaml`` (beside it,
when present) applied last, exactly what :func:`dermclean.config.load_params` gives the stages. Each stage
lists the keys it reads from this file, so a change re-runs exactly the stages whose effective values
changed, whichever profile or file it was made in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from dermclean.config import load_params
from dermclean.io import atomic_path

HEADER = "# Written by the resolve_params stage from params.yaml (profile applied) and sweep_best.yaml; do not edit.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("params.resolved.yaml"))
    args = parser.parse_args(argv)
    params = load_params(args.params, overrides=[args.params.parent / "sweep_best.yaml"])
    with atomic_path(args.out) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump(params, sort_keys=False))
    print(f"resolve_params: profile {params['profile']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
