"""Lineage of a run: the git commit, a DVC-compatible hash of its data, flattened params.

``dvc_data_hash`` is the md5 DVC 3 computes for a path, so the tag can be looked up in
``dvc.lock`` (``git log -p dvc.lock``) to find the exact data a model was trained on:

- a file: md5 of its bytes;
- a directory: md5 of ``json.dumps(sorted([{"md5": <file md5>, "relpath": <posix relpath>}, ...]),
  sort_keys=True)`` followed by ``.dir`` — the way ``dvc_data.hashfile.tree.Tree.digest`` does it;
- several paths: the same ``.dir`` construction over the paths themselves (relative to the
  repository root), so one value names the whole set.

The hash is always computed from the content. ``dvc.lock`` is read as well: during ``dvc repro``
it still holds the *previous* run's hashes (DVC rewrites it after the stage), so a recorded hash is
only trusted when it equals the content hash; ``source`` says whether it did (``"dvc.lock"``) or
the path is not recorded / has changed since (``"content"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dermclean.values import flatten

_CHUNK = 1 << 20
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


@dataclass(frozen=True, kw_only=True)
class DataHash:
    """``value``: hash of all paths together; ``paths``: relpath -> md5; ``source``: see module doc."""

    value: str
    paths: dict[str, str] = field(default_factory=dict)
    source: str = "content"


def git_commit(root: str | os.PathLike[str]) -> str:
    """``git rev-parse HEAD`` in ``root``, ``+dirty`` when tracked files differ from it, else ``unknown``.

    Untracked files do not count as dirty (DVC outputs are git-ignored; stray files are not code).
    """
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    status = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+dirty" if status else commit


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listing_md5(entries: Iterable[tuple[str, str]]) -> str:
    """DVC's directory digest of ``(relpath, md5)`` entries."""
    listing = sorted(({"md5": md5, "relpath": rel} for rel, md5 in entries), key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def path_md5(path: str | os.PathLike[str]) -> str:
    """DVC 3 md5 of a file or directory (see module doc). Raises ``FileNotFoundError`` naming it."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    if not path.is_dir():
        raise FileNotFoundError(f"data path {path} does not exist; expected a file or folder to hash")
    entries = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".dvc")]
        for name in filenames:
            file = Path(dirpath) / name
            entries.append((file.relative_to(path).as_posix(), file_md5(file)))
    return _listing_md5(entries)


def _relpath(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def dvc_lock_hashes(root: str | os.PathLike[str]) -> dict[str, str]:
    """relpath -> md5 of every dep and out recorded in ``<root>/dvc.lock`` (empty when absent)."""
    lock = Path(root) / "dvc.lock"
    if not lock.is_file():
        return {}
    data = yaml.safe_load(lock.read_text()) or {}
    recorded: dict[str, str] = {}
    for stage in (data.get("stages") or {}).values():
        for entry in (stage.get("deps") or []) + (stage.get("outs") or []):
            if isinstance(entry, Mapping) and "path" in entry and "md5" in entry:
                recorded[Path(os.path.normpath(entry["path"])).as_posix()] = str(entry["md5"])
    return recorded


def data_hash(paths: Iterable[str | os.PathLike[str]], *, root: str | os.PathLike[str]) -> DataHash:
    """DVC-compatible hash of ``paths`` (relative to ``root`` when relative); see module doc."""
    root = Path(root)
    resolved = [Path(p) if Path(p).is_absolute() else root / p for p in paths]
    if not resolved:
        return DataHash(value="none", paths={}, source="content")
    recorded = dvc_lock_hashes(root)
    hashes = {_relpath(p, root): path_md5(p) for p in resolved}
    from_lock = all(recorded.get(rel) == md5 for rel, md5 in hashes.items())
    value = next(iter(hashes.values())) if len(hashes) == 1 else _listing_md5(hashes.items())
    return DataHash(value=value, paths=hashes, source="dvc.lock" if from_lock else "content")


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": "1", "c": "[1, 2]"}`` (values cut to MLflow's limit)."""
    return {name: _param_text(value)[:MAX_PARAM_CHARS] for name, value in flatten(params, prefix).items()}


def _param_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, tuple, bool)) or value is None else str(value)
