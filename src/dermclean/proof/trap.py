"""Trap sets (Bissoto et al. 2019/2020): a controlled shortcut and a test where it is reversed.

From a split manifest, :func:`make_trap_split` keeps the rows whose human label says they do *not*
carry ``artifact`` (rows with it, or unlabelled, are dropped so the painted artifact is the only
one) and paints ``artifact`` -- with a renderer style held out of removal training
(:mod:`dermclean.proof.painting`) -- onto a chosen subset:

- **biased set** (``manifest.csv``; train, val and test splits): within each split, a share
  ``(1 + strength) / 2`` of the images of the associated class (``artifact_with``, melanoma by
  default, as ink goes with excised lesions in Winkler et al. 2019) and ``(1 - strength) / 2`` of
  the other class are painted. ``strength=0``: independent of the label; ``strength=1``: the
  artifact appears exactly on the associated class. Counts are ``round(share * n_class)``, drawn
  without replacement, so they are exact.
- **trap set** (``trap.csv``; val and test splits): the same val and test images painted the other
  way round: a share ``(1 - strength) / 2`` of the associated class and ``(1 + strength) / 2`` of
  the other. Its val rows serve choices (the best cleaned variant), its test rows the report.

A classifier trained on the biased train split that uses the artifact as a shortcut scores well on
the biased test split and badly on the trap test; the AUROC difference is the trap gap.

Outputs under ``out_dir`` (written atomically as one folder): ``images/<id>.png`` (every biased
train and val row, painted or not, so that folder is what each removal method cleans: the trap
training set is painted FIRST and then cleaned), ``test_images/`` (biased test), ``trap_images/``
(trap val/test), ``masks/``, ``test_masks/``, ``trap_masks/`` (painted rows only, 0/255 PNG),
``trap.json`` (settings and counts) and the two manifests. Each manifest's ``<artifact>`` flag is set to the painted truth and a
column ``painted_artifact`` (0/1) records it; ``painted_style`` names the renderer style.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermclean.constants import OUTLIER_CLASSES, SPLITS
from dermclean.data.images import load_rgb, save_png, to_tensor, to_uint8
from dermclean.data.manifest import coerce, image_paths
from dermclean.io import atomic_path, write_json
from dermclean.proof.painting import Painter, heldout_painter

MANIFEST = "manifest.csv"
TRAP = "trap.csv"
TRAIN_IMAGES = "images"  # biased train + val images: the folder each removal method cleans
LAYOUT = (  # (manifest, reversed correlation, splits, image folder, mask folder)
    ("biased", False, ("train", "val"), TRAIN_IMAGES, "masks"),
    ("biased", False, ("test",), "test_images", "test_masks"),
    ("trap", True, ("val", "test"), "trap_images", "trap_masks"),
)


@dataclass(frozen=True, kw_only=True)
class TrapSet:
    """The written trap set: its two manifests (as frames and paths) and the painted counts."""

    out_dir: Path
    manifest: pd.DataFrame
    trap: pd.DataFrame
    counts: dict[str, dict[str, int]]

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST

    @property
    def trap_path(self) -> Path:
        return self.out_dir / TRAP


def painted_shares(strength: float, *, reversed_: bool) -> tuple[float, float]:
    """``(share of the associated class painted, share of the other class painted)``."""
    hi, lo = (1.0 + strength) / 2.0, (1.0 - strength) / 2.0
    return (lo, hi) if reversed_ else (hi, lo)


def choose_painted(labels: np.ndarray, *, associated: int, strength: float, reversed_: bool,
                   rng: np.random.Generator) -> np.ndarray:
    """Bool ``(N,)``: which rows to paint, exactly ``round(share * n_class)`` per class."""
    share_assoc, share_other = painted_shares(strength, reversed_=reversed_)
    chosen = np.zeros(labels.shape, dtype=bool)
    for value, share in ((associated, share_assoc), (1 - associated, share_other)):
        rows = np.flatnonzero(labels == value)
        k = int(round(share * rows.size))
        if k:
            chosen[rng.choice(rows, size=k, replace=False)] = True
    return chosen


def eligible_rows(df: pd.DataFrame, artifact: str) -> pd.DataFrame:
    """Rows labelled as *not* carrying ``artifact``, with a known melanoma label and a split."""
    flag = pd.to_numeric(df[artifact], errors="coerce")
    keep = flag.eq(0) & df["melanoma"].notna() & df["split"].isin(SPLITS)
    return df[keep.fillna(False).astype(bool)].copy()


def make_trap_split(manifest_df: pd.DataFrame, *, manifest_path: str | os.PathLike[str],
                    out_dir: str | os.PathLike[str], artifact: str = "ink", strength: float = 0.9, seed: int = 0,
                    heldout_style: str | None = None, artifact_with: str = "melanoma", size: int | None = None,
                    painter: Painter | None = None) -> TrapSet:
    """Write a biased set and its trap test under ``out_dir`` (see module docstring); return :class:`TrapSet`.

    ``manifest_df`` rows live at ``manifest_path`` (image paths resolve against it). ``size``: images
    with a side longer than ``size`` are resized to ``size x size`` before painting (``None``: never).
    ``heldout_style``: renderer style (default: the held-out style of ``artifact``); ``painter``
    overrides the renderer altogether. Raises ``ValueError`` on an unknown artifact, a strength
    outside [0, 1], or a split with no eligible image of one class.
    """
    if artifact not in OUTLIER_CLASSES:
        raise ValueError(f"proof.trap_artifact {artifact!r}; expected one of {OUTLIER_CLASSES}")
    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"proof.trap_strength {strength}; expected a value in [0, 1]")
    if artifact_with not in ("melanoma", "benign"):
        raise ValueError(f"artifact_with {artifact_with!r}; expected 'melanoma' or 'benign'")
    associated = 1 if artifact_with == "melanoma" else 0
    paint = painter or heldout_painter(artifact, style=heldout_style)
    rows = eligible_rows(coerce(manifest_df), artifact)
    for split in SPLITS:
        y = rows.loc[rows["split"] == split, "melanoma"].astype(int)
        if y.nunique() < 2:
            raise ValueError(f"{manifest_path}: split {split!r} has {int((y == 1).sum())} melanoma and "
                             f"{int((y == 0).sum())} benign images without {artifact}; a trap set needs both")
    sources = dict(zip(rows["image_id"], image_paths(rows, manifest_path)))
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    counts: dict[str, dict[str, int]] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        parts: dict[str, list[pd.DataFrame]] = {"biased": [], "trap": []}
        for name, reversed_, splits, img_dir, mask_dir in LAYOUT:
            part = rows[rows["split"].isin(splits)].copy()
            painted = np.zeros(len(part), dtype=bool)
            for split in splits:
                in_split = (part["split"] == split).to_numpy()
                painted[in_split] = choose_painted(part.loc[in_split, "melanoma"].astype(int).to_numpy(),
                                                   associated=associated, strength=float(strength),
                                                   reversed_=reversed_, rng=rng)
            styles, paths = [], []
            for image_id, do_paint in zip(part["image_id"], painted):
                image = _resized(load_rgb(sources[image_id], min_size=1), size)
                style = ""
                if do_paint:
                    out = paint(image, rng)
                    image, style = np.asarray(out.image, dtype=np.uint8), str(getattr(out, "style", ""))
                    save_png(tmp / mask_dir / f"{image_id}.png", np.asarray(out.mask, dtype=bool))
                save_png(tmp / img_dir / f"{image_id}.png", image)
                paths.append(f"{img_dir}/{image_id}.png")
                styles.append(style)
            part["image_path"] = paths
            part[artifact] = painted.astype(int)
            part["painted_artifact"] = painted.astype(int)
            part["painted_style"] = styles
            part["source"] = part["source"].fillna("").astype(str) + f"+trap-{artifact}"
            parts[name].append(part)
            y = part["melanoma"].astype(int).to_numpy()
            for split in splits:
                sel = (part["split"] == split).to_numpy()
                counts[f"{name}/{split}"] = {
                    "n": int(sel.sum()), "melanoma": int(y[sel].sum()),
                    "painted_melanoma": int((painted & sel & (y == 1)).sum()),
                    "painted_benign": int((painted & sel & (y == 0)).sum())}
        frames = {name: coerce(pd.concat(p).reset_index(drop=True)) for name, p in parts.items()}
        frames["biased"].to_csv(tmp / MANIFEST, index=False)
        frames["trap"].to_csv(tmp / TRAP, index=False)
        write_json(tmp / "trap.json", {"artifact": artifact, "strength": float(strength), "seed": int(seed),
                                       "artifact_with": artifact_with, "size": size, "counts": counts,
                                       "styles": sorted({s for f in frames.values() for s in f["painted_style"] if s})})
    return TrapSet(out_dir=out_dir, manifest=frames["biased"], trap=frames["trap"], counts=counts)


def _resized(image: np.ndarray, size: int | None) -> np.ndarray:
    """``image`` resized to ``size x size`` when a side is longer than ``size``; otherwise as it is."""
    if size is None or max(image.shape[:2]) <= size:
        return image
    return to_uint8(to_tensor(image, size))
