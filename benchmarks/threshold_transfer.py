"""Benchmark: does the pixel threshold fitted on clean validation images hold on clean images it never saw?

The threshold is fitted on the clean validation images at ``detection.fpr_budget`` by each rule of
:data:`~dermclean.detection.threshold.THRESHOLD_RULES` (``pixels``: flag exactly the budget of those
pixels; ``upper_bound``: the flagged share's bootstrap upper bound over those images at the budget).
With ``--split val`` the clean validation images are halved ``--halvings`` times at random: each rule
is fitted on one half and the flagged share of clean pixels is measured on the other (for a fused
detector the members' calibrations are fitted on the first half too). With ``--split test`` (report
once) each rule is fitted on all clean validation images and measured on the clean test images, overall
and per acquisition effect (``by_effect``).
Beside the flagged share, what each threshold costs: the share of painted artifact pixels it flags
(recall) and the pooled Dice, every renderer family painted onto the first ``--n-painted`` clean
images of the split (validation: whichever half; the maps are the same).

``--segment`` names a segmenter model folder (e.g. ``lofo_segment.py``'s ``--work``/model); with
``--imagecond`` the two are fused as the pipeline's fused bundle is (``detection.fusion``).

    python benchmarks/threshold_transfer.py --manifest data/prepared/manifest.csv --segment runs/seg_f0/model \
        --imagecond runs/ic_styles/model --out threshold_val.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dermclean.config import from_dict, load_params, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.families import FAMILIES, paint_family
from dermclean.data.manifest import effect_groups
from dermclean.detection.config import DetectionConfig, fusion_settings, imagecond_detection_config
from dermclean.detection.family_eval import clean_split_images, clean_split_rows
from dermclean.detection.fusion import MapCalibration, fuse_rarity
from dermclean.detection.storage import build_detector
from dermclean.detection.threshold import THRESHOLD_RULES, Threshold
from dermclean.env import pick_device
from dermclean.io import write_json


def _maps(detector, images: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(d.anomaly_map, dtype=np.float32) for d in detector.detect(images)]


def _combine(members: list[list[np.ndarray]], calibrate: list[int], fusion: dict) -> list[np.ndarray]:
    """Each group of ``members`` (per detector, its maps of the same images) fused on the rarity scale, the
    calibrations fitted on the maps indexed by ``calibrate`` of the first group."""
    calibrations = [MapCalibration.fit([maps[i] for i in calibrate]) for maps in members[0]]
    return [[fuse_rarity([c.apply(m) for c, m in zip(calibrations, pair)], weight=fusion["weight"],
                         rule=fusion["rule"]) for pair in zip(*group)] for group in members]


def _flagged(maps: list[np.ndarray], value: float) -> float:
    return float(sum(int((m > value).sum()) for m in maps) / sum(m.size for m in maps))


def _cost(maps: list[np.ndarray], masks: list[np.ndarray], value: float) -> dict[str, float]:
    tp = sum(int(((m > value) & k).sum()) for m, k in zip(maps, masks))
    flagged = sum(int((m > value).sum()) for m in maps)
    truth = sum(int(k.sum()) for k in masks)
    return {"recall": tp / max(truth, 1), "dice": 2 * tp / max(flagged + truth, 1)}


def _figures(fit_maps, eval_maps, painted_maps, masks, *, budget: float, confidence: float, seed: int,
             groups: dict[str, np.ndarray] | None = None) -> dict:
    """Each rule's threshold and figures; ``groups`` (bool per ``eval_maps`` image, e.g. per acquisition
    effect) adds the flagged share of each group's pixels, pooled as ``flagged_share`` is, as ``by_effect``."""
    out = {}
    for rule in THRESHOLD_RULES:
        th = Threshold.fit(fit_maps, fpr_budget=budget, rule=rule, confidence=confidence, seed=seed)
        per_image = np.array([float((m > th.value).mean()) for m in eval_maps])
        worst = np.sort(per_image)[::-1][:6].sum() / max(per_image.sum(), 1e-12)
        out[rule] = {"threshold": th.value, "fit_share": _flagged(fit_maps, th.value),
                     "flagged_share": _flagged(eval_maps, th.value), "images_flagged": float((per_image > 0).mean()),
                     "worst6_share": float(worst), **_cost(painted_maps, masks, th.value)}
        if groups is not None:
            out[rule]["by_effect"] = {name: {"images": int(sel.sum()), "flagged_share": _flagged(
                [m for m, keep in zip(eval_maps, sel) if keep], th.value)} for name, sel in groups.items() if sel.any()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--segment", type=Path, required=True, help="segmenter model folder")
    parser.add_argument("--imagecond", type=Path, default=None, help="image-conditioned model folder (fused)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--halvings", type=int, default=40)
    parser.add_argument("--n-painted", type=int, default=16)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(args.params, profile=args.profile)
    seed, device = params_seed(params), pick_device(args.device)
    section = {k: v for k, v in params["detection"].items() if k in DetectionConfig.__dataclass_fields__}
    config = from_dict(DetectionConfig, section)
    rule, weight = fusion_settings(params)
    fusion = {"rule": rule, "weight": weight}
    detectors = [build_detector(detector_kind="segment", unet_dir=args.segment, config=config, device=device)]
    if args.imagecond is not None:
        detectors.insert(0, build_detector(detector_kind="imagecond", unet_dir=args.imagecond,
                                           config=imagecond_detection_config(params), device=device))
    val = clean_split_images(args.manifest, "val")
    target = val if args.split == "val" else clean_split_images(args.manifest, "test")
    painted, masks = [], []
    for kind in OUTLIER_CLASSES:
        for f_index, family in enumerate(FAMILIES[kind]):
            for i, im in enumerate(target[:args.n_painted]):
                rng = np.random.default_rng([seed, i, OUTLIER_CLASSES.index(kind), f_index])
                p = paint_family(im, kind, family, rng)
                painted.append(p.image)
                masks.append(p.mask)
    print(f"{len(val)} clean val images, {len(target)} clean {args.split} images, {len(painted)} painted", flush=True)
    val_maps = [_maps(d, val) for d in detectors]
    target_maps = val_maps if args.split == "val" else [_maps(d, target) for d in detectors]
    painted_maps = [_maps(d, painted) for d in detectors]
    budget, confidence = config.fpr_budget, config.threshold_confidence
    result = {"split": args.split, "fpr_budget": budget, "confidence": confidence, "fusion": fusion
              if args.imagecond is not None else None, "n_val": len(val), "n_target": len(target),
              "n_painted": len(painted)}
    if args.split == "test":
        fit, held, paint = _combine([val_maps, target_maps, painted_maps], list(range(len(val))), fusion) \
            if args.imagecond is not None else (val_maps[0], target_maps[0], painted_maps[0])
        groups = effect_groups(clean_split_rows(args.manifest, "test"))
        result["rules"] = _figures(fit, held, paint, masks, budget=budget, confidence=confidence, seed=seed,
                                   groups=groups)
    else:
        rng = np.random.default_rng(seed)
        runs = []
        for _ in range(args.halvings):
            order = rng.permutation(len(val))
            a, b = sorted(order[:len(val) // 2]), sorted(order[len(val) // 2:])
            if args.imagecond is not None:
                halves = [[[m[i] for i in half] for m in val_maps] for half in (a, b)]
                fit, held, paint = _combine([*halves, painted_maps], list(range(len(a))), fusion)
            else:
                fit, held, paint = [val_maps[0][i] for i in a], [val_maps[0][i] for i in b], painted_maps[0]
            runs.append(_figures(fit, held, paint, masks, budget=budget, confidence=confidence, seed=seed))
        result["rules"] = {rule: {key: float(np.mean([r[rule][key] for r in runs])) for key in runs[0][rule]}
                           | {"over_budget": float(np.mean([r[rule]["flagged_share"] > budget for r in runs])),
                              "flagged_share_q90": float(np.quantile([r[rule]["flagged_share"] for r in runs], 0.9))}
                           for rule in THRESHOLD_RULES}
    for rule, f in result["rules"].items():
        extra = f"  over budget in {100 * f['over_budget']:.0f} % of halvings" if "over_budget" in f else ""
        print(f"{rule:12s} flagged clean {100 * f['flagged_share']:.2f} % (fitted on {100 * f['fit_share']:.2f} %)"
              f"  recall {f['recall']:.3f}  Dice {f['dice']:.3f}{extra}")
        if "by_effect" in f:
            print("    by acquisition effect: " + ", ".join(f"{name} {100 * g['flagged_share']:.2f} % ({g['images']})"
                                                      for name, g in f["by_effect"].items()))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
