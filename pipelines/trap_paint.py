"""DVC stage ``trap_paint``: the controlled shortcut painted once from the raw manifest.

Reads ``proof`` and ``seed`` from ``--params`` (profile applied) and calls
:func:`dermclean.proof.trap_sets.paint_trap_set`, which writes ``--out`` (images, masks, the biased
and trap manifests, ``trap.json``; layout in :mod:`dermclean.proof.trap`) as one folder, atomically.
With ``proof.trap_artifact: null`` there is no trap set and the folder holds only ``trap.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params
from dermclean.io import atomic_path, write_json
from dermclean.proof.trap_sets import paint_trap_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--out", type=Path, default=Path("data/trap_sets/raw"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if not params["proof"].get("trap_artifact"):
        with atomic_path(args.out, owner="trap") as tmp:
            tmp.mkdir()
            write_json(tmp / "trap.json", {"artifact": None})
        print("trap_paint: proof.trap_artifact is null; no trap set")
        return 0
    trap = paint_trap_set(params, args.manifest, args.out)
    print(f"trap_paint: {len(trap.manifest)} biased and {len(trap.trap)} trap rows -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
