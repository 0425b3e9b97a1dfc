"""The manifest: one table that every stage reads and writes.

Columns (typed, in this order):

=============  ===========  ==========================================================
column         dtype        meaning
=============  ===========  ==========================================================
image_id       string       unique id, no path separators or ``..``
image_path     string       path of the image, relative to the manifest's folder
                            (absolute paths are allowed and kept)
diagnosis      string       nevus / melanoma / seborrheic_keratosis / other; nullable
melanoma       Int8         0/1
ruler ...      Int8         the seven artifact flags (``constants.ARTIFACT_FLAGS``); nullable
split          string       train / val / test; nullable before splitting
source         string       where the row came from (``synthetic``, a folder name ...)
=============  ===========  ==========================================================

Extra columns (e.g. provenance of a cleaned dataset) are kept after these.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from dermclean.constants import ACQUISITION_EFFECTS, ARTIFACT_FLAGS, OUTLIER_CLASSES
from dermclean.errors import DataError, PathNotFound
from dermclean.io import atomic_path

COLUMNS: dict[str, str] = {
    "image_id": "string",
    "image_path": "string",
    "diagnosis": "string",
    "melanoma": "Int8",
    **{flag: "Int8" for flag in ARTIFACT_FLAGS},
    "split": "string",
    "source": "string",
}


class ManifestError(DataError):
    """A manifest that does not have the expected columns or types."""


def coerce(df: pd.DataFrame, *, where: str = "manifest") -> pd.DataFrame:
    """Return ``df`` with the schema's columns first, typed; raise ``ManifestError`` naming what is missing."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{where}: missing columns {missing}; expected {list(COLUMNS)}")
    out = df.copy()
    for col, dtype in COLUMNS.items():
        try:
            if dtype == "Int8":
                out[col] = pd.to_numeric(out[col], errors="raise").astype("Int8")
            else:
                out[col] = out[col].astype("string")
        except (ValueError, TypeError) as exc:
            raise ManifestError(f"{where}: column {col!r} cannot be read as {dtype}: {exc}") from exc
    extra = [c for c in out.columns if c not in COLUMNS]
    return out[list(COLUMNS) + extra].reset_index(drop=True)


def empty() -> pd.DataFrame:
    return coerce(pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS.items()}))


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest CSV and type it; ``image_path`` stays as written (see :func:`image_paths`)."""
    path = Path(path)
    if not path.is_file():
        raise PathNotFound(f"manifest {path} not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read as a CSV manifest ({type(exc).__name__}: {exc}); expected "
                            f"a UTF-8 CSV with columns {', '.join(COLUMNS)}") from None
    return coerce(df, where=str(path))


def write_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Type-check and write ``df`` to ``path`` atomically."""
    df = coerce(df, where=str(path))
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def image_paths(df: pd.DataFrame, manifest_path: str | os.PathLike[str]) -> list[Path]:
    """Absolute image paths of ``df``'s rows, resolving relative ones against the manifest's folder."""
    root = Path(manifest_path).resolve().parent
    return [Path(p) if os.path.isabs(p) else (root / p).resolve() for p in df["image_path"]]


def relative_to_manifest(image: str | os.PathLike[str], manifest_path: str | os.PathLike[str]) -> str:
    """The path to store in ``image_path`` for ``image`` in a manifest written at ``manifest_path``."""
    return os.path.relpath(Path(image).resolve(), Path(manifest_path).resolve().parent)


def outlier_labels(df: pd.DataFrame) -> "pd.DataFrame":
    """The ruler/ink/patches flags as a 0/1 frame with missing values kept as <NA>."""
    return df[list(OUTLIER_CLASSES)]


def labelled_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows whose ruler/ink/patches labels are all known, and whether each carries any of them (bool)."""
    labels = outlier_labels(df)
    rows = df[labels.notna().all(axis=1).to_numpy()]
    return rows, labels.loc[rows.index].sum(axis=1).to_numpy() > 0


def in_split(df: pd.DataFrame, split: str) -> np.ndarray:
    """Bool per row: the row belongs to ``split`` (rows without a split are False)."""
    return (df["split"] == split).fillna(False).to_numpy()


def clean_mask(df: pd.DataFrame) -> pd.Series:
    """Rows whose labels say they carry none of ruler/ink/patches (unlabelled rows are False)."""
    labels = outlier_labels(df)
    return (labels.notna().all(axis=1) & (labels.fillna(1).sum(axis=1) == 0)).astype(bool)


def effect_groups(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Bool per row for ``all``, ``none`` (no acquisition effect labelled) and each acquisition effect the
    manifest has a column for (an unlabelled effect counts as absent)."""
    effects = {e: df[e].fillna(0).to_numpy() == 1 for e in ACQUISITION_EFFECTS if e in df.columns}
    anything = np.any(list(effects.values()), axis=0) if effects else np.zeros(len(df), bool)
    return {"all": np.ones(len(df), bool), "none": ~anything, **effects}
