"""Folder runs image by image: ``--on-error stop|skip``, ``errors.csv``, batches that stream from disk.

A folder command lists its inputs as :class:`ImageRef` records (:func:`image_refs`), cuts the sorted
list into fixed :class:`Batch` es (:func:`plan_batches`; the same cut whatever runs them) and gets a
:class:`BatchOutcome` back per batch (see :mod:`dermclean.distributed`).

With ``stop`` (the default) the first unusable input ends the run with its one-line error and
nothing is written. With ``skip`` every unusable input is recorded as a :class:`Skipped` row, the
run goes on, ``errors.csv`` (``file,reason``) lists them beside the outputs, and the command exits
with status 4 (:data:`dermclean.errors.EXIT_SKIPPED`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dermclean.data.images import image_id, image_name, list_images, load_rgb
from dermclean.errors import InputError, OptionError
from dermclean.io import atomic_path

ON_ERROR = ("stop", "skip")
ERRORS_FILE = "errors.csv"
T = TypeVar("T")


@dataclass(frozen=True)
class Skipped:
    """One input left out under ``--on-error skip``: the file as given and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class ImageRef:
    """One input image: ``path`` as the user's folder gives it (``IMAGES_DIR/sub/x.jpg``), ``name``
    relative to that folder (``sub/x.jpg``; the file name when flat), reported in ``scores.csv`` and
    ``run.json``, and ``key``, ``name`` without its suffix, where its outputs go (``masks/sub/x.png``)."""

    path: Path
    name: str
    key: str


@dataclass(frozen=True)
class Batch:
    """Batch number ``index`` of a run: consecutive images of the sorted input list."""

    index: int
    refs: tuple[ImageRef, ...]


@dataclass
class BatchOutcome:
    """What one batch produced once its files are written: a record per image done (in batch order), the
    inputs it skipped, and the seconds its model spent."""

    index: int
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_inputs(self) -> int:
        return len(self.records) + len(self.skipped)


def image_refs(directory: str | os.PathLike[str], *, recursive: bool = False) -> list[ImageRef]:
    """:func:`~dermclean.data.images.list_images` of ``directory`` as :class:`ImageRef` records."""
    directory = Path(directory)
    return [ImageRef(path=p, name=image_name(p, directory), key=image_id(p, directory))
            for p in list_images(directory, recursive=recursive)]


def plan_batches(refs: Sequence[ImageRef], size: int) -> list[Batch]:
    """The run's batches: ``refs`` cut into consecutive slices of ``size``, numbered from 0."""
    return [Batch(index=i, refs=tuple(chunk)) for i, chunk in enumerate(chunks(refs, size))]


def check_on_error(value: str) -> str:
    if value not in ON_ERROR:
        raise OptionError(f"--on-error {value!r}; expected one of {', '.join(ON_ERROR)}")
    return value


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` (>= 1) elements."""
    size = max(1, int(size))
    for start in range(0, len(items), size):
        yield items[start:start + size]


def guarded(on_error: str, skipped: list[Skipped], file: str | os.PathLike[str], func, *args, **kwargs):
    """``func(*args, **kwargs)``; an :class:`InputError` is raised (``stop``) or recorded (``skip``, returns None)."""
    try:
        return func(*args, **kwargs)
    except InputError as exc:
        if on_error == "stop":
            raise
        skipped.append(Skipped(file=str(file), reason=str(exc)))
        return None


def load_images(paths: Sequence[Path], *, on_error: str, skipped: list[Skipped]) -> list[tuple[Path, np.ndarray]]:
    """``(path, uint8 H x W x 3)`` for every usable path, in order (see :func:`guarded`)."""
    loaded = [(p, guarded(on_error, skipped, p, load_rgb, p)) for p in paths]
    return [(p, im) for p, im in loaded if im is not None]


def write_errors(path: str | os.PathLike[str], skipped: Sequence[Skipped]) -> None:
    """``errors.csv``: one row per skipped input (``file``, ``reason``), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "reason"])
        writer.writerows([s.file, s.reason] for s in skipped)


def read_errors(path: str | os.PathLike[str]) -> list[Skipped]:
    """The rows of an ``errors.csv`` written by :func:`write_errors` (empty if there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [Skipped(file=row["file"], reason=row["reason"]) for row in csv.DictReader(handle)]
