"""Peak memory and time of ``dermclean clean`` over a folder of N images (Telea, given masks).

Writes N RGB PNGs (``--size`` px) and 0/255 masks into a scratch folder, runs the real command line
in a child process, and reports the child's peak resident memory (``ru_maxrss``) and wall time.
``--src DIR`` runs another source tree of dermclean (e.g. a checkout of an older commit) with the
same interpreter, for a before/after comparison.

    python benchmarks/clean_memory.py --n-images 2000
    python benchmarks/clean_memory.py --n-images 2000 --src /tmp/other-checkout/src
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RUN_CLI = "import sys; from dermclean.cli import app; sys.argv[0] = 'dermclean'; app()"


def make_folder(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """``root/images/img<i>.png`` (smooth colour fields with noise) and ``root/masks/img<i>.png``."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = rng.uniform(60, 200, 3)
        img = base + 40 * np.stack([np.sin(6 * xx + i), np.cos(5 * yy), xx * yy], -1) + rng.normal(0, 4, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(images / f"img{i:05d}.png", compress_level=1)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(0, size // 2, 2)
        mask[y:y + size // 8, x:x + size // 3] = 255
        Image.fromarray(mask).save(masks / f"img{i:05d}.png")
    return images, masks


def run_clean(images: Path, masks: Path, out: Path, *, src: Path | None) -> dict:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-c", RUN_CLI, "clean", str(images), "--out", str(out), "--masks", str(masks),
               "--method", "telea"]
    began = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"clean failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mib": round(peak_kib / 1024, 1), "seconds": round(seconds, 1),
            "images_per_second": round(len(list(images.iterdir())) / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--src", type=Path, default=None, help="Source tree of dermclean to run (default: installed)")
    parser.add_argument("--scratch", type=Path, default=None, help="Scratch folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="clean-memory-", dir=args.scratch))
    try:
        images, masks = make_folder(scratch, args.n_images, args.size)
        result = run_clean(images, masks, scratch / "out", src=args.src)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"n_images": args.n_images, "size": args.size, "src": str(args.src or "installed"), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
