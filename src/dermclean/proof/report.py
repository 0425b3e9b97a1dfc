"""Shortcut evidence for every classifier, on the same images (what the ``shortcut_report`` stage runs).

Every classifier under ``classifiers`` (``<variant>/seed<k>/`` natural, ``<variant>/trap/seed<k>/``
trap; see :mod:`dermclean.classifier.fit`) is tested on the SAME raw test images and the SAME trap
images:

- in-distribution AUROC on the raw test split; AUROC with and without each artifact and mean
  p(melanoma) of benign images with and without it (human labels);
- counterfactual insertion of each ``proof.counterfactual_artifacts`` (held-out renderer style) and
  of each ``proof.real_artifacts`` (real cutouts, :mod:`dermclean.proof.real_artifacts`) into raw
  test images labelled without it: flip rates both ways at the classifier's operating threshold
  and mean probability shifts for benign and malignant images, next to the same-shape skin control
  and as excess over it; Grad-CAM share inside the pasted artifact;
- removal: the val/test images labelled with each real artifact, raw and as the pipeline cleaned
  them; the section ``real_shortcut`` (:mod:`dermclean.proof.real_shortcut`) compares variants;
- trap classifiers: AUROC on the biased test split (in distribution for them) and on the trap test
  split, and the trap gap between them; with the pipeline's detector, also on both test splits as the
  pipeline cleans them (``trap_cleaned``: the trap behind the cleaning, as deployed);
- one Evidently HTML report per variant (its natural classifiers by artifact subgroup, beside the
  raw variant's), written to the output folder and attached to each of its classifiers' MLflow runs.

Figures are the mean over seeds with 95 % intervals (:mod:`dermclean.proof.stats`: one set of
bootstrap resamples of the test images shared by all classifiers, each replicate averaged over
seeds, percentile interval). The best cleaned variant is chosen on VALIDATION data: the smallest
validation trap gap of its trap classifiers (without a trap set: the highest validation AUROC).
The metrics hold everything, including the per-seed gate inputs the promote stage reads.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from dermclean.audit.flags import read_scores
from dermclean.classifier.metrics import auroc
from dermclean.classifier.predict import load_classifier
from dermclean.config import params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.manifest import read_manifest
from dermclean.detection.storage import load_detector
from dermclean.detection.operating_points import OperatingPoints
from dermclean.errors import DataError, PathNotFound
from dermclean.io import atomic_path, read_json
from dermclean.proof.counterfactual import flip_arrays
from dermclean.proof.evaluate import (as_nested, evaluate_classifier, load_evaluation_data, make_plans,
                                      paired_differences, prediction_table, summarize_group, val_trap_gap)
from dermclean.proof.evidently_report import load_report_definition, variant_report, variant_table
from dermclean.proof.real_artifacts import ArtifactBank, cut_bank, pipeline_cleaner
from dermclean.proof.real_shortcut import real_shortcut_summary, shortcut_association
from dermclean.removal.engine import make_remover, removal_config
from dermclean.tracking.classifier_runs import attach_to_classifier_run

METHOD = ("95 % percentile bootstrap over test images ({n_boot} resamples shared by every classifier, so "
          "differences are paired); each replicate is the mean over seeds {seeds}; point = mean over seeds of "
          "the figure on all test images; seed_std = spread between seeds")


def discover(classifiers: Path) -> list[dict[str, Any]]:
    """Model folders: ``<variant>/seed<k>`` (natural) and ``<variant>/trap/seed<k>`` (trap)."""
    found = []
    for config in sorted(classifiers.glob("*/seed*/config.json")) + sorted(classifiers.glob("*/trap/seed*/config.json")):
        folder = config.parent
        match = re.fullmatch(r"seed(\d+)", folder.name)
        if not match:
            continue
        trap = folder.parent.name == "trap"
        variant = (folder.parent.parent if trap else folder.parent).name
        found.append({"family": "trap" if trap else "natural", "variant": variant, "seed": int(match.group(1)),
                      "dir": folder})
    if not found:
        raise PathNotFound(f"{classifiers}: no classifier folders (<variant>/seed<k>/config.json); "
                                f"run the train_classifier stage first")
    return found


def headline(evaluation, data, trap_artifact: str | None) -> dict[str, float]:
    out = {"shortcut/id_auroc": auroc(data.test.y, evaluation.p_test)}
    if trap_artifact in evaluation.insertions:
        ins = evaluation.insertions[trap_artifact]
        s = flip_arrays(ins.original, ins.painted, data.insertions[trap_artifact].melanoma, evaluation.threshold).summary()
        out.update({f"shortcut/{k}": v for k, v in s.items()})
    if "test" in evaluation.p_trap:
        out["shortcut/biased_auroc"] = auroc(data.biased["test"].y, evaluation.p_biased["test"])
        out["shortcut/trap_auroc"] = auroc(data.trap["test"].y, evaluation.p_trap["test"])
    return out


def real_banks(params: dict[str, Any], manifest: Path, detections: Path | None) -> dict[str, ArtifactBank]:
    """One bank of real cutouts per ``proof.real_artifacts`` type, cut along ``detections``' masks."""
    proof = params["proof"]
    if detections is None or not proof.get("real_artifacts"):
        return {}
    bank = {k: v for k, v in (proof.get("real_bank") or {}).items() if k in ("min_area", "max_area", "per_image")}
    return {a: cut_bank(manifest, detections, a, **bank) for a in proof["real_artifacts"]}


def shortcut_report(params: dict[str, Any], *, manifest: Path, classifiers: Path, trap_dir: Path | None,
                    definition: str | os.PathLike[str] | None, out_dir: Path, device: Any,
                    batch_size: int = 64, detections: Path | None = None, cleaned: Path | None = None,
                    detector: Path | None = None, remover_models: dict[str, Path | None] | None = None) -> dict[str, Any]:
    """Evaluate every classifier (see the module docstring); reports into ``out_dir``; returns the metrics.

    ``detections`` (the detect stage's folder) and ``cleaned`` (the clean stage's) enable the real-artifact
    counterfactuals: banks cut along the detected masks, removal read from ``cleaned/<removal.method>``; with
    the pipeline's ``detector`` bundle (and ``remover_models[removal.method]``, ``None`` for Telea) the real
    insertions and the trap set's test images are also shown to every classifier behind the pipeline's cleaning."""
    proof = params["proof"]
    seed, n_boot = params_seed(params), int(proof.get("bootstrap", 1000))
    report_definition = load_report_definition(definition)
    models = discover(classifiers)
    loaded = {m["dir"]: load_classifier(m["dir"], device=device) for m in models}
    sizes = {c.config.image_size for c in loaded.values()}
    if len(sizes) != 1:
        raise DataError(f"{classifiers}: classifiers at image sizes {sorted(sizes)}; expected one size")
    banks = real_banks(params, manifest, detections)
    removal_variant = params.get("removal", {}).get("method")
    cleaned_manifest = cleaned / removal_variant / "manifest.csv" if cleaned is not None and removal_variant else None
    if cleaned_manifest is not None and not cleaned_manifest.is_file():
        raise PathNotFound(f"{cleaned_manifest} not found; expected the clean stage's dataset of removal.method "
                           f"{removal_variant!r}")
    cleaner = None
    if (banks or trap_dir is not None) and detector is not None and removal_variant:
        config = removal_config(params, seed=seed)
        cleaner = pipeline_cleaner(load_detector(detector, device=device),
                                   make_remover(removal_variant, model=(remover_models or {}).get(removal_variant),
                                                config=config, device=device),
                                   dilation=config.dilation)
    data = load_evaluation_data(manifest, size=sizes.pop(), artifacts=list(proof.get("counterfactual_artifacts") or []),
                                seed=seed, trap_dir=trap_dir, max_insertions=proof.get("max_insertions"),
                                real_banks=banks, cleaned_manifest=cleaned_manifest, cleaner=cleaner)
    plans = make_plans(data, n_boot=n_boot, seed=seed)
    trap_artifact = data.trap_artifact
    evals: dict[tuple[str, str], list] = {}
    with atomic_path(out_dir, owner="shortcut_report") as out:
        (out / "predictions").mkdir(parents=True)
        for m in models:
            clf = loaded[m["dir"]]
            if clf.threshold is None:
                raise DataError(f"{m['dir']}: no threshold.json; retrain it with the train_classifier stage")
            name = f"{m['family']}-{m['variant']}-seed{m['seed']}"
            print(f"shortcut_report: {name}", flush=True)
            ev = evaluate_classifier(clf.module, clf.threshold, data, family=m["family"], variant=m["variant"],
                                     seed=m["seed"], batch_size=batch_size, device=device,
                                     attribution=bool(proof.get("attribution", True)))
            evals.setdefault((m["family"], m["variant"]), []).append(ev)
            prediction_table(data, ev).to_csv(out / "predictions" / f"{name}.csv", index=False)
        flags = detector_flags(detections, detector)
        evidently = variant_reports(data, evals, models, out, report_definition, trap_artifact, flags)
    summary = {fam: {} for fam, _ in evals}
    intervals = {}
    for (family, variant), group in sorted(evals.items()):
        intervals[(family, variant)] = summarize_group(data, group, plans)
        summary[family][variant] = as_nested(intervals[(family, variant)])
    metrics: dict[str, Any] = {"method": METHOD.format(n_boot=n_boot, seeds=sorted({e.seed for g in evals.values() for e in g})),
                               "trap_artifact": trap_artifact, "summary": summary, "evidently": evidently,
                               "n_test": len(data.test.df),
                               "n_insertion": {a: len(s.melanoma) for a, s in data.insertions.items()},
                               "n_trap_test": len(data.trap["test"].df) if "test" in data.trap else 0}
    metrics["classifiers"] = gate_inputs(evals, data, trap_artifact)
    metrics["excess_over_natural"] = excess_over_natural(data, evals, intervals, plans, trap_artifact)
    val_aurocs: dict[str, list[float]] = {}
    for m in models:
        if m["family"] == "natural":
            val_aurocs.setdefault(m["variant"], []).append(float(loaded[m["dir"]].meta.get("val_auroc", np.nan)))
    metrics.update(choose_and_compare(data, evals, intervals, plans, trap_artifact, val_aurocs))
    if banks:
        drop = float((params.get("promote") or {}).get("classifier", {}).get("max_auroc_drop", 0.02))
        used = removal_variant if cleaned_manifest or cleaner else None
        table = read_manifest(manifest)
        associations = {a: shortcut_association(table, a) for a in banks}
        metrics["real_shortcut"] = real_shortcut_summary(data, evals, intervals, plans, banks=banks,
                                                         removal_variant=used, associations=associations,
                                                         max_auroc_drop=drop)
    return metrics


def detector_flags(detections: Path | None, detector: Path | None) -> pd.DataFrame | None:
    """``image_id`` and 0/1 ruler / ink / patches flags of ``detections`` at ``detector``'s operating points
    (``None`` without both, or for a bundle saved without operating points)."""
    if detections is None or detector is None or not (Path(detector) / "operating_points.json").is_file():
        return None
    table = read_scores(detections, OperatingPoints.from_dict(read_json(Path(detector) / "operating_points.json")))
    out = pd.DataFrame({"image_id": [str(PurePosixPath(name).with_suffix("")) for name in table["image"]]})
    for flag in OUTLIER_CLASSES:
        out[flag] = table[f"{flag}_flag"].to_numpy()
    return out


def variant_reports(data, evals, models, out: Path, definition, trap_artifact: str | None,
                    flags: pd.DataFrame | None = None) -> dict[str, Any]:
    """One Evidently report per natural variant (``out/<variant>.html``, raw's figures beside a cleaned
    variant's); its self-contained copy and each classifier's headline figures go to the classifier's run."""
    tables = {}
    for (family, variant), group in sorted(evals.items()):
        if family == "natural":
            tables[variant] = variant_table(data.test.df, [e.p_test for e in group], [e.threshold for e in group],
                                            definition=definition, flags=flags)
    numbers: dict[str, Any] = {}
    reference = tables.get(definition.reference_variant)
    with tempfile.TemporaryDirectory(prefix="dermclean-evidently-") as scratch:
        for variant, (table, threshold) in tables.items():
            beside = None if variant == definition.reference_variant or reference is None else reference[0]
            copy = Path(scratch) / f"{variant}.html"
            report = variant_report(table, beside, out / f"{variant}.html", threshold=threshold,
                                    title=f"{variant}: diagnosis classifiers by artifact subgroup",
                                    definition=definition, self_contained_copy=copy)
            numbers[variant] = report.numbers
        for m in models:
            ev = next(e for e in evals[(m["family"], m["variant"])] if e.seed == m["seed"])
            html_copy = Path(scratch) / f"{m['variant']}.html" if m["family"] == "natural" else None
            attach_to_classifier_run(m["dir"], html_copy, headline(ev, data, trap_artifact))
    return numbers


def gate_inputs(evals, data, trap_artifact: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-seed gate inputs (promote): id AUROC of the natural classifier; trap AUROC and flip rate of the trap
    one, and that flip rate's excess over the natural classifier's of the same variant and seed."""
    gates: dict[str, dict[str, dict[str, Any]]] = {}
    for (family, variant), group in evals.items():
        for ev in group:
            entry = gates.setdefault(variant, {}).setdefault(f"seed{ev.seed}", {})
            h = headline(ev, data, trap_artifact)
            if family == "natural":
                entry["id_auroc"] = h["shortcut/id_auroc"]
                if "shortcut/flip_rate" in h:
                    entry["natural_flip_rate"] = h["shortcut/flip_rate"]
            else:
                entry["trap_auroc"] = h.get("shortcut/trap_auroc")
                entry["biased_auroc"] = h.get("shortcut/biased_auroc")
                if "shortcut/flip_rate" in h:
                    entry["flip_rate"] = {"overall": h["shortcut/flip_rate"],
                                          "benign_to_malignant": h["shortcut/flip_b2m"],
                                          "malignant_to_benign": h["shortcut/flip_m2b"]}
    for seeds in gates.values():
        for entry in seeds.values():
            if "flip_rate" in entry and "natural_flip_rate" in entry:
                entry["excess_flip_rate"] = entry["flip_rate"]["overall"] - entry["natural_flip_rate"]
    return gates


def excess_over_natural(data, evals, intervals, plans, trap_artifact: str | None) -> dict[str, dict[str, Any]]:
    """Per variant: the trap classifiers' trap gap and flip rate minus the natural classifiers' (same recipe,
    same seeds), with paired bootstrap intervals: what the planted shortcut adds over plain fragility."""
    names = {"trap_gap": "trap/test/gap", "flip_rate": f"counterfactual/{trap_artifact}/painted/flip_rate",
             "trap_gap_behind_cleaning": "trap_cleaned/test/gap"}
    out: dict[str, dict[str, Any]] = {}
    for variant in sorted({v for (f, v) in evals if f == "trap" and ("natural", v) in evals}):
        trap, natural = evals[("trap", variant)], evals[("natural", variant)]
        if sorted(e.seed for e in trap) != sorted(e.seed for e in natural):
            continue
        diffs = paired_differences(data, trap, natural, names.values(), plans)
        out[variant] = {key: diffs[name].as_dict() for key, name in names.items() if name in diffs}
    return out


def choose_and_compare(data, evals, intervals, plans, trap_artifact, val_aurocs: dict[str, list[float]]) -> dict[str, Any]:
    """The best cleaned variant (validation only), its paired differences from raw, and the issue's bar."""
    cleaned = sorted({v for (f, v) in evals if v != "raw"})
    if not cleaned:
        return {"best_cleaned_variant": None}
    if data.trap and all(("trap", v) in evals for v in cleaned):
        scores = {v: val_trap_gap(evals[("trap", v)], data) for v in cleaned}
        best, rule = min(scores, key=lambda v: (scores[v], v)), "smallest validation trap gap (trap classifiers)"
    else:
        scores = {v: float(np.mean(val_aurocs[v])) for v in cleaned}
        best, rule = max(scores, key=lambda v: (scores[v], v)), "highest validation AUROC (natural classifiers)"
    out: dict[str, Any] = {"best_cleaned_variant": {"variant": best, "rule": rule, "validation_scores": scores}}
    if not (("trap", "raw") in evals and ("trap", best) in evals and "test" in data.trap):
        return out
    flip = f"counterfactual/{trap_artifact}/painted/flip_rate"
    comparison = {}
    for v in cleaned:
        diffs = paired_differences(data, evals[("trap", v)], evals[("trap", "raw")], ["trap/test/gap", flip], plans)
        comparison[v] = {key: diffs[name].as_dict()
                         for key, name in (("trap_gap_minus_raw", "trap/test/gap"), ("flip_rate_minus_raw", flip))
                         if name in diffs}
    out["comparison"] = comparison
    raw_i, best_i = intervals[("trap", "raw")], intervals[("trap", best)]
    bar = {"raw_trap_gap": raw_i["trap/test/gap"].as_dict(), "best_trap_gap": best_i["trap/test/gap"].as_dict(),
           "raw_shortcut_gap_at_least_0.10": raw_i["trap/test/gap"].mean >= 0.10}
    if flip in raw_i:
        bar.update({"raw_flip_rate": raw_i[flip].as_dict(), "best_flip_rate": best_i[flip].as_dict(),
                    "raw_flip_rate_at_least_0.20": raw_i[flip].mean >= 0.20,
                    "best_halves_flip_rate": best_i[flip].mean <= raw_i[flip].mean / 2,
                    "flip_rate_intervals_disjoint": not best_i[flip].overlaps(raw_i[flip])})
    bar.update({"best_halves_trap_gap": best_i["trap/test/gap"].mean <= raw_i["trap/test/gap"].mean / 2,
                "trap_gap_intervals_disjoint": not best_i["trap/test/gap"].overlaps(raw_i["trap/test/gap"])})
    out["bar"] = bar
    return out
