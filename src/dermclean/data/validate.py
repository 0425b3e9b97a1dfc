"""The validation gate: a Great Expectations suite over the manifest plus per-image checks.

The expectations live in a data file (``monitoring/expectations/manifest.json``: a list of
``{"type": "expect_...", "kwargs": {...}}``) and are run by GX 1.x for real: an ephemeral context,
a pandas data source and a ``ValidationDefinition`` run with ``batch_parameters={"dataframe": df}``
and ``result_format=COMPLETE`` so that each failing row is known.

GX sees a text view of the manifest (``"0"``/``"1"``, <NA> as null) so that any garbage read from a
CSV is reported by row instead of failing a type cast, plus columns computed here:

* ``file_exists`` — the image file exists (paths relative to the manifest's folder);
* ``width`` / ``height`` — from the image header (checked against ``$PARAMETER`` min/max size);
* ``decodable`` — :func:`dermclean.data.images.load_rgb` succeeds with the bounds (the error text is
  kept per row as the failure message);
* ``splits_disjoint`` — neither the row's id nor its image file appears in another split.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dermclean.data.images import ImageError, load_rgb, read_size
from dermclean.data.manifest import COLUMNS, read_manifest
from dermclean.data.readers import read_folder
from dermclean.errors import ConfigError, DataError, OptionError, PathNotFound

_SHOWN = 20


@dataclass(frozen=True, kw_only=True)
class RowFailure:
    """One failed check: ``row`` is the 0-based data row (CSV line ``row + 2``); None for table checks."""

    row: int | None
    image_id: str | None
    column: str | None
    expectation: str
    message: str


class ValidationFailed(DataError):
    """The manifest failed the gate; the message lists the failing rows and why."""

    def __init__(self, message: str, failures: list[RowFailure]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass(kw_only=True)
class ValidationResult:
    success: bool
    failures: list[RowFailure] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)

    def summary(self, *, where: str = "manifest", limit: int = _SHOWN) -> str:
        lines = [f"{where}: {len(self.failures)} failed check(s) on "
                 f"{len({f.row for f in self.failures if f.row is not None})} row(s):"]
        for f in self.failures[:limit]:
            at = "table" if f.row is None else f"row {f.row} (line {f.row + 2}, id {f.image_id!r})"
            lines.append(f"  {at}: {f.message}  [{f.expectation}]")
        if len(self.failures) > limit:
            lines.append(f"  ... and {len(self.failures) - limit} more")
        return "\n".join(lines)

    def raise_for_failures(self, *, where: str = "manifest") -> None:
        if not self.success:
            raise ValidationFailed(self.summary(where=where), self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "statistics": self.statistics,
                "failures": [asdict(f) for f in self.failures]}


DEFAULT_SUITE = "manifest.json"
"""The manifest suite shipped in the package (``dermclean/data/suites/``; ``monitoring/expectations``
links to it)."""


def default_suite() -> Path:
    """Path of the packaged manifest suite (works from a checkout and from an installed wheel)."""
    return Path(str(resources.files("dermclean.data").joinpath("suites", DEFAULT_SUITE)))


def load_suite(suite_path: str | os.PathLike[str], *, require_split: bool = True) -> list[dict[str, Any]]:
    """The expectation list of a suite file; ``ConfigError`` naming the file when malformed.

    ``require_split=False`` drops the suite's not-null check on ``split`` (for data whose splits
    are assigned later, by the prepare stage); a split that is given must still be valid.
    """
    suite_path = Path(suite_path)
    if not suite_path.is_file():
        raise PathNotFound(f"expectation suite {suite_path} not found")
    try:
        specs = json.loads(suite_path.read_text())["expectations"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{suite_path}: expected JSON with an 'expectations' list ({exc})") from exc
    for i, spec in enumerate(specs):
        if not (isinstance(spec, dict) and str(spec.get("type", "")).startswith("expect_")
                and isinstance(spec.get("kwargs"), dict)):
            raise ConfigError(f"{suite_path}: expectation {i} is {spec!r}; expected {{'type': 'expect_...', 'kwargs': {{}}}}")
    if not require_split:
        specs = [s for s in specs if not (s["type"] == "expect_column_values_to_not_be_null"
                                          and s["kwargs"].get("column") == "split")]
    return specs


def image_checks(df: pd.DataFrame, manifest_path: str | os.PathLike[str], *, min_size: int,
                 max_size: int) -> pd.DataFrame:
    """Per-row ``file_exists, decodable, width, height, image_error, splits_disjoint`` (index of ``df``)."""
    root = Path(manifest_path).resolve().parent
    rows = []
    for raw in df.get("image_path", pd.Series(pd.NA, index=df.index)):
        rec: dict[str, Any] = {"file_exists": False, "decodable": None, "width": None, "height": None,
                               "image_error": None, "resolved": None}
        if pd.isna(raw) or not str(raw):
            rec["image_error"] = "image_path is empty; expected a path relative to the manifest"
            rows.append(rec)
            continue
        path = Path(raw) if os.path.isabs(raw) else (root / str(raw))
        rec["resolved"] = str(path.resolve())
        if not path.is_file():
            rec["image_error"] = f"image {path} not found"
            rows.append(rec)
            continue
        rec["file_exists"] = True
        try:
            rec["width"], rec["height"] = read_size(path, max_size=max_size)
            load_rgb(path, min_size=min_size, max_size=max_size)
            rec["decodable"] = True
        except (ImageError, OSError) as exc:  # OSError: e.g. a file that cannot be read (permissions)
            rec["decodable"], rec["image_error"] = False, str(exc)
        rows.append(rec)
    out = pd.DataFrame(rows, index=df.index, dtype=object)
    out["splits_disjoint"] = True
    if "split" in df.columns:
        split = df["split"].astype("string")
        for key in (df["image_id"].astype("string") if "image_id" in df.columns else None, out["resolved"]):
            if key is None:
                continue
            n = split.groupby(key.astype("string"), dropna=True).nunique()
            mixed = key.astype("string").map(n).fillna(0).astype(int) > 1
            out.loc[mixed.to_numpy(), "splits_disjoint"] = False
    out["splits_disjoint"] = out["splits_disjoint"].astype(bool)
    return out


def _text_view(df: pd.DataFrame) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    for col in COLUMNS:
        if col in out.columns:
            text = out[col].astype("string")
            out[col] = text.astype(object).where(text.notna(), None)
    return out


def _run_gx(work: pd.DataFrame, specs: list[dict[str, Any]], parameters: dict[str, Any]):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("dermclean").add_dataframe_asset("manifest")
             .add_batch_definition_whole_dataframe("all"))
    suite = gx.ExpectationSuite(name="manifest")
    for spec in specs:
        suite.add_expectation(ExpectationConfiguration(type=spec["type"], kwargs=spec["kwargs"]).to_domain_obj())
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="manifest", data=batch, suite=suite))
    return definition.run(batch_parameters={"dataframe": work}, expectation_parameters=parameters,
                          result_format={"result_format": "COMPLETE"})


def _message(kind: str, column: str | None, kwargs: dict[str, Any], row: pd.Series, params: dict[str, Any]) -> str:
    value = row.get(column) if column else None
    if column in ("file_exists", "decodable") and row.get("image_error"):
        return str(row["image_error"])
    if column == "splits_disjoint":
        return f"image_id {row.get('image_id')!r} or its file {row.get('image_path')!r} appears in more than one split"
    if kind.endswith("not_be_null"):
        return f"{column} is empty; expected a value"
    if kind.endswith("be_unique"):
        return f"{column} {value!r} is not unique; expected each id once"
    if kind.endswith("not_match_regex"):
        return f"{column} {value!r} contains a path separator or '..' (pattern {kwargs['regex']}); expected a plain name"
    if kind.endswith("be_in_set"):
        return f"{column} is {value!r}; expected one of {kwargs['value_set']}"
    if kind.endswith("be_between"):
        lo, hi = (params.get(v["$PARAMETER"]) if isinstance(v, dict) else v
                  for v in (kwargs.get("min_value"), kwargs.get("max_value")))
        return f"{column} is {value}; expected between {lo:g} and {hi:g} px"
    return f"{column} is {value!r}; fails {kind}"


def _exception(result: Any) -> str | None:
    info = result.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    messages = sorted({i.get("exception_message", "") for i in infos if isinstance(i, dict) and i.get("raised_exception")})
    return "; ".join(messages) or None


def validate_manifest(df: pd.DataFrame, manifest_path: str | os.PathLike[str], *,
                      suite_path: str | os.PathLike[str] | None = None, min_size: int, max_size: int,
                      require_split: bool = True) -> ValidationResult:
    """Run the GX suite at ``suite_path`` over ``df`` plus the image checks (see the module docstring).

    ``manifest_path`` is where ``df`` lives (relative ``image_path`` values resolve against its
    folder). ``suite_path`` defaults to :func:`default_suite`; ``require_split`` see :func:`load_suite`.
    Failures are ordered by row. Call ``raise_for_failures()`` to stop on a bad manifest.
    """
    specs = load_suite(suite_path or default_suite(), require_split=require_split)
    work = _text_view(df)
    checks = image_checks(work, manifest_path, min_size=min_size, max_size=max_size)
    work = pd.concat([work, checks.drop(columns=["resolved"])], axis=1)
    params = {"min_size": int(min_size), "max_size": int(max_size)}
    result = _run_gx(work.drop(columns=["image_error"]), specs, params)
    failures: list[RowFailure] = []
    for res in result.results:
        if res.success:
            continue
        kind, kwargs = res.expectation_config.type, dict(res.expectation_config.kwargs)
        column = kwargs.get("column")
        error = _exception(res)
        indices = res.result.get("unexpected_index_list") or []
        if error or not indices:
            observed = res.result.get("details") or res.result.get("observed_value")
            failures.append(RowFailure(row=None, image_id=None, column=column, expectation=kind,
                                       message=error or f"table check failed: observed {observed}"))
            continue
        for index in indices:
            index = int(index["index"] if isinstance(index, dict) else index)
            row = work.iloc[index]
            image_id = row.get("image_id")
            failures.append(RowFailure(row=index, image_id=None if image_id is None else str(image_id), column=column,
                                       expectation=kind, message=_message(kind, column, kwargs, row, params)))
    failures.sort(key=lambda f: (-1 if f.row is None else f.row, f.column or "", f.expectation))
    stats = dict(result.statistics)
    stats.update(n_rows=len(work), n_failures=len(failures),
                 n_failed_rows=len({f.row for f in failures if f.row is not None}))
    return ValidationResult(success=bool(result.success), failures=failures, statistics=stats)


def validate_path(path: str | os.PathLike[str], *, suite: str | os.PathLike[str] | None = None, min_size: int,
                  max_size: int, require_split: bool = False) -> tuple[int, Path]:
    """``dermclean validate``: gate a dataset folder (``images/`` + ``labels.csv``) or a manifest CSV.

    Raises :class:`ValidationFailed` listing the failing rows; returns the row count and the suite used.
    """
    path = Path(path)
    if min_size < 1 or max_size < min_size:
        raise OptionError(f"--min-size {min_size} / --max-size {max_size}: expected 1 <= min-size <= max-size")
    if path.is_dir():
        df, manifest_path = read_folder(path), path / "labels.csv"
    elif path.is_file():
        df, manifest_path = read_manifest(path), path
    else:
        raise PathNotFound(f"{path} not found; expected a dataset folder (images/ + labels.csv) or a manifest CSV")
    suite_path = Path(suite) if suite is not None else default_suite()
    result = validate_manifest(df, manifest_path, suite_path=suite_path, min_size=min_size, max_size=max_size,
                               require_split=require_split)
    result.raise_for_failures(where=str(manifest_path))
    return len(df), suite_path
