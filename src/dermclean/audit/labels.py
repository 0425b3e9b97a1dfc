"""The audit's labels file: one row per image, a 0/1 diagnosis column, optional human artifact labels.

Rows are matched to images by id: the value of the first id column present (``image``, ``image_id``,
``isic_id``, ``id``), reduced to its file stem (``images/ISIC_0000000.jpg`` and ``ISIC_0000000``
both name ``ISIC_0000000.jpg``). Labels of images not in the folder are ignored; images without a
label row (or with an empty label) are flagged but left out of the risk table, and counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.readers import LabelsError
from dermclean.errors import PathNotFound

ID_COLUMNS: tuple[str, ...] = ("image", "image_id", "isic_id", "id")


@dataclass(frozen=True)
class AuditLabels:
    """Per image (indexed like the flags): the 0/1 ``label`` (nullable) and any human ruler/ink/patches labels."""

    label: pd.Series
    human: pd.DataFrame
    column: str
    n_rows: int
    n_unmatched_rows: int


def _stem(value: str) -> str:
    return PurePosixPath(str(value).replace("\\", "/")).stem


def _binary(values: pd.Series, *, column: str, path: Path, ids: pd.Series) -> pd.Series:
    """0/1/missing as nullable Int8; anything else is the user's mistake, named by row."""
    numeric = pd.to_numeric(values, errors="coerce")
    bad = (values.notna() & (values.astype(str).str.strip() != "")) & ~numeric.isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise LabelsError(f"{path} row {row + 2} ({ids.iloc[row]}): column {column!r} is {values.iloc[row]!r}; "
                          f"expected 0, 1 or empty")
    return numeric.astype("Int8")


def read_audit_labels(path: str | os.PathLike[str], images: list[str], *, label_column: str) -> AuditLabels:
    """Labels for ``images`` (names or relative paths, in flags order) from the CSV at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise PathNotFound(f"--labels {path} not found; expected a CSV with an image id column and {label_column!r}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise LabelsError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    id_col = next((c for c in ID_COLUMNS if c in df.columns), None)
    if id_col is None:
        raise LabelsError(f"{path}: no image id column; expected one of {', '.join(ID_COLUMNS)}")
    if label_column not in df.columns:
        raise LabelsError(f"{path}: no column {label_column!r} (--label-column); columns are {', '.join(df.columns)}")
    keys = df[id_col].map(_stem)
    duplicated = keys[keys.duplicated()]
    if not duplicated.empty:
        raise LabelsError(f"{path}: the id {duplicated.iloc[0]!r} has more than one row; expected one row per image")
    table = pd.DataFrame({"label": _binary(df[label_column], column=label_column, path=path, ids=df[id_col])})
    for kind in OUTLIER_CLASSES:
        if kind in df.columns:
            table[kind] = _binary(df[kind], column=kind, path=path, ids=df[id_col])
    table.index = keys
    stems = pd.Index([_stem(name) for name in images])
    if stems.duplicated().any():
        raise LabelsError(f"two images share the id {stems[stems.duplicated()][0]!r}; labels are matched by file "
                          f"stem, so audit one of them at a time")
    matched = table.reindex(stems)
    matched.index = pd.RangeIndex(len(images))
    human = matched[[k for k in OUTLIER_CLASSES if k in matched.columns]]
    return AuditLabels(label=matched["label"].astype("Int8"), human=human, column=label_column, n_rows=len(df),
                       n_unmatched_rows=int((~table.index.isin(stems)).sum()))
