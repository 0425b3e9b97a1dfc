"""Summarise leave-one-family-out runs as the markdown tables of docs/experiments.md.

Reads the JSON files that ``benchmarks/lofo_segment.py`` (or ``lofo_imagecond.py``) wrote for each
fold and prints, per kind: the held-out families' mean pixel AP and worst family over the folds
(each family is held out in exactly one fold), the same families' figure when trained on (the
``--seen`` run, e.g. fold -1; without one, the fold runs' own families they trained on, each family
trained on in exactly one of two folds), both strict and 1 px tolerant; and the real-label figures
of each run.

    python benchmarks/lofo_summary.py seg_f0.json seg_f1.json --seen seg_all.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dermclean.constants import OUTLIER_CLASSES


def _rows(runs: list[dict], held: bool) -> list[dict]:
    return [r for run in runs for r in run["families"] if r["held_out"] == held]


def _cell(rows: list[dict], kind: str, field: str) -> str:
    values = {r["family"]: r[field] for r in rows if r["kind"] == kind}
    if not values:
        return "–"
    worst = min(values, key=values.get)
    return f"{np.mean(list(values.values())):.3f} (worst {worst} {values[worst]:.3f})"


def family_table(held_runs: list[dict], seen_run: dict | None) -> str:
    held = _rows(held_runs, True)
    seen = list(seen_run["families"]) if seen_run else _rows(held_runs, False)
    lines = ["| kind | held out: pixel AP | held out: 1 px tolerant | trained on: pixel AP | trained on: tolerant |",
             "|---|---|---|---|---|"]
    for kind in OUTLIER_CLASSES:
        lines.append(f"| {kind} | {_cell(held, kind, 'pixel_ap')} | {_cell(held, kind, 'tolerant_ap')} | "
                     f"{_cell(seen, kind, 'pixel_ap')} | {_cell(seen, kind, 'tolerant_ap')} |")
    all_held = np.mean([r["pixel_ap"] for r in held]) if held else float("nan")
    all_seen = np.mean([r["pixel_ap"] for r in seen]) if seen else float("nan")
    lines.append(f"| all | {all_held:.3f} | {np.mean([r['tolerant_ap'] for r in held]):.3f} | {all_seen:.3f} | "
                 f"{np.mean([r['tolerant_ap'] for r in seen]) if seen else float('nan'):.3f} |")
    return "\n".join(lines)


def real_table(runs: dict[str, dict]) -> str:
    lines = ["| run | image AUROC any | ruler | ink | patches | flagged area, clean: all | none | hair | dark corner "
             "| gel bubble | gel border | clean images flagged |", "|---|" + "---|" * 11]
    for name, run in runs.items():
        real = run["real"]
        auc = [f"{a['auroc']:.3f} [{a['low']:.3f}, {a['high']:.3f}]" for a in
               (real["image_auroc"][k] for k in ("any", *OUTLIER_CLASSES))]
        fp = [f"{100 * real['fp_area'][k]:.2f} %" for k in ("all", "none", "hair", "dark_corner", "gel_bubble",
                                                             "gel_border")]
        lines.append(f"| {name} | " + " | ".join(auc + fp) + f" | {100 * real['flagged_images']:.0f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folds", nargs="+", type=Path, help="one JSON per fold (families held out)")
    parser.add_argument("--seen", type=Path, default=None, help="a JSON of a run with no family held out")
    args = parser.parse_args(argv)
    held = [json.loads(p.read_text()) for p in args.folds]
    seen = json.loads(args.seen.read_text()) if args.seen else None
    print(family_table(held, seen))
    print()
    runs = {f"fold {r['fold']}": r for r in held} | ({"all families": seen} if seen else {})
    print(real_table({k: v for k, v in runs.items() if "real" in v}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
