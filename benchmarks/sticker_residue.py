"""Benchmark: how much of ISIC's real patches a cleaned dataset leaves, by the colours of the patches.

ISIC's coloured patches are mostly saturated orange discs (often with a yellow centre) and blue or
teal ones. Without pixel labels for them, this counts the share of each image's pixels in those
colours (OpenCV HSV: orange hue 5-30 with saturation and value above 170; blue hue 85-130 with
saturation and value above 90) on the images of ``--splits`` whose human label says ``patches``, raw
and in each cleaned dataset, beside the same share on the images labelled free of ruler, ink and
patches (skin and lesions reach these colours too, so the clean images' share is the floor a complete
removal comes down to). A crude proxy, not a pixel metric: it tells whether the patches' colours are
gone, not whether the mask was tight.

    python benchmarks/sticker_residue.py --manifest data/prepared/manifest.csv \\
        --cleaned telea=data/cleaned/telea --cleaned imagecond=data/cleaned/imagecond --out residue.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from dermclean.data.images import load_rgb
from dermclean.data.manifest import clean_mask, image_paths, read_manifest
from dermclean.io import write_json

SIDE = 256  # every image is compared at this side, whatever its own size


def colour_shares(image: np.ndarray) -> tuple[float, float]:
    """Shares of ``image``'s pixels (uint8 RGB) in the patches' orange and blue."""
    rgb = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    h, s, v = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    orange = (h >= 5) & (h <= 30) & (s > 170) & (v > 170)
    blue = (h >= 85) & (h <= 130) & (s > 90) & (v > 90)
    return float(orange.mean()), float(blue.mean())


def _summary(shares: np.ndarray) -> dict[str, float]:
    return {"n_images": int(len(shares)), "orange": float(shares[:, 0].mean()), "blue": float(shares[:, 1].mean()),
            "images_orange_over_half_percent": int((shares[:, 0] > 0.005).sum()),
            "images_blue_over_half_percent": int((shares[:, 1] > 0.005).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--cleaned", action="append", default=[], metavar="NAME=DIR",
                        help="a cleaned dataset (the clean stage's <out>/<method>, with its manifest.csv); repeat")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    cleaned: dict[str, Path] = {}
    for item in args.cleaned:
        name, sep, folder = item.partition("=")
        if not sep or not (Path(folder) / "manifest.csv").is_file():
            print(f"error: --cleaned {item}: expected NAME=DIR with DIR/manifest.csv", file=sys.stderr)
            return 2
        cleaned[name] = Path(folder)
    manifest = read_manifest(args.manifest)
    rows = manifest[manifest["split"].isin(args.splits)]
    groups = {"patches": rows[rows["patches"] == 1], "clean": rows[clean_mask(rows).to_numpy()]}
    sources = {"raw": (args.manifest, manifest)}
    sources.update({name: (folder / "manifest.csv", read_manifest(folder / "manifest.csv"))
                    for name, folder in cleaned.items()})
    result: dict[str, dict[str, dict[str, float]]] = {}
    for group, members in groups.items():
        for name, (path, table) in sources.items():
            picked = table.set_index("image_id").loc[members["image_id"]].reset_index()
            shares = np.array([colour_shares(load_rgb(p)) for p in image_paths(picked, path)])
            result.setdefault(group, {})[name] = _summary(shares)
            s = result[group][name]
            print(f"{group:8s} {name:10s} n={s['n_images']:4d} orange {100 * s['orange']:.2f} % "
                  f"blue {100 * s['blue']:.2f} % (images over 0.5 %: {s['images_orange_over_half_percent']}, "
                  f"{s['images_blue_over_half_percent']})")
    write_json(args.out, {"splits": args.splits, "side": SIDE, "groups": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
