"""``flags.csv``: per image, the detector's probabilities, its 0/1 flags and the masked share.

Read from a ``detect`` output folder (``scores.csv`` and ``masks/``) and the operating points
saved in the detector bundle that wrote it (``operating_points.json``, fitted on validation labels).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image

from dermclean.constants import OUTLIER_CLASSES
from dermclean.detection.operating_points import SCORE_KEYS, OperatingPoints
from dermclean.errors import OptionError
from dermclean.io import read_json
from dermclean.tracking.models import resolve_model

FLAG_COLUMNS: tuple[str, ...] = ("image", *SCORE_KEYS, *(f"{k}_flag" for k in SCORE_KEYS), "mask_area")
"""``flags.csv``'s columns (a contract): probabilities in [0, 1], flags 0/1, ``mask_area`` the masked share."""


def load_operating_points(model: str) -> OperatingPoints:
    """The bundle's operating points; a clear error for a bundle saved without them."""
    folder = resolve_model(model)
    path = folder / "operating_points.json"
    if not path.is_file():
        raise OptionError(f"the detector {model} has no operating_points.json (per-type flag thresholds fitted on "
                          f"validation); rebuild it with `dvc repro detect`, or pass --model with a newer bundle")
    return OperatingPoints.from_dict(read_json(path))


def mask_path(detections: Path, image: str) -> Path:
    """``masks/<image path without suffix>.png`` (subfolders mirrored, as ``detect --recursive`` writes)."""
    return detections / "masks" / PurePosixPath(image).with_suffix(".png")


def mask_area(path: Path) -> float:
    """Share of the mask's pixels set (0/255 PNG)."""
    with Image.open(path) as handle:
        return float((np.asarray(handle.convert("L")) > 0).mean())


def read_scores(detections: str | os.PathLike[str], points: OperatingPoints) -> pd.DataFrame:
    """``image``, the probabilities and the flags of a ``detect`` output folder's ``scores.csv``, in its order."""
    detections = Path(detections)
    scores_file = detections / "scores.csv"
    if not scores_file.is_file():
        raise OptionError(f"--detections {detections} has no scores.csv; expected the output folder of "
                          f"`dermclean detect`")
    scores = pd.read_csv(scores_file, dtype={"image": str})
    missing = [c for c in ("image", "score", *OUTLIER_CLASSES) if c not in scores.columns]
    if missing:
        raise OptionError(f"{scores_file} lacks the columns {missing}; expected a `dermclean detect` scores.csv")
    table = scores[["image", *OUTLIER_CLASSES]].copy()
    table["any"] = scores["score"]
    return pd.concat([table, points.flags(scores)], axis=1)


def read_flags(detections: str | os.PathLike[str], points: OperatingPoints) -> pd.DataFrame:
    """The :data:`FLAG_COLUMNS` frame of a ``detect`` output folder, in its ``scores.csv`` order."""
    detections = Path(detections)
    table = read_scores(detections, points)
    masks = [mask_path(detections, name) for name in table["image"]]
    missing = next((m for m in masks if not m.is_file()), None)
    if missing is not None:
        raise OptionError(f"--detections {detections}: {missing.relative_to(detections)} is missing; expected a "
                          f"complete `dermclean detect` output (a mask for every row of scores.csv)")
    table["mask_area"] = [mask_area(m) for m in masks]
    return table[list(FLAG_COLUMNS)]
