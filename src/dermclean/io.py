"""Safe writes: nothing half-written, and nothing replaced that this tool did not create.

- :func:`atomic_path` writes a file or folder at a temporary sibling and renames it into place.
  A file never replaces a folder; a folder replaces only a folder stamped with the same owner
  (``OWNER_FILE`` inside it, written by this module).
- :func:`check_output` is what every command runs before any work: the output must not be, hold
  or lie inside an input, and an existing output is replaced only with ``--overwrite`` and only
  when it is an earlier output of the same command.
- :func:`building_dir` builds an output folder in a hidden sibling that survives a kill: a rerun
  with the same arguments resumes in it, and the finished folder is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dermclean.errors import OutputError

OWNER_FILE = ".dermclean.json"
"""Stamped into every folder this tool writes: ``{"owner": <command>}``; the licence to replace it."""

PARTIAL_SUFFIX = ".dermclean-partial"


def folder_owner(path: str | os.PathLike[str]) -> str | None:
    """The command that wrote folder ``path`` (its :data:`OWNER_FILE`), or ``None`` if not this tool."""
    marker = Path(path) / OWNER_FILE
    try:
        return str(json.loads(marker.read_text()).get("owner")) if marker.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


def _stamp(folder: Path, owner: str, extra: Mapping[str, Any] | None = None) -> None:
    (folder / OWNER_FILE).write_text(json.dumps({"owner": owner, **(extra or {})}, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, owner: str = "dermclean") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The caller creates a file or a folder at the yielded path. A folder is stamped with ``owner``
    and may replace only a folder stamped with the same owner; a file never replaces a folder.
    Refusals raise :class:`~dermclean.errors.OutputError` and leave ``path`` as it was; so does
    any exception inside the block (the temporary is removed).
    """
    target = Path(path)
    if _foreign_folder(target, owner):
        raise OutputError(f"{target} is a folder this tool did not write as {owner!r}; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_target = tmp / target.name
    try:
        yield tmp_target
        if not tmp_target.exists():
            raise FileNotFoundError(f"atomic write of {target} produced nothing at {tmp_target}")
        if tmp_target.is_dir():
            _stamp(tmp_target, owner)
        _replace(tmp_target, target, owner, trash=tmp / ".old")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(new: Path, target: Path, owner: str, *, trash: Path) -> None:
    """Rename ``new`` over ``target``; an old folder (same owner only) is moved aside first."""
    if target.is_dir() and not target.is_symlink():
        if not new.is_dir():
            raise OutputError(f"{target} is a folder; refusing to replace it with a file")
        if _foreign_folder(target, owner):
            raise OutputError(f"{target} is a folder this tool did not write as {owner!r}; refusing to replace it")
        os.replace(target, trash)
    elif new.is_dir() and target.exists():
        raise OutputError(f"{target} is a file; refusing to replace it with a folder")
    os.replace(new, target)


def _foreign_folder(path: Path, owner: str) -> bool:
    """True for a real, non-empty folder not stamped with ``owner`` (an empty one holds nothing to lose)."""
    return (path.is_dir() and not path.is_symlink() and folder_owner(path) != owner
            and any(path.iterdir()))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output(out: str | os.PathLike[str], *, command: str, overwrite: bool, folder: bool = True,
                 inputs: Mapping[str, str | os.PathLike[str] | None] = {},
                 is_own_file: Callable[[Path], bool] | None = None, option: str = "--out") -> Path:
    """Refuse, before any work, an output that would lose a user's file; returns ``out``.

    ``inputs`` maps an option name to a path the command reads (``None`` and non-paths such as
    ``models:/`` URIs are ignored). The output may not be, hold or lie inside any of them. An
    existing output folder must be empty, or (with ``overwrite``) an earlier output of ``command``.
    An existing output file (``folder=False``) is replaced only with ``overwrite`` and when
    ``is_own_file`` says this command wrote it.
    """
    out = Path(out)
    where = out.resolve()
    for name, value in inputs.items():
        if value is None or str(value).startswith(("models:/", "runs:/")) or not Path(value).exists():
            continue
        source = Path(value).resolve()
        if _inside(where, source) or _inside(source, where):
            relation = "is" if where == source else ("lies inside" if _inside(where, source) else "holds")
            raise OutputError(f"{option} {out} {relation} the input {name} {value}; choose an output "
                              f"{'folder' if folder else 'path'} outside every input")
    if folder:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{option} {out} is a file; expected a folder (new, empty, or an earlier "
                              f"output of `dermclean {command}` with --overwrite)")
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                raise OutputError(f"{option} {out} is not empty; choose a new folder, or pass --overwrite to "
                                  f"replace an earlier output of `dermclean {command}`")
            if folder_owner(out) != command:
                raise OutputError(f"{option} {out} was not written by `dermclean {command}` (no {OWNER_FILE} "
                                  f"naming it); --overwrite replaces only an earlier output of this command")
        return out
    if out.is_dir():
        raise OutputError(f"{option} {out} is a folder; expected a file path")
    if out.exists():
        if not overwrite:
            raise OutputError(f"{option} {out} exists; choose a new path, or pass --overwrite to replace an "
                              f"earlier output of `dermclean {command}`")
        if is_own_file is None or not is_own_file(out):
            raise OutputError(f"{option} {out} was not written by `dermclean {command}`; --overwrite replaces "
                              f"only an earlier output of this command")
    return out


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short stable hash of a run's arguments (what decides whether a partial build is resumable)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def partial_path(target: str | os.PathLike[str]) -> Path:
    """The hidden build folder of ``target``: ``<parent>/.<name>.dermclean-partial``."""
    target = Path(target)
    return target.parent / f".{target.name}{PARTIAL_SUFFIX}"


@contextlib.contextmanager
def building_dir(target: str | os.PathLike[str], *, owner: str, key: str) -> Iterator[Path]:
    """Yield a build folder for ``target`` that a rerun with the same ``key`` resumes in.

    The folder is :func:`partial_path`; it is created stamped with ``owner`` and ``key``. A build
    left by a killed run of the same command and key is resumed (the caller skips what it finds
    complete in it, after the temporaries of its interrupted writes are removed); one of another key
    is this tool's own leftover and is started afresh. On success the temporaries of writes killed
    during this run (a lost cluster node whose work another worker redid) are removed and it is renamed
    over ``target`` (replacing only an earlier output of ``owner``). On an
    error it is removed, unless the error says the run can be resumed (a ``resumable`` attribute that
    is true, e.g. a cluster that lost its workers); on an interrupt (Ctrl-C) it is kept for the rerun.
    """
    target = Path(target)
    build = partial_path(target)
    if build.exists():
        marker = _read_marker(build)
        if marker.get("owner") != owner or not build.is_dir():
            raise OutputError(f"{build} exists and was not left by `dermclean {owner}`; move it away first")
        if marker.get("key") != key:
            shutil.rmtree(build)
        else:
            _sweep_temporaries(build)
    if not build.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        _stamp(fresh, owner, {"key": key, "partial": True})
        os.replace(fresh, build)
    try:
        yield build
    except Exception as exc:
        if not getattr(exc, "resumable", False):
            shutil.rmtree(build, ignore_errors=True)
        raise
    _sweep_temporaries(build)  # a writer killed mid-write (a lost cluster node) whose work another redid
    _stamp(build, owner)
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    try:
        _replace(build, target, owner, trash=trash / "old")
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _sweep_temporaries(build: Path) -> None:
    """Remove the temporaries of :func:`atomic_path` writes a killed run left inside its own build folder."""
    for leftover in sorted(build.rglob(".*.tmp"), reverse=True):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)


def _read_marker(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / OWNER_FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
