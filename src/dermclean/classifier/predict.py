"""The ``classify`` contract: ``p_malignant`` for every image in a folder.

``dermclean classify IMAGES_DIR --out FILE.csv [--model URI] [--device D] [--batch-size N]`` calls
:func:`run_classify_dir`. Images are read as ``detect`` reads them (``list_images``: ``*.jpg``,
``*.jpeg``, ``*.png`` in any case directly inside the folder; ``load_rgb``: EXIF applied, unsafe
modes refused) and resized to the classifier's ``image_size``. The CSV has one row per image,
sorted by file name, with columns ``image`` (file name) and ``p_malignant`` (sigmoid of the
classifier's logit), written atomically. ``URI`` is an MLflow model URI (by default
``models:/dermclean-classifier@champion``, the classifier promotion chose to deploy; ``--variant V``:
``models:/dermclean-classifier-V@champion``) or a local model folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dermclean.batch import ERRORS_FILE, Skipped, check_on_error, chunks, load_images, write_errors
from dermclean.classifier.metrics import OperatingThreshold
from dermclean.classifier.model import KIND, ClassifierConfig
from dermclean.classifier.train import predict_proba
from dermclean.constants import CLEAN_COMMAND, DEFAULT_CLASSIFIER
from dermclean.data.images import list_images, load_rgb, to_tensor
from dermclean.env import pick_device
from dermclean.errors import OptionError
from dermclean.io import atomic_path, check_output, folder_owner
from dermclean.modelio import load_model_dir, read_extra, read_model_config, save_model_dir
from dermclean.tracking.models import resolve_model

DEFAULT_MODEL = DEFAULT_CLASSIFIER
DEFAULT_BATCH_SIZE = {"cpu": 32, "cuda": 128}
THRESHOLD_FILE = "threshold"  # model_dir/threshold.json, fitted on validation data
COLUMNS = ("image", "p_malignant")


@dataclass(frozen=True, kw_only=True)
class LoadedClassifier:
    """A classifier model folder loaded for inference; ``threshold`` is ``None`` if none was saved."""

    module: torch.nn.Module
    config: ClassifierConfig
    threshold: OperatingThreshold | None
    meta: dict[str, Any]
    model_dir: Path


def load_classifier(model_dir: str | os.PathLike[str], *, device: str | torch.device | None = None) -> LoadedClassifier:
    """Rebuild the classifier in ``model_dir`` (``config.json`` + ``weights.pt`` [+ ``threshold.json``])."""
    device = device if isinstance(device, torch.device) else pick_device(device)
    module, config, meta = load_model_dir(model_dir, device=device, expect_kind=KIND)
    raw = read_extra(model_dir, THRESHOLD_FILE)
    threshold = OperatingThreshold(**raw) if raw else None
    return LoadedClassifier(module=module, config=config, threshold=threshold, meta=meta, model_dir=Path(model_dir))


def save_classifier(model_dir: str | os.PathLike[str], *, module: torch.nn.Module, config: ClassifierConfig,
                    threshold: OperatingThreshold | None, meta: dict[str, Any] | None = None) -> Path:
    """Write a classifier model folder (modelio layout) with ``threshold.json`` beside the weights."""
    extras = {THRESHOLD_FILE: dataclasses.asdict(threshold)} if threshold is not None else None
    return save_model_dir(model_dir, kind=KIND, config=config, module=module, meta=meta, extras=extras)


def _batch_size(batch_size: int | None, device: torch.device) -> int:
    if batch_size is None:
        return DEFAULT_BATCH_SIZE.get(device.type, 32)
    if batch_size < 1:
        raise OptionError(f"--batch-size {batch_size}: expected a positive integer")
    return int(batch_size)


def predict_paths(model_dir: str | os.PathLike[str], paths: list[str | os.PathLike[str]], *,
                  device: str | None = None, batch_size: int | None = None) -> pd.DataFrame:
    """``DataFrame(image, p_malignant)``, one row per path in order (used by the MLflow pyfunc model).

    Images are decoded batch by batch, so memory stays bounded by ``batch_size``.
    """
    dev = pick_device(device)
    clf = load_classifier(model_dir, device=dev)
    bs = _batch_size(batch_size, dev)
    paths = [Path(p) for p in paths]
    probs: list[np.ndarray] = []
    for start in range(0, len(paths), bs):
        batch = torch.stack([to_tensor(load_rgb(p), clf.config.image_size) for p in paths[start:start + bs]])
        probs.append(predict_proba(clf.module, batch, batch_size=bs, device=dev))
    p = np.concatenate(probs) if probs else np.zeros(0)
    return pd.DataFrame({"image": [p.name for p in paths], "p_malignant": p})


def _is_classify_csv(path: Path) -> bool:
    """True when ``path`` starts with the header ``classify`` writes (an earlier output of it)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip() == ",".join(COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False


def errors_path(out_csv: str | os.PathLike[str]) -> Path:
    """Where ``classify --on-error skip`` lists refused images: ``<out>.errors.csv`` beside the CSV."""
    out = Path(out_csv)
    return out.with_name(f"{out.name}.{ERRORS_FILE}")


def _is_cleaned_folder(images_dir: Path) -> bool:
    """A ``dermclean clean`` output, or the ``images/`` of a pipeline's cleaned dataset (its manifest has
    the ``method`` provenance column, :mod:`dermclean.removal.datasets`)."""
    if folder_owner(images_dir) == CLEAN_COMMAND:
        return True
    manifest = images_dir.parent / "manifest.csv"
    try:
        with open(manifest, encoding="utf-8") as handle:
            return images_dir.name == "images" and "method" in handle.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False


def cleaned_input_note(clf: LoadedClassifier, images_dir: Path) -> str | None:
    """One line for a classifier trained on cleaned images (``meta.variant`` other than ``raw``) given a
    folder ``dermclean clean`` did not write; ``None`` otherwise. Such a classifier never saw an artifact,
    so the figures of its variant describe it on cleaned inputs (docs/results/real_shortcut.md)."""
    variant = clf.meta.get("variant")
    if variant in (None, "raw") or _is_cleaned_folder(images_dir):
        return None
    return (f"note: this classifier was trained on images cleaned by {variant}, and {images_dir} is not a "
            f"`dermclean clean` output; clean the images first for the predictions its results describe")


def run_classify_dir(images_dir: str | os.PathLike[str], out_csv: str | os.PathLike[str], *,
                     model: str | os.PathLike[str] | None = None, device: str | None = None,
                     batch_size: int | None = None, overwrite: bool = False, on_error: str = "stop",
                     progress: bool = True, note: Callable[[str], None] | None = None) -> tuple[Path, list[Skipped]]:
    """Classify every image in ``images_dir``; write ``out_csv`` (``image``, ``p_malignant``) atomically.

    ``model``: MLflow model URI or local model folder (default ``models:/dermclean-classifier@champion``).
    Raises ``ModelNotFound`` saying to run the pipeline or pass ``--model`` when the model cannot be
    resolved, ``OptionError`` when it is not a classifier, and the image errors of
    ``list_images``/``load_rgb`` naming the file (``on_error="skip"``: those images are left out and
    listed in :func:`errors_path`). An existing ``out_csv`` is replaced only with ``overwrite`` and
    only when ``classify`` wrote it. Images stream in batches. ``note`` receives
    :func:`cleaned_input_note`'s line when there is one. Returns the CSV and the skipped inputs.
    """
    images_dir, out = Path(images_dir), Path(out_csv)
    on_error = check_on_error(on_error)
    check_output(out, command="classify", overwrite=overwrite, folder=False, is_own_file=_is_classify_csv,
                 inputs={"IMAGES_DIR": images_dir, "--model": model})
    check_output(errors_path(out), command="classify", overwrite=True, folder=False, option="the error list",
                 is_own_file=lambda p: p.read_text(errors="replace").startswith("file,reason"))
    paths = list_images(images_dir)
    model_dir = resolve_model(model or DEFAULT_MODEL)
    kind = read_model_config(model_dir).get("kind")
    if kind != KIND:
        raise OptionError(f"--model {model or DEFAULT_MODEL} resolves to {model_dir}, a {kind!r} model; "
                          f"expected a {KIND!r} model such as models:/dermclean-classifier-raw@champion")
    dev = pick_device(device)
    clf = load_classifier(model_dir, device=dev)
    if note is not None and (line := cleaned_input_note(clf, images_dir)):
        note(line)
    bs = _batch_size(batch_size, dev)
    names, probs, skipped = [], [], []
    bar = tqdm(total=len(paths), disable=not progress or len(paths) < 2, desc="classify", unit="img")
    for batch in chunks(paths, bs):
        loaded = load_images(batch, on_error=on_error, skipped=skipped)
        if loaded:
            x = torch.stack([to_tensor(im, clf.config.image_size) for _, im in loaded])
            probs.append(predict_proba(clf.module, x, batch_size=bs, device=dev))
            names += [p.name for p, _ in loaded]
        bar.update(len(batch))
    bar.close()
    frame = pd.DataFrame({"image": names, "p_malignant": np.concatenate(probs) if probs else np.zeros(0)})
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False, columns=list(COLUMNS), float_format="%.6f")
    if skipped:
        write_errors(errors_path(out), skipped)
    return out, skipped
