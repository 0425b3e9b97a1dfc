"""Readers that turn the label files of real data sets into manifests (``data.manifest.COLUMNS``).

* :func:`read_folder` — a folder laid out like ``../shared/data/isic2017-train-256``: ``labels.csv``
  (``isic_id, image, diagnosis, melanoma`` + the seven artifact flags) and the images it names.
* :func:`read_bissoto_csv` + :func:`merge_artifact_labels` — the ``;``-separated artifact annotation
  of Bissoto et al., "Debiasing Skin Lesion Datasets and Models? Not So Fast", CVPR-W 2020.
* :func:`read_isic_metadata` — the ``metadata.csv`` the ISIC Archive (and ``isic-cli``) writes.

Readers never copy or touch images. ``image_path`` in what they return is ABSOLUTE (resolved);
``data.prepare`` rewrites it relative to the manifest it writes. Every error names the file and
the CSV line (header = line 1) and says what was expected.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

import pandas as pd

from dermclean.constants import ARTIFACT_FLAGS, DIAGNOSES, IMAGE_SUFFIXES, SPLITS
from dermclean.errors import DataError, PathNotFound
from dermclean.data.manifest import coerce

log = logging.getLogger(__name__)

FOLDER_COLUMNS: tuple[str, ...] = ("isic_id", "image", "diagnosis", "melanoma", *ARTIFACT_FLAGS)
_BINARY = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
_MAX_LISTED = 10


class LabelsError(DataError):
    """A labels file with missing columns, duplicate ids or values outside their set."""


def _lines(mask: pd.Series) -> str:
    """CSV line numbers (header = 1) of the rows where ``mask`` is true, shortened."""
    lines = [int(i) + 2 for i in mask[mask].index]
    more = f" and {len(lines) - _MAX_LISTED} more" if len(lines) > _MAX_LISTED else ""
    return ", ".join(map(str, lines[:_MAX_LISTED])) + more


def _read_csv(path: Path, *, sep: str = ",") -> pd.DataFrame:
    if not path.is_file():
        raise PathNotFound(f"labels file {path} not found")
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{path}: cannot be read as a {sep!r}-separated CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise LabelsError(f"{path}: no rows; expected one row per image")
    return df.apply(lambda col: col.str.strip())


def require_columns(df: pd.DataFrame, required: tuple[str, ...], where: Path, *, hint: str = "") -> None:
    """Raise ``LabelsError`` listing missing columns, each with the closest present name if any."""
    missing = [c for c in required if c not in df.columns]
    if not missing:
        return
    present = [c for c in df.columns if c not in required]
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise LabelsError(f"{where}: missing columns {', '.join(parts)}; expected columns {list(required)}, "
                      f"found {list(df.columns)}{hint}")


def _check_ids(ids: pd.Series, where: Path, column: str) -> None:
    empty = ids == ""
    if empty.any():
        raise LabelsError(f"{where}: empty {column} at line(s) {_lines(empty)}; expected an id on every row")
    unsafe = ids.str.contains(r"[/\\]|\.\.", regex=True)
    if unsafe.any():
        bad = ids[unsafe].iloc[0]
        raise LabelsError(f"{where}: {column} {bad!r} at line(s) {_lines(unsafe)} contains a path separator or "
                          f"'..'; expected a plain name like ISIC_0000000")
    dup = ids.duplicated(keep=False)
    if dup.any():
        first = ids[dup].iloc[0]
        raise LabelsError(f"{where}: duplicate {column} {first!r} (lines {_lines(ids == first)}); "
                          f"{int(ids[dup].nunique())} id(s) repeated at lines {_lines(dup)}; expected unique ids")


def _binary(values: pd.Series, column: str, where: Path, *, nullable: bool) -> pd.Series:
    allowed = set(_BINARY) | ({""} if nullable else set())
    bad = ~values.isin(allowed)
    if bad.any():
        shown = sorted(values[bad].unique().tolist())[:5]
        expected = "0, 1 or empty" if nullable else "0 or 1"
        raise LabelsError(f"{where}: column {column!r} has value(s) {shown} at line(s) {_lines(bad)}; "
                          f"expected {expected}")
    return values.map(lambda v: _BINARY.get(v, pd.NA)).astype("Int8")


def _diagnosis(values: pd.Series, where: Path) -> pd.Series:
    norm = values.str.lower().str.replace(" ", "_", regex=False)
    bad = (norm != "") & ~norm.isin(DIAGNOSES)
    if bad.any():
        shown = sorted(values[bad].unique().tolist())[:5]
        raise LabelsError(f"{where}: column 'diagnosis' has value(s) {shown} at line(s) {_lines(bad)}; "
                          f"expected one of {list(DIAGNOSES)} or empty")
    return norm.mask(norm == "", pd.NA).astype("string")


def read_folder(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``folder/labels.csv`` into a manifest (``data.manifest.COLUMNS``); ``image_path`` absolute.

    ``labels.csv`` columns: ``isic_id, image`` (path relative to the folder), ``diagnosis`` (one of
    ``DIAGNOSES`` or empty), ``melanoma`` (0/1), the seven flags (0/1/empty = unknown) and optionally
    ``split`` (train/val/test/empty, kept by ``assign_splits``). Other columns are ignored.
    ``source`` is the folder's name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PathNotFound(f"data folder {folder} not found (expected a folder with images/ and labels.csv)")
    labels = folder / "labels.csv"
    if not labels.is_file():
        state = "is empty" if not any(folder.iterdir()) else "has no labels.csv"
        raise PathNotFound(f"data folder {folder} {state}; expected labels.csv with columns "
                                f"{list(FOLDER_COLUMNS)} and the images it names")
    raw = _read_csv(labels)
    require_columns(raw, FOLDER_COLUMNS, labels)
    _check_ids(raw["isic_id"], labels, "isic_id")
    empty_image = raw["image"] == ""
    if empty_image.any():
        raise LabelsError(f"{labels}: empty 'image' at line(s) {_lines(empty_image)}; expected a path relative "
                          f"to {folder}")
    root = folder.resolve()
    out = pd.DataFrame({
        "image_id": raw["isic_id"],
        "image_path": [str(p if os.path.isabs(p) else (root / p).resolve()) for p in raw["image"]],
        "diagnosis": _diagnosis(raw["diagnosis"], labels),
        "melanoma": _binary(raw["melanoma"], "melanoma", labels, nullable=False),
    })
    for flag in ARTIFACT_FLAGS:
        out[flag] = _binary(raw[flag], flag, labels, nullable=True)
    out["split"] = _splits(raw["split"], labels) if "split" in raw.columns else pd.NA
    out["source"] = root.name
    return coerce(out, where=str(labels))


def _splits(values: pd.Series, where: Path) -> pd.Series:
    bad = (values != "") & ~values.isin(SPLITS)
    if bad.any():
        raise LabelsError(f"{where}: column 'split' has value(s) {sorted(values[bad].unique())[:5]} at line(s) "
                          f"{_lines(bad)}; expected one of {list(SPLITS)} or empty")
    return values.mask(values == "", pd.NA)


def _image_id(name: str) -> str:
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in IMAGE_SUFFIXES else name


def read_bissoto_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the Bissoto et al. ``;``-separated artifact CSV -> ``image_id`` + the seven flags (Int8, <NA>).

    Expected header: ``image;dark_corner;hair;gel_border;gel_bubble;ruler;ink;patches`` (any order);
    image names may carry an extension (``ISIC_0000000.jpg``), which is dropped.
    """
    path = Path(path)
    raw = _read_csv(path, sep=";")
    hint = "; the file must be ';'-separated" if len(raw.columns) == 1 and "," in raw.columns[0] else ""
    require_columns(raw, ("image", *ARTIFACT_FLAGS), path, hint=hint)
    ids = raw["image"].map(_image_id)
    _check_ids(ids, path, "image")
    out = pd.DataFrame({"image_id": ids.astype("string")})
    for flag in ARTIFACT_FLAGS:
        out[flag] = _binary(raw[flag], flag, path, nullable=True)
    return out


def merge_artifact_labels(manifest: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Overwrite the flags of ``manifest`` rows that ``labels`` (from :func:`read_bissoto_csv`) covers.

    Rows not in ``labels`` keep their flags; label rows with no manifest row are ignored (logged).
    """
    table = labels.set_index("image_id")[list(ARTIFACT_FLAGS)]
    out = manifest.copy()
    covered = out["image_id"].isin(table.index)
    for flag in ARTIFACT_FLAGS:
        out.loc[covered, flag] = table.loc[out.loc[covered, "image_id"], flag].to_numpy()
    unused = int((~table.index.isin(out["image_id"])).sum())
    if unused:
        log.info("merge_artifact_labels: %d labelled image(s) are not in the manifest", unused)
    return coerce(out, where="merged manifest")


def _isic_diagnosis(text: str) -> object:
    t = text.lower()
    if not t or t in {"benign", "malignant", "indeterminate", "indeterminate/benign", "indeterminate/malignant"}:
        return pd.NA
    if "melanoma" in t:
        return "melanoma"
    if "seborrheic keratosis" in t or "seborrheic_keratosis" in t:
        return "seborrheic_keratosis"
    if "nevus" in t or "naevus" in t:
        return "nevus"
    return "other"


def read_isic_metadata(path: str | os.PathLike[str], *, images_dir: str | os.PathLike[str] | None = None,
                       suffix: str = ".jpg") -> pd.DataFrame:
    """Read an ISIC Archive ``metadata.csv`` (as ``isic image download`` writes it) into a manifest.

    The most specific of ``diagnosis``, ``diagnosis_3``, ``diagnosis_2``, ``diagnosis_1`` present on a
    row gives ``diagnosis`` (mapped to ``DIAGNOSES``); ``melanoma`` is 1 for melanoma, 0 for any other
    diagnosis or ``benign_malignant == benign``. Rows where neither decides are refused. Images are
    ``images_dir/<isic_id><suffix>`` (default: the metadata's folder); flags are <NA>.
    """
    path = Path(path)
    raw = _read_csv(path)
    require_columns(raw, ("isic_id",), path)
    sources = [c for c in ("diagnosis", "diagnosis_3", "diagnosis_2", "diagnosis_1", "benign_malignant") if c in raw]
    if not sources:
        raise LabelsError(f"{path}: no diagnosis column; expected 'diagnosis' or 'diagnosis_1' and/or "
                          f"'benign_malignant', found {list(raw.columns)}")
    _check_ids(raw["isic_id"], path, "isic_id")
    text = raw[sources[0]]
    for col in sources[1:]:
        text = text.mask(text == "", raw[col])
    diagnosis = text.map(_isic_diagnosis).astype("string")
    benign = raw.get("benign_malignant", pd.Series("", index=raw.index)).str.lower().eq("benign")
    benign |= raw.get("diagnosis_1", pd.Series("", index=raw.index)).str.lower().eq("benign")
    melanoma = pd.Series(pd.NA, index=raw.index, dtype="Int8")
    melanoma[diagnosis.notna()] = (diagnosis[diagnosis.notna()] == "melanoma").astype("Int8")
    melanoma[diagnosis.isna() & benign] = 0
    unknown = melanoma.isna()
    if unknown.any():
        raise LabelsError(f"{path}: melanoma cannot be decided at line(s) {_lines(unknown)} (no specific diagnosis "
                          f"and not benign); expected a diagnosis for every image — drop those rows first")
    root = Path(images_dir) if images_dir is not None else path.parent
    out = pd.DataFrame({
        "image_id": raw["isic_id"],
        "image_path": [str((root / f"{i}{suffix}").resolve()) for i in raw["isic_id"]],
        "diagnosis": diagnosis,
        "melanoma": melanoma,
        **{flag: pd.Series(pd.NA, index=raw.index, dtype="Int8") for flag in ARTIFACT_FLAGS},
        "split": pd.NA,
        "source": path.parent.resolve().name,
    })
    return coerce(out, where=str(path))
