"""Removal quality on paired data: clean image -> painted artifact (exact mask) -> removed.

For every clean image of a split (labels: none of ruler/ink/patches) and every outlier type, one
artifact is painted in a *training* style (``exclude_styles=HELDOUT_STYLES[kind]``) and one in a
*held-out* style (never seen by the image-conditioned model), each with its exact mask. Each method
removes it inside the mask dilated by ``removal.dilation``; PSNR and SSIM against the untouched
original are measured inside that dilated mask and outside it (:mod:`dermclean.removal.metrics`),
per method, per style group and per type, plus seconds per image. The figure grid per method shows
original / painted / mask / cleaned rows.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.artifacts import HELDOUT_STYLES, paint_artifact
from dermclean.data.images import load_rgb
from dermclean.data.manifest import clean_mask, image_paths, in_split, read_manifest
from dermclean.data.masks import dilate_mask
from dermclean.io import atomic_path
from dermclean.removal.engine import RemovalConfig, make_remover
from dermclean.removal.metrics import region_scores

GROUPS: tuple[str, ...] = ("train_styles", "heldout_styles")


@dataclass
class Case:
    """One painted test image."""

    image_id: str
    kind: str
    group: str
    style: str
    original: np.ndarray   # uint8 H x W x 3
    corrupted: np.ndarray  # uint8 H x W x 3
    mask: np.ndarray       # bool H x W, dilated


def paint_cases(images: list[tuple[str, np.ndarray]], *, dilation: int, seed: int,
                kinds: tuple[str, ...] = OUTLIER_CLASSES) -> list[Case]:
    """Paint one training-style and one held-out-style artifact of each kind onto each image."""
    cases = []
    for n, (image_id, image) in enumerate(images):
        for k, kind in enumerate(kinds):
            heldout = tuple(HELDOUT_STYLES.get(kind, ()))
            for g, group in enumerate(GROUPS):
                rng = np.random.default_rng([seed, n, k, g])
                if group == "heldout_styles":
                    if not heldout:
                        continue
                    painted = paint_artifact(image, kind, rng, style=str(rng.choice(heldout)))
                else:
                    painted = paint_artifact(image, kind, rng, exclude_styles=heldout)
                mask = dilate_mask(np.asarray(painted.mask, dtype=bool), dilation)
                cases.append(Case(image_id=image_id, kind=kind, group=group, style=str(painted.style),
                                  original=image, corrupted=painted.image, mask=mask))
    return cases


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def summarise(scores: list[tuple[Case, dict[str, float]]]) -> dict[str, Any]:
    """Mean scores per style group and type (``all`` pools them), with counts."""
    buckets: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for case, s in scores:
        for group in (case.group, "all"):
            for kind in (case.kind, "all"):
                buckets[(group, kind)].append(s)
    out: dict[str, Any] = {}
    for (group, kind), rows in sorted(buckets.items()):
        out.setdefault(group, {})[kind] = {key: _mean([r[key] for r in rows]) for key in rows[0]} | {"n": len(rows)}
    return out


def evaluate_removal(manifest_path: str | os.PathLike[str], *, split: str = "test", methods: list[str],
                     guided_model: str | os.PathLike[str] | None, imagecond_model: str | os.PathLike[str] | None,
                     config: RemovalConfig, device: str | None = None, seed: int = 0,
                     plots_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Removal metrics per method on ``split``'s clean images with painted artifacts (see module docstring).

    Returns ``{"split", "n_images", "n_cases", "dilation", "methods": {method: {"seconds_per_image",
    "model_version", "train_styles"|"heldout_styles"|"all": {type|"all": {psnr_in, ssim_in, psnr_out,
    ssim_out, n}}}}, "psnr_in_gain_over_telea": {method: dB}}``. Figures: ``plots_dir/<method>_grid.png``.
    """
    df = read_manifest(manifest_path)
    pick = in_split(df, split) & clean_mask(df).to_numpy()
    rows = df[pick]
    if rows.empty:
        raise ValueError(f"{manifest_path}: no clean images (none of ruler/ink/patches) in split {split!r}; "
                         f"expected at least one to paint artifacts on")
    if config.eval_images:
        rows = rows.iloc[:config.eval_images]
    images = [(str(i), load_rgb(p)) for i, p in zip(rows["image_id"], image_paths(rows, manifest_path))]
    cases = paint_cases(images, dilation=config.dilation, seed=seed)
    models = {"inpaint": guided_model, "imagecond": imagecond_model, "telea": None}
    result: dict[str, Any] = {"split": split, "n_images": len(images), "n_cases": len(cases),
                              "dilation": config.dilation, "methods": {}}
    outputs: dict[str, list[np.ndarray]] = {}
    for method in methods:
        remover = make_remover(method, model=models[method], config=config, device=device)
        cleaned = remover.fill([c.corrupted for c in cases], [c.mask for c in cases])
        outputs[method] = cleaned
        scores = [(c, asdict(region_scores(out, c.original, c.mask))) for c, out in zip(cases, cleaned)]
        result["methods"][method] = {"seconds_per_image": remover.seconds / max(1, len(cases)),
                                     "model_version": remover.version, **summarise(scores)}
    if "telea" in result["methods"]:
        base = result["methods"]["telea"]["all"]["all"]["psnr_in"]
        result["psnr_in_gain_over_telea"] = {m: r["all"]["all"]["psnr_in"] - base
                                             for m, r in result["methods"].items() if m != "telea"}
    if plots_dir is not None:
        for method, cleaned in outputs.items():
            figure_grid(cases, cleaned, Path(plots_dir) / f"{method}_grid.png", title=method,
                        rows=config.figure_rows)
    return result


def figure_grid(cases: list[Case], cleaned: list[np.ndarray], path: Path, *, title: str, rows: int = 4) -> Path:
    """Before/after grid (original, painted, dilated mask, cleaned) for the first cases of each type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen, seen = [], set()
    for i, c in enumerate(cases):  # one case per (kind, group) first, then the rest
        if (c.kind, c.group) not in seen:
            seen.add((c.kind, c.group))
            chosen.append(i)
    chosen = (chosen + [i for i in range(len(cases)) if i not in chosen])[:max(1, rows)]
    fig, axes = plt.subplots(len(chosen), 4, figsize=(8, 2.1 * len(chosen)), squeeze=False)
    for r, i in enumerate(chosen):
        c = cases[i]
        panels = [c.original, c.corrupted, c.mask, cleaned[i]]
        names = ["original", f"painted: {c.kind}/{c.style}", "dilated mask", f"cleaned ({title})"]
        for ax, img, name in zip(axes[r], panels, names):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            ax.set_title(name + (" [held out]" if c.group == "heldout_styles" and name.startswith("painted") else ""),
                         fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
