"""Shortcut evidence for a set of classifiers, all tested on the same raw test and trap images.

:func:`load_evaluation_data` reads, once, everything every classifier is tested on: the raw test
split (human artifact labels), the counterfactual insertion sets (one per artifact, built on raw
test images labelled without that artifact: ``<artifact>`` painted by the held-out renderer style,
``real_<artifact>`` pasted from a bank of real ones, :mod:`dermclean.proof.real_artifacts`), the
removal sets (val/test images labelled with an artifact, raw and as the pipeline cleaned them) and,
when a trap set exists, its biased and reversed val/test images (with a cleaner, the test ones also as
the pipeline cleans them). :func:`evaluate_classifier` runs
one classifier over all of it; :func:`summarize_group` turns the classifiers of one (family, variant) -- one per seed -- into
figures with 95 % intervals (:mod:`dermclean.proof.stats`: paired bootstrap over test images,
mean over seeds).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dermclean.classifier.metrics import OperatingThreshold, auroc
from dermclean.classifier.train import predict_proba
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb, to_tensor
from dermclean.data.manifest import image_paths, read_manifest
from dermclean.io import read_json
from dermclean.proof.attribution import AttributionShare, attribution_share
from dermclean.proof.counterfactual import (Cleaner, InsertionPredictions, InsertionSet, build_insertion_set,
                                            flip_arrays, predict_insertions)
from dermclean.proof.painting import Painter, heldout_painter
from dermclean.proof.real_artifacts import ArtifactBank, RemovalSet, bank_painter, removal_set
from dermclean.proof.stats import Interval, bootstrap_indices, difference, mean_of, seed_interval
from dermclean.proof.subgroups import auroc_stat, flag_values, gap_stat
from dermclean.proof.trap import MANIFEST, TRAP
from dermclean.values import finite_or_none


@dataclass(frozen=True, kw_only=True)
class ImageTable:
    """Rows of a manifest (``df``, sorted by ``image_id``) and their images ``(N, 3, S, S)``."""

    df: pd.DataFrame
    images: torch.Tensor

    @property
    def y(self) -> np.ndarray:
        return self.df["melanoma"].astype(int).to_numpy()


def load_tables(df: pd.DataFrame, manifest_path: str | os.PathLike[str], *, size: int,
                cleaner: Cleaner | None = None) -> tuple[ImageTable, ImageTable | None]:
    """``df``'s images at ``size``, and with a ``cleaner`` the same images as it cleans them (at their own
    size, then resized; ``None`` without one): each file read once."""
    df = df.sort_values("image_id").reset_index(drop=True)
    if df.empty:
        raise ValueError(f"{manifest_path}: no rows to evaluate on")
    pixels = [load_rgb(p, min_size=1) for p in image_paths(df, manifest_path)]

    def table(images: list[np.ndarray]) -> ImageTable:
        return ImageTable(df=df, images=torch.stack([to_tensor(im, size) for im in images]))

    return table(pixels), (None if cleaner is None else table(cleaner(pixels)))


def load_table(df: pd.DataFrame, manifest_path: str | os.PathLike[str], *, size: int) -> ImageTable:
    """``df``'s images at ``size``."""
    return load_tables(df, manifest_path, size=size)[0]


@dataclass(kw_only=True)
class EvaluationData:
    """What every classifier is tested on (see module docstring); ``trap`` is empty without a trap set."""

    size: int
    test: ImageTable
    insertions: dict[str, InsertionSet] = field(default_factory=dict)
    removals: dict[str, RemovalSet] = field(default_factory=dict)
    biased: dict[str, ImageTable] = field(default_factory=dict)  # "val"/"test" -> biased (aligned) rows
    trap: dict[str, ImageTable] = field(default_factory=dict)    # "val"/"test" -> reversed rows
    # "test" -> (biased, trap) rows as the pipeline's detector and remover clean them (with a cleaner)
    trap_cleaned: dict[str, tuple[ImageTable, ImageTable]] = field(default_factory=dict)
    trap_artifact: str | None = None


def load_evaluation_data(manifest_path: str | os.PathLike[str], *, size: int, artifacts: list[str],
                         seed: int, trap_dir: str | os.PathLike[str] | None = None,
                         max_insertions: int | None = None, painters: dict[str, Painter] | None = None,
                         real_banks: dict[str, ArtifactBank] | None = None,
                         cleaned_manifest: str | os.PathLike[str] | None = None,
                         cleaner: Cleaner | None = None) -> EvaluationData:
    """Load the raw test split, build insertion sets for ``artifacts`` (held-out renderer style) and for
    each bank of ``real_banks`` that holds cutouts (``real_<artifact>``), removal sets for the banks'
    artifacts from ``cleaned_manifest`` (the pipeline's cleaned dataset) and read the trap set if given.
    With a ``cleaner`` the real insertion sets and the trap set's biased and trap test rows are also kept as
    cleaned by it (the deployed path of a cleaned-data classifier)."""
    manifest = read_manifest(manifest_path)
    test_df = manifest[manifest["split"].eq("test").fillna(False).astype(bool)]
    data = EvaluationData(size=size, test=load_table(test_df, manifest_path, size=size))
    real_banks = real_banks or {}
    plan = [(a, a, (painters or {}).get(a) or heldout_painter(a), None) for a in artifacts]
    plan += [(f"real_{a}", a, bank_painter(bank), cleaner) for a, bank in real_banks.items() if bank.cutouts]
    for k, (key, artifact, painter, clean) in enumerate(plan):
        rows = data.test.df[pd.to_numeric(data.test.df[artifact], errors="coerce").eq(0).fillna(False).to_numpy()]
        if max_insertions:
            rows = rows.iloc[:max_insertions]
        if rows.empty:
            continue
        images = [load_rgb(p, min_size=1) for p in image_paths(rows, manifest_path)]
        data.insertions[key] = build_insertion_set(images, rows["melanoma"].astype(int).to_numpy(),
                                                   artifact=key, painter=painter, size=size, seed=seed + 1000 * (k + 1),
                                                   cleaner=clean)
    if cleaned_manifest is not None:
        for artifact in real_banks:
            removal = removal_set(manifest_path, cleaned_manifest, artifact, size=size)
            if removal is not None:
                data.removals[artifact] = removal
    if trap_dir is not None and (Path(trap_dir) / MANIFEST).is_file():
        trap_dir = Path(trap_dir)
        biased, trap = read_manifest(trap_dir / MANIFEST), read_manifest(trap_dir / TRAP)
        for split in ("val", "test"):
            rows = ((biased[biased["split"] == split], trap_dir / MANIFEST),
                    (trap[trap["split"] == split], trap_dir / TRAP))
            keep_cleaned = cleaner if split == "test" else None
            (data.biased[split], biased_cleaned), (data.trap[split], trap_cleaned) = (
                load_tables(df, path, size=size, cleaner=keep_cleaned) for df, path in rows)
            if list(data.biased[split].df["image_id"]) != list(data.trap[split].df["image_id"]):
                raise ValueError(f"{trap_dir}: biased and trap {split} rows differ; rebuild the trap set")
            if keep_cleaned is not None:
                data.trap_cleaned[split] = (biased_cleaned, trap_cleaned)
        data.trap_artifact = read_json(trap_dir / "trap.json")["artifact"]
    return data


@dataclass(kw_only=True)
class ClassifierEvaluation:
    """One classifier's predictions on :class:`EvaluationData` (all ``p_malignant`` arrays ``(N,)``)."""

    family: str
    variant: str
    seed: int
    threshold: float
    p_test: np.ndarray
    insertions: dict[str, InsertionPredictions] = field(default_factory=dict)
    insertions_cleaned: dict[str, InsertionPredictions] = field(default_factory=dict)  # behind the pipeline's cleaning
    removals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (raw, cleaned)
    attribution: dict[str, AttributionShare] = field(default_factory=dict)
    p_biased: dict[str, np.ndarray] = field(default_factory=dict)
    p_trap: dict[str, np.ndarray] = field(default_factory=dict)
    p_trap_cleaned: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (biased, trap)


def evaluate_classifier(model: torch.nn.Module, threshold: OperatingThreshold | float, data: EvaluationData, *,
                        family: str, variant: str, seed: int, batch_size: int = 64,
                        device: str | torch.device | None = None, attribution: bool = True) -> ClassifierEvaluation:
    """Predict every evaluation set with ``model``; Grad-CAM shares on the painted insertion images."""
    t = float(threshold.threshold if isinstance(threshold, OperatingThreshold) else threshold)
    out = ClassifierEvaluation(family=family, variant=variant, seed=seed, threshold=t,
                               p_test=predict_proba(model, data.test.images, batch_size=batch_size, device=device))
    for artifact, ins in data.insertions.items():
        out.insertions[artifact] = predict_insertions(model, ins, batch_size=batch_size, device=device)
        if ins.cleaned is not None:
            out.insertions_cleaned[artifact] = predict_insertions(model, ins, batch_size=batch_size, device=device,
                                                                  cleaned=True)
        if attribution:
            out.attribution[artifact] = attribution_share(model, ins.painted, ins.masks, batch_size=batch_size,
                                                          device=device)
    for artifact, removal in data.removals.items():
        out.removals[artifact] = (predict_proba(model, removal.original, batch_size=batch_size, device=device),
                                  predict_proba(model, removal.cleaned, batch_size=batch_size, device=device))
    for split, table in data.biased.items():
        out.p_biased[split] = predict_proba(model, table.images, batch_size=batch_size, device=device)
        out.p_trap[split] = predict_proba(model, data.trap[split].images, batch_size=batch_size, device=device)
    for split, tables in data.trap_cleaned.items():
        out.p_trap_cleaned[split] = tuple(predict_proba(model, t.images, batch_size=batch_size, device=device)
                                          for t in tables)
    return out


def prediction_table(data: EvaluationData, evaluation: ClassifierEvaluation) -> pd.DataFrame:
    """The raw test rows with this classifier's ``p_malignant`` (input of the Evidently report)."""
    cols = ["image_id", "melanoma", *OUTLIER_CLASSES]
    table = data.test.df[cols].copy()
    table["p_malignant"] = evaluation.p_test
    return table


@dataclass(frozen=True, kw_only=True)
class Plans:
    """Shared bootstrap resamples per evaluation set (the same for every classifier: paired)."""

    test: np.ndarray
    insertions: dict[str, np.ndarray]
    trap: dict[str, np.ndarray]
    removals: dict[str, np.ndarray] = field(default_factory=dict)


def make_plans(data: EvaluationData, *, n_boot: int, seed: int) -> Plans:
    return Plans(test=bootstrap_indices(len(data.test.df), n_boot=n_boot, seed=seed),
                 insertions={a: bootstrap_indices(len(s.melanoma), n_boot=n_boot, seed=seed + 1 + k)
                             for k, (a, s) in enumerate(data.insertions.items())},
                 trap={s: bootstrap_indices(len(t.df), n_boot=n_boot, seed=seed + 100 + k)
                       for k, (s, t) in enumerate(data.trap.items())},
                 removals={a: bootstrap_indices(len(r.melanoma), n_boot=n_boot, seed=seed + 200 + k)
                           for k, (a, r) in enumerate(data.removals.items())})


def group_statistics(data: EvaluationData, evals: list[ClassifierEvaluation]) -> dict[str, tuple[list, str]]:
    """``name -> (one statistic per seed, name of its bootstrap plan)`` for one (family, variant)."""
    y = data.test.y
    stats: dict[str, tuple[list, str]] = {}
    stats["auroc_test"] = ([auroc_stat(y, e.p_test) for e in evals], "test")
    for flag in OUTLIER_CLASSES:
        f = flag_values(data.test.df, flag)
        stats[f"subgroups/{flag}/auroc_with"] = ([auroc_stat(y, e.p_test, f == 1) for e in evals], "test")
        stats[f"subgroups/{flag}/auroc_without"] = ([auroc_stat(y, e.p_test, f == 0) for e in evals], "test")
        stats[f"subgroups/{flag}/gap"] = ([gap_stat(y, e.p_test, f) for e in evals], "test")
        benign_with, benign_without = (y == 0) & (f == 1), (y == 0) & (f == 0)
        with_ = [mean_of(np.where(benign_with, e.p_test, np.nan)) for e in evals]
        without = [mean_of(np.where(benign_without, e.p_test, np.nan)) for e in evals]
        stats[f"subgroups/{flag}/benign_p_with"] = (with_, "test")
        stats[f"subgroups/{flag}/benign_p_without"] = (without, "test")
        stats[f"subgroups/{flag}/benign_p_gap"] = ([difference(a, b) for a, b in zip(with_, without)], "test")
    for artifact, ins in data.insertions.items():
        plan = f"insertion/{artifact}"
        for root, field_name in (("counterfactual", "insertions"), ("counterfactual_cleaned", "insertions_cleaned")):
            if not all(artifact in getattr(e, field_name) for e in evals):
                continue
            preds = [getattr(e, field_name)[artifact] for e in evals]
            versions = {version: [flip_arrays(p.original, getattr(p, version), ins.melanoma, e.threshold).statistics()
                                  for p, e in zip(preds, evals)] for version in ("painted", "control")}
            for name in versions["painted"][0]:
                for version, arrays in versions.items():
                    stats[f"{root}/{artifact}/{version}/{name}"] = ([a[name] for a in arrays], plan)
                # painted minus control on the same images: what the artifact itself does
                stats[f"{root}/{artifact}/excess/{name}"] = (
                    [difference(p[name], c[name]) for p, c in zip(versions["painted"], versions["control"])], plan)
        if all(artifact in e.attribution for e in evals):
            stats[f"attribution/{artifact}/share_in_mask"] = ([mean_of(e.attribution[artifact].share) for e in evals], plan)
            stats[f"attribution/{artifact}/mask_area"] = ([mean_of(e.attribution[artifact].area) for e in evals], plan)
    for artifact, removal in data.removals.items():
        arrays = [flip_arrays(*e.removals[artifact], removal.melanoma, e.threshold).statistics() for e in evals]
        for name in arrays[0]:
            stats[f"removal/{artifact}/{name}"] = ([a[name] for a in arrays], f"removal/{artifact}")
    # the trap as given and, where kept, behind the cleaning: the same rows, so the same resamples
    trap_predictions = [("trap", split, [(e.p_biased[split], e.p_trap[split]) for e in evals]) for split in data.trap]
    trap_predictions += [("trap_cleaned", split, [e.p_trap_cleaned[split] for e in evals])
                         for split in data.trap_cleaned]
    for root, split, predictions in trap_predictions:
        yb, yt, plan = data.biased[split].y, data.trap[split].y, f"trap/{split}"
        on_biased = [auroc_stat(yb, pb) for pb, _ in predictions]
        on_trap = [auroc_stat(yt, pt) for _, pt in predictions]
        stats[f"{root}/{split}/biased_auroc"] = (on_biased, plan)
        stats[f"{root}/{split}/trap_auroc"] = (on_trap, plan)
        stats[f"{root}/{split}/gap"] = ([difference(b, t) for b, t in zip(on_biased, on_trap)], plan)
    return stats


def plan_indices(plans: Plans, name: str) -> np.ndarray:
    if name == "test":
        return plans.test
    kind, key = name.split("/", 1)
    return {"insertion": plans.insertions, "removal": plans.removals, "trap": plans.trap}[kind][key]


def summarize_group(data: EvaluationData, evals: list[ClassifierEvaluation], plans: Plans) -> dict[str, Interval]:
    """Every figure of one (family, variant) as an :class:`Interval` over its seeds (flat keys)."""
    evals = sorted(evals, key=lambda e: e.seed)
    return {name: seed_interval(seed_stats, plan_indices(plans, plan))
            for name, (seed_stats, plan) in group_statistics(data, evals).items()}


def paired_differences(data: EvaluationData, a: list[ClassifierEvaluation], b: list[ClassifierEvaluation],
                       names: Iterable[str], plans: Plans) -> dict[str, Interval]:
    """``figure(a) - figure(b)`` (mean over seeds) with a paired interval, for each of ``names`` that both
    groups have; seeds matched by number. Each group's statistics are built once."""
    a, b = sorted(a, key=lambda e: e.seed), sorted(b, key=lambda e: e.seed)
    seeds_a, seeds_b = [e.seed for e in a], [e.seed for e in b]
    if seeds_a != seeds_b:
        raise ValueError(f"paired differences: seeds {seeds_a} vs {seeds_b}; expected the same seeds")
    sa, sb = group_statistics(data, a), group_statistics(data, b)
    return {name: seed_interval([difference(x, y) for x, y in zip(sa[name][0], sb[name][0])],
                                plan_indices(plans, sa[name][1]))
            for name in names if name in sa and name in sb}


def point(values: dict[str, Interval], name: str) -> float:
    return values[name].mean if name in values else float("nan")


def as_nested(values: dict[str, Interval]) -> dict[str, Any]:
    """Flat ``a/b/c`` keys -> nested dicts of ``Interval.as_dict()`` (JSON-ready, NaN -> None)."""
    out: dict[str, Any] = {}
    for key, interval in values.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = {k: finite_or_none(v) for k, v in interval.as_dict().items()}
    return out


def val_trap_gap(evals: list[ClassifierEvaluation], data: EvaluationData) -> float:
    """Mean over seeds of the validation trap gap, AUROC(biased val) - AUROC(trap val)."""
    if "val" not in data.trap:
        return float("nan")
    return float(np.mean([auroc(data.biased["val"].y, e.p_biased["val"]) - auroc(data.trap["val"].y, e.p_trap["val"])
                          for e in evals]))
