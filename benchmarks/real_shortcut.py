"""Benchmark: ISIC's real shortcut -- do classifiers trained on raw images rely on real patches, rulers and ink,
and do the same classifiers trained on the cleaned images not?

Runs the ``shortcut_report`` stage's function (:func:`dermclean.proof.report.shortcut_report`) on
classifiers trained elsewhere (``--classifiers DIR`` with ``DIR/<variant>/seed<k>/``, e.g. the
``train_classifier`` stage's folder or ``benchmarks/classifier_recipe.py --models`` folders linked
as ``raw`` and ``telea``), the real artifacts cut along ``--detections``' masks and removed as in
``--cleaned/<removal.method>/``, with the profile's ``proof`` section; with ``--detector`` (the
bundle that made ``--detections``) the pasted images also go through detect + clean before the
classifiers. With ``--trap`` (the ``trap_paint`` stage's folder) and trap classifiers beside the natural
ones (``DIR/<variant>/trap/seed<k>/``, trained on that trap set raw and cleaned) the controlled ink trap
is measured too: trap gap and ink flip rate per variant and their excess over the natural classifiers of
the same variant and seeds; with ``--detector``, also the trap gap behind the pipeline's cleaning.
Writes the full metrics to ``--out`` (as ``metrics/shortcut.json``), the Evidently reports to
``--reports`` and prints the tables of docs/results/real_shortcut.md.

    python benchmarks/real_shortcut.py --manifest data/prepared/manifest.csv --detections data/detections \\
        --cleaned data/cleaned --classifiers models/classifiers --detector models/detector_segment \\
        --out real_shortcut.json --reports real_reports
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from dermclean.config import load_params
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.proof.report import shortcut_report
from dermclean.values import json_ready


def _ci(d: dict[str, Any] | None, digits: int = 3) -> str:
    if not d or d.get("mean") is None:
        return "n/a"
    return f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"


def table(metrics: dict[str, Any]) -> str:
    """Markdown: per variant and real artifact, AUROC, insertion excess, removal shift, benign subgroup gap."""
    real = metrics["real_shortcut"]
    lines = ["| variant | artifact | melanoma AUROC (test) | insertion excess: flip rate | insertion excess: shift "
             "(melanoma) | behind cleaning: flip rate | behind cleaning: shift (melanoma) | removal: shift (benign) "
             "| benign p with - without |", "|---|---|---|---|---|---|---|---|---|"]
    for variant, entry in real["variants"].items():
        auroc = entry["auroc_test"]
        auroc_text = f"{auroc['mean']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]"
        for artifact in real["banks"]:
            fig = entry[artifact]
            ins, rem = fig.get("insertion_excess", {}), fig.get("removal", {})
            behind = fig.get("insertion_excess_cleaned", {})
            lines.append(f"| {variant} | {artifact} | {auroc_text} | {_ci(ins.get('flip_rate'))} | "
                         f"{_ci(ins.get('shift_malignant'))} | {_ci(behind.get('flip_rate'))} | "
                         f"{_ci(behind.get('shift_malignant'))} | {_ci(rem.get('shift_benign'))} | "
                         f"{_ci(fig['benign_p_gap'].get('benign_p_gap'))} |")
    return "\n".join(lines)


def trap_table(metrics: dict[str, Any]) -> str:
    """Markdown: per variant, the trap classifiers' trap gap and flip rate, their excess over the natural
    classifiers (same variant and seeds) and their difference from raw's trap classifiers."""
    trap, artifact = metrics["summary"].get("trap", {}), metrics["trap_artifact"]
    excess, minus_raw = metrics.get("excess_over_natural", {}), metrics.get("comparison", {})
    lines = [f"| variant | trap gap | {artifact} flip rate | excess over natural: gap | excess over natural: flip "
             "rate | trap gap minus raw's | flip rate minus raw's | behind cleaning: trap gap |",
             "|---|---|---|---|---|---|---|---|"]
    for variant, entry in trap.items():
        flip = entry.get("counterfactual", {}).get(artifact, {}).get("painted", {}).get("flip_rate")
        ex, vs_raw = excess.get(variant, {}), minus_raw.get(variant, {})
        lines.append(f"| {variant} | {_ci(entry['trap']['test']['gap'])} | {_ci(flip)} | {_ci(ex.get('trap_gap'))} | "
                     f"{_ci(ex.get('flip_rate'))} | {_ci(vs_raw.get('trap_gap_minus_raw'))} | "
                     f"{_ci(vs_raw.get('flip_rate_minus_raw'))} | "
                     f"{_ci(entry.get('trap_cleaned', {}).get('test', {}).get('gap'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--detections", type=Path, required=True)
    parser.add_argument("--cleaned", type=Path, required=True)
    parser.add_argument("--classifiers", type=Path, required=True)
    parser.add_argument("--detector", type=Path, default=None,
                        help="the pipeline's detector bundle: insertions also shown behind detect + clean")
    parser.add_argument("--remover", type=Path, default=None, help="model of removal.method (none for telea)")
    parser.add_argument("--trap", type=Path, default=None,
                        help="the trap_paint stage's folder: also measure the ink trap (needs trap classifiers)")
    parser.add_argument("--reports", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    params = load_params(args.params, profile=args.profile)
    began = time.perf_counter()
    metrics = shortcut_report(params, manifest=args.manifest, classifiers=args.classifiers,
                              trap_dir=args.trap, definition=None, out_dir=args.reports,
                              device=pick_device(args.device), detections=args.detections, cleaned=args.cleaned,
                              detector=args.detector,
                              remover_models={params["removal"]["method"]: args.remover})
    metrics["seconds"] = time.perf_counter() - began
    write_json(args.out, json_ready(metrics))
    print(table(metrics))
    if metrics["summary"].get("trap"):
        print(trap_table(metrics))
        best = metrics.get("best_cleaned_variant") or {}
        print(f"best cleaned variant: {best.get('variant')} ({best.get('rule')})")
    real = metrics["real_shortcut"]
    print(f"banks: {real['banks']}; insertion images: {real['n_insertion']}; removal images: {real['n_removal']}")
    for variant, claims in real["claim"].items():
        print(f"claim {variant}: {claims}")
    print(f"{metrics['seconds']:.0f} s; metrics in {args.out}, reports in {args.reports}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
