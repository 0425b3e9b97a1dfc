"""A PNG gallery of the artifact renderer families: one row per kind, one column per family.

Backgrounds are real ISIC images labelled with no ruler, ink or patches (``isic``, read from ``--data``)
or procedural images from :mod:`dermclean.data.synthetic` (``procedural``); ``auto`` (the default) takes
ISIC when ``--data`` exists. Each cell is painted with :func:`paint_family` (degradation on) and captioned
with its family; the grid is saved as a 256-colour PNG. The figure in ``docs/`` holds no dataset pixels:
procedural backgrounds write ``docs/families.png`` by default, ISIC ones ``families_isic.png`` in the
temporary folder.

    python benchmarks/families_gallery.py --background procedural   # -> docs/families.png
    python benchmarks/families_gallery.py                           # ISIC when present -> $TMPDIR/families_isic.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.families import FAMILIES, paint_family
from dermclean.data.synthetic import SyntheticConfig, render_sample

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "isic2017-train-256"


def isic_backgrounds(data: Path, n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` RGB images (size x size) labelled free of ruler, ink and patches, drawn with ``seed``."""
    labels = pd.read_csv(data / "labels.csv")
    clean = labels[(labels[["ruler", "ink", "patches"]] == 0).all(axis=1)]
    rows = clean.sample(n=n, random_state=seed)
    return [np.asarray(Image.open(data / path).convert("RGB").resize((size, size), Image.BILINEAR))
            for path in rows["image"]]


def procedural_backgrounds(n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` artifact-free procedural dermoscopy images (size x size)."""
    config = SyntheticConfig(n_images=n, size=size, seed=seed, artifact_rates={k: 0.0 for k in ARTIFACT_FLAGS})
    return [render_sample(np.random.default_rng([seed, i]), config).clean for i in range(n)]


def gallery(backgrounds: list[np.ndarray], *, seed: int = 0) -> np.ndarray:
    """Rows = kinds of ``FAMILIES``, columns = families; uint8 grid with a caption strip under each cell."""
    size = backgrounds[0].shape[0]
    cols = max(len(f) for f in FAMILIES.values())
    gap, cap = 2, 14
    grid = np.full((len(FAMILIES) * (size + cap + gap), cols * (size + gap), 3), 255, np.uint8)
    for r, (kind, families) in enumerate(FAMILIES.items()):
        for c, family in enumerate(families):
            image = backgrounds[(r * cols + c) % len(backgrounds)]
            painted = paint_family(image, kind, family, np.random.default_rng([seed, r, c]))
            y, x = r * (size + cap + gap), c * (size + gap)
            grid[y:y + size, x:x + size] = painted.image
            cv2.putText(grid, f"{kind}/{family}", (x + 2, y + size + cap - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (40, 40, 40), 1, cv2.LINE_AA)
    return grid


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output PNG (default: see the module docstring)")
    parser.add_argument("--background", choices=("auto", "procedural", "isic"), default="auto")
    parser.add_argument("--data", type=Path, default=DATA, help="ISIC folder with labels.csv (for --background isic)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = sum(len(f) for f in FAMILIES.values())
    if args.background == "auto":
        args.background = "isic" if (args.data / "labels.csv").exists() else "procedural"
    if args.out is None:
        isic = Path(tempfile.gettempdir()) / "families_isic.png"
        args.out = isic if args.background == "isic" else REPO / "docs" / "families.png"
    if args.background == "isic":
        if not (args.data / "labels.csv").exists():
            parser.error(f"--background isic: no labels.csv in {args.data}; pass --data or use --background procedural")
        backgrounds = isic_backgrounds(args.data, n, args.size, args.seed)
    else:
        backgrounds = procedural_backgrounds(n, args.size, args.seed)
    grid = gallery(backgrounds, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        args.out, optimize=True)
    print(f"{args.out}: {grid.shape[1]}x{grid.shape[0]} px, {args.out.stat().st_size // 1024} KiB")
    return args.out


if __name__ == "__main__":
    main()
