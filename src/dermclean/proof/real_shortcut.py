"""The real-shortcut proof: does cleaning remove the reliance on artifacts the dataset really holds?

For the natural (trap-free) classifiers of every variant -- raw and each cleaned dataset, same
recipe and seeds -- and each real artifact type (:mod:`dermclean.proof.real_artifacts`):

- ``insertion_excess``: counterfactual insertion of real cutouts minus the same-shape skin control
  on the same test images (flip rates and mean probability shifts, paired), i.e. what the
  artifact's look does beyond covering part of the image; ``insertion_excess_cleaned``: the same
  when all three versions first go through the pipeline's detector and remover, as images do
  before a classifier trained on cleaned data in deployment;
- ``removal``: the shift of p(melanoma) when the val/test images that carry the artifact are
  cleaned by the pipeline (detector + remover), benign and malignant apart;
- ``benign_p_gap``: mean p(melanoma) on benign test images with the artifact minus without (human
  labels): a "patches => benign" shortcut makes it negative;
- for a cleaned variant, each of these minus raw's (paired over images and seeds) and its AUROC
  minus raw's.

``association`` gives, per artifact, the share of melanomas among the training images labelled with
it and without it, and so the direction a shortcut would take: ``benign`` when the artifact marks
benign lesions (ISIC's patches and ink), ``melanoma`` when it marks melanomas (rulers). The claim reads
the flips and the shift in that direction: for a ``benign`` artifact the share of caught melanomas
flipped to benign (``flip_m2b``) and the shift on melanomas; for a ``melanoma`` one the share of
benign images flipped to malignant (``flip_b2m``) and the shift on benign images.

``claim`` states the test for each cleaned variant and artifact: the raw classifier's insertion
effect exceeds the control in the shortcut's direction (flip excess interval above 0 and shift excess
interval on the shortcut's side of 0), the cleaned classifier's excess intervals for the same two
figures include 0 (on raw inputs, and behind the cleaning when it was measured), and its test AUROC
is no more than ``max_auroc_drop`` below raw's.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from dermclean.data.manifest import in_split
from dermclean.proof.evaluate import ClassifierEvaluation, EvaluationData, Plans, paired_differences
from dermclean.proof.real_artifacts import ArtifactBank
from dermclean.proof.stats import Interval

INSERTION_FIGURES = ("flip_rate", "flip_m2b", "flip_b2m", "shift_malignant", "shift_benign")
REMOVAL_FIGURES = ("shift_benign", "shift_malignant", "flip_rate")


def _bounds(interval: dict[str, Any] | None) -> tuple[float, float]:
    """``(low, high)`` of an interval's dict; NaN for a missing interval or bound."""
    return (interval or {}).get("low", math.nan), (interval or {}).get("high", math.nan)


def _includes_zero(interval: dict[str, Any] | None) -> bool:
    """The interval is defined and holds 0."""
    low, high = _bounds(interval)
    return math.isfinite(low) and math.isfinite(high) and low <= 0.0 <= high


def _above_zero(interval: dict[str, Any] | None) -> bool:
    """The interval is defined and lies wholly above 0."""
    low, _ = _bounds(interval)
    return math.isfinite(low) and low > 0.0


def _excludes_zero(interval: dict[str, Any] | None) -> bool:
    """The interval is defined and lies wholly above or below 0."""
    low, high = _bounds(interval)
    return math.isfinite(low) and math.isfinite(high) and (low > 0.0 or high < 0.0)


def _below_zero(interval: dict[str, Any] | None) -> bool:
    """The interval is defined and lies wholly below 0."""
    _, high = _bounds(interval)
    return math.isfinite(high) and high < 0.0


def shortcut_association(manifest: pd.DataFrame, artifact: str, split: str = "train") -> dict[str, Any]:
    """The share of melanomas among ``split``'s images labelled with ``artifact`` and without it (human
    labels; unlabelled rows left out) and the shortcut's ``direction``: ``"benign"`` when the artifact
    is rarer on melanomas, ``"melanoma"`` when commoner, ``None`` when either group is empty."""
    rows = manifest[in_split(manifest, split)]
    labels = pd.DataFrame({"a": pd.to_numeric(rows[artifact], errors="coerce"),
                           "m": pd.to_numeric(rows["melanoma"], errors="coerce")}).dropna()
    with_a, without = labels["m"][labels["a"] == 1], labels["m"][labels["a"] == 0]
    out: dict[str, Any] = {"split": split, "n_with": int(len(with_a)), "n_without": int(len(without)),
                           "melanoma_share_with": float(with_a.mean()) if len(with_a) else None,
                           "melanoma_share_without": float(without.mean()) if len(without) else None,
                           "direction": None}
    if len(with_a) and len(without):
        out["direction"] = "benign" if with_a.mean() < without.mean() else "melanoma"
    return out


def _at_control(excess: dict[str, Any], flip: str, shift: str) -> bool:
    """Both excess intervals, the flips' and the shift's, are defined and hold 0."""
    return _includes_zero(excess.get(flip)) and _includes_zero(excess.get(shift))


def artifact_claim(raw: dict[str, Any], cleaned: dict[str, Any], direction: str, *, auroc_minus_raw: float,
                   max_auroc_drop: float) -> dict[str, Any]:
    """The claim for one artifact (see the module docstring) from raw's and a cleaned variant's figures
    (their ``insertion_excess`` and ``insertion_excess_cleaned`` sections) and the shortcut's direction."""
    flip, shift = claim_figures(direction)
    on_side = _below_zero if direction == "benign" else _above_zero
    r_ex, c_ex, c_cl = raw["insertion_excess"], cleaned["insertion_excess"], cleaned.get("insertion_excess_cleaned")
    return {"direction": direction, "flip": flip, "shift": shift,
            "raw_insertion_exceeds_control": bool(_above_zero(r_ex.get(flip)) and on_side(r_ex.get(shift))),
            "cleaned_at_control_level": _at_control(c_ex, flip, shift),
            "cleaned_at_control_level_behind_cleaning": _at_control(c_cl, flip, shift) if c_cl else None,
            "auroc_within_drop": bool(auroc_minus_raw >= -max_auroc_drop)}


def claim_figures(direction: str) -> tuple[str, str]:
    """The flip and shift figures a shortcut towards ``direction`` moves (see the module docstring)."""
    return ("flip_m2b", "shift_malignant") if direction == "benign" else ("flip_b2m", "shift_benign")


def _figures(intervals: dict[str, Interval], names: dict[str, str]) -> dict[str, Any]:
    return {key: intervals[name].as_dict() for key, name in names.items() if name in intervals}


def real_shortcut_summary(data: EvaluationData, evals: dict[tuple[str, str], list[ClassifierEvaluation]],
                          intervals: dict[tuple[str, str], dict[str, Interval]], plans: Plans, *,
                          banks: dict[str, ArtifactBank], removal_variant: str | None,
                          associations: dict[str, dict[str, Any]], max_auroc_drop: float = 0.02) -> dict[str, Any]:
    """The section ``real_shortcut`` of ``metrics/shortcut.json`` (see the module docstring);
    ``associations`` per artifact of ``banks``: :func:`shortcut_association`."""
    variants = sorted(v for f, v in evals if f == "natural")
    out: dict[str, Any] = {
        "removal_variant": removal_variant,
        "banks": {a: {"n_source_images": b.n_source_images, "n_cutouts": len(b.cutouts)} for a, b in banks.items()},
        "n_insertion": {a: int(len(data.insertions[f"real_{a}"].melanoma)) for a in banks if f"real_{a}" in data.insertions},
        "n_removal": {a: {"benign": int((r.melanoma == 0).sum()), "melanoma": int((r.melanoma == 1).sum())}
                      for a, r in data.removals.items()},
        "association": {a: associations.get(a) for a in banks}, "variants": {}, "claim": {}}
    for v in variants:
        values = intervals[("natural", v)]
        entry: dict[str, Any] = {"auroc_test": values["auroc_test"].as_dict()}
        names = {a: {"insertion_excess": {k: f"counterfactual/real_{a}/excess/{k}" for k in INSERTION_FIGURES},
                     "insertion_excess_cleaned": {k: f"counterfactual_cleaned/real_{a}/excess/{k}"
                                                  for k in INSERTION_FIGURES},
                     "removal": {k: f"removal/{a}/{k}" for k in REMOVAL_FIGURES},
                     "benign_p_gap": {"benign_p_gap": f"subgroups/{a}/benign_p_gap"}} for a in banks}
        paired = v != "raw" and ("natural", "raw") in evals and (
            sorted(e.seed for e in evals[("natural", v)]) == sorted(e.seed for e in evals[("natural", "raw")]))
        diffs = {}
        if paired:
            wanted = ["auroc_test"] + [n for sections in names.values() for m in sections.values() for n in m.values()]
            diffs = paired_differences(data, evals[("natural", v)], evals[("natural", "raw")], wanted, plans)
            entry["auroc_minus_raw"] = diffs["auroc_test"].as_dict()
        for a, sections in names.items():
            fig: dict[str, Any] = {}
            for section, mapping in sections.items():
                fig[section] = _figures(values, mapping)
                if paired:
                    fig[f"{section}_minus_raw"] = _figures(diffs, mapping)
            entry[a] = fig
        out["variants"][v] = entry
    raw = out["variants"].get("raw")
    for v in variants:
        if v == "raw" or raw is None or "auroc_minus_raw" not in out["variants"][v]:
            continue
        cleaned = out["variants"][v]
        claims = {}
        for a in banks:
            direction = (associations.get(a) or {}).get("direction")
            if direction is not None and "flip_rate" in raw[a]["insertion_excess"]:
                claims[a] = artifact_claim(raw[a], cleaned[a], direction,
                                           auroc_minus_raw=cleaned["auroc_minus_raw"]["mean"],
                                           max_auroc_drop=max_auroc_drop)
        out["claim"][v] = claims
    return out
