"""Benchmark: where a segmenter's flagged area on clean images comes from, per type and per image.

Runs the segmenter of a ``lofo_segment.py`` work folder on the clean images (none of ruler/ink/patches
in their labels) of ``--split``, at the pixel threshold that run fitted on validation (read from its
``--result`` JSON), and reports the mean flagged share per type channel, split by each acquisition
effect label, the share of the total carried by the ``--worst`` images, and those images with their
labels. ``--figure`` writes each worst image beside its flagged pixels (red ruler, green ink, blue
patches).

    python benchmarks/flagged_clean.py --work runs/seg_f0 --result seg_f0_test.json --split test --figure flagged.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb, save_png
from dermclean.data.manifest import clean_mask, effect_groups, image_paths, in_split, labelled_rows, read_manifest
from dermclean.env import disable_telemetry
from dermclean.io import write_json
from dermclean.methods.segment.model import SEGMENTER_KIND
from dermclean.modelio import load_model_dir

COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255)], np.uint8)


def main(argv: list[str] | None = None) -> int:
    disable_telemetry()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--work", type=Path, required=True, help="a lofo_segment.py --work folder")
    parser.add_argument("--result", type=Path, required=True, help="its --out JSON (the fitted threshold)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--worst", type=int, default=6)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    threshold = float(json.loads(args.result.read_text())["threshold"])
    model, config, _ = load_model_dir(args.work / "model", expect_kind=SEGMENTER_KIND)
    df = read_manifest(args.manifest)
    rows, _ = labelled_rows(df[in_split(df, args.split)])
    rows = rows[clean_mask(rows).to_numpy()]
    images, flagged = [], []
    for path in image_paths(rows, args.manifest):
        image = load_rgb(path)
        if image.shape[:2] != (config.image_size, config.image_size):
            raise ValueError(f"{path}: {image.shape[1]}x{image.shape[0]} px; this benchmark expects the "
                             f"segmenter's side, {config.image_size} px")
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
        with torch.no_grad():
            prob = torch.sigmoid(model(x))[0].numpy()
        images.append(image)
        flagged.append(prob > threshold)
    area = np.array([f.any(0).mean() for f in flagged])
    per_type = np.array([f.reshape(len(OUTLIER_CLASSES), -1).mean(1) for f in flagged])
    groups = effect_groups(rows)
    effects = {e: sel for e, sel in groups.items() if e not in ("all", "none")}
    table = {name: {"images": int(sel.sum()), "any": float(area[sel].mean()),
                    **{c: float(per_type[sel, j].mean()) for j, c in enumerate(OUTLIER_CLASSES)}}
             for name, sel in groups.items() if sel.any()}
    order = np.argsort(-area)[:args.worst]
    worst = [{"image_id": str(rows["image_id"].iloc[i]), "any": float(area[i]),
              **{c: float(per_type[i, j]) for j, c in enumerate(OUTLIER_CLASSES)},
              "effects": [e for e, sel in effects.items() if sel[i]]} for i in order]
    share = float(area[order].sum() / max(area.sum(), 1e-12))
    print(f"{len(rows)} clean {args.split} images, threshold {threshold:.4f}")
    print(f"{'group':12s} {'images':>6s} {'any':>7s} " + " ".join(f"{c:>8s}" for c in OUTLIER_CLASSES))
    for name, t in table.items():
        print(f"{name:12s} {t['images']:6d} {100 * t['any']:6.2f}% "
              + " ".join(f"{100 * t[c]:7.2f}%" for c in OUTLIER_CLASSES))
    print(f"the {len(order)} worst images carry {100 * share:.0f} % of the flagged area:")
    for w in worst:
        print(f"  {w['image_id']}  {100 * w['any']:5.1f} %  " + " ".join(f"{c} {100 * w[c]:.1f} %"
                                                                   for c in OUTLIER_CLASSES) + f"  {w['effects']}")
    if args.figure is not None:
        tiles = []
        for i in order:
            overlay = images[i].copy()
            for j in range(len(OUTLIER_CLASSES)):
                overlay[flagged[i][j]] = COLOURS[j]
            tiles.append(np.concatenate([images[i], overlay], axis=1))
        save_png(args.figure, np.concatenate(tiles, axis=0))
    if args.out is not None:
        write_json(args.out, {"split": args.split, "threshold": threshold, "by_effect": table,
                              "worst": worst, "worst_share": share})
    return 0


if __name__ == "__main__":
    sys.exit(main())
