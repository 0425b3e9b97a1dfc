"""DVC stage ``trap_clean``: the painted trap train+val images cleaned by every removal method.

Reads ``removal`` from ``--params`` (profile applied) and calls
:func:`dermclean.proof.trap_sets.clean_trap_sets`: each method of ``removal.methods`` fills the masks
of ``--detections`` (``inpaint`` with the guided UNet in ``--diffusion``, ``imagecond`` with
``--imagecond``, ``telea`` without a model) into ``--out/<method>/`` (images/ and manifest.csv).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dermclean.config import load_params
from dermclean.proof.trap_sets import clean_trap_sets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--trap", type=Path, default=Path("data/trap_sets/raw"))
    parser.add_argument("--detections", type=Path, default=Path("data/trap_sets/detections"))
    parser.add_argument("--diffusion", type=Path, default=Path("models/diffusion"))
    parser.add_argument("--imagecond", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--out", type=Path, default=Path("data/trap_sets/cleaned"))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    models = {"inpaint": args.diffusion / "unet", "imagecond": args.imagecond, "telea": None}
    found = clean_trap_sets(params, args.trap, args.detections, args.out, models=models, device=args.device)
    print(f"trap_clean: {', '.join(found) or 'no trap set'} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
