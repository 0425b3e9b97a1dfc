"""The ``detect`` contract: a folder of images in, maps / masks / scores / provenance out.

``run_detect_dir(images_dir, out_dir, *, model, device, batch_size, overwrite)`` writes::

    out_dir/maps/<stem>.npy    float32 H x W at the input's size, higher = more likely artifact
    out_dir/masks/<stem>.png   uint8 0/255 H x W at the input's size: the decision at the fitted threshold
    out_dir/scores.csv         image, score, ruler, ink, patches
    out_dir/run.json           model URI and version, L, s, guidance, steps, threshold, device, time,
                               n_images, n_skipped
    out_dir/errors.csv         with --on-error skip and some image refused: file, reason

Everything is built in a temporary sibling folder and renamed into place at the end, so a bad image
or an interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dermclean.batch import ERRORS_FILE, Skipped, check_on_error, guarded, write_errors
from dermclean.constants import DEFAULT_DETECTOR, OUTLIER_CLASSES
from dermclean.data.images import list_images, load_rgb
from dermclean.detection.detector import Detection, Detector, load_detector
from dermclean.diffusion.schedulers import ddim_grid
from dermclean.io import atomic_path, check_output, write_json

DEFAULT_MODEL = DEFAULT_DETECTOR
COMMAND = "detect"
SCORE_COLUMNS = ["image", "score", *OUTLIER_CLASSES]


def write_detection_files(folder: Path, key: str, detection: Detection) -> None:
    """``maps/<key>.npy`` and ``masks/<key>.png`` for one detection inside ``folder`` (no atomicity here)."""
    from PIL import Image

    (folder / "maps").mkdir(exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    np.save(folder / "maps" / f"{key}.npy", detection.anomaly_map.astype(np.float32))
    Image.fromarray(detection.mask.astype(np.uint8) * 255).save(folder / "masks" / f"{key}.png", format="PNG")


def run_info(detector: Detector, *, model: str, device: Any, seconds: float, n_images: int) -> dict[str, Any]:
    """Provenance for ``run.json``."""
    cfg = detector.config
    info: dict[str, Any] = {
        "model_uri": model, "model_version": _registry_version(model), "detector_kind": detector.detector_kind,
        "noise_level": cfg.noise_level, "guidance_scale": cfg.guidance_scale, "guidance": cfg.guidance,
        "steps": cfg.steps, "inversion_iters": cfg.inversion_iters, "smoothing_sigma": cfg.smoothing_sigma,
        "image_size": cfg.image_size, "batch_size": cfg.batch_size, "image_score": detector.image_score_kind,
        "threshold": detector.threshold.to_dict() if detector.threshold else None,
        "image_score_fit": (detector.image_scorer.summary() if detector.image_score_kind in ("fitted", "stacked")
                            else None),
        "device": str(device), "n_images": n_images, "seconds": round(seconds, 3),
        "seconds_per_image": round(seconds / max(n_images, 1), 4),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "bundle_meta": detector.meta,
    }
    if detector.detector_kind == "guided":
        grid = ddim_grid(detector.unet.module.config.num_train_timesteps, cfg.noise_level, cfg.steps)
        info.update(effective_noise_level=grid.noise_level, effective_steps=grid.steps,
                    num_train_timesteps=grid.num_train_timesteps)
    return info


def _registry_version(model: str) -> str | None:
    """The registry version a ``models:/name@alias`` or ``models:/name/<v>`` URI points to, else ``None``."""
    if not model.startswith("models:/"):
        return None
    rest = model[len("models:/"):]
    if "@" in rest:
        from dermclean.tracking import get_alias_version

        name, alias = rest.split("@", 1)
        found = get_alias_version(name, alias)
        return str(found.version) if found is not None else None
    parts = rest.split("/")
    return parts[1] if len(parts) == 2 and parts[1].isdigit() else None


def open_detector(model: str | os.PathLike[str] | None, *, device: str | None = None,
                  batch_size: int | None = None) -> tuple[Detector, str]:
    """Load ``model`` (default: the champion detector), with a message saying how to get one when absent."""
    uri = str(model) if model is not None else DEFAULT_MODEL
    try:
        detector = load_detector(uri, device=device)
    except FileNotFoundError as exc:
        if model is None:
            raise type(exc)(f"no default detector: {exc}") from exc
        raise
    if batch_size:
        detector = detector.with_config(batch_size=int(batch_size))
    return detector, uri


def detect_to_folder(detector: Detector, items: Iterable[tuple[str, str, np.ndarray]], out_dir: Path, *,
                     n_total: int, extra_columns: Sequence[str] = (), info: dict[str, Any] | None = None,
                     progress: bool = True, skipped: list[Skipped] | None = None,
                     owner: str = COMMAND) -> tuple[pd.DataFrame, float]:
    """Detect over ``(key, name, image)`` items in batches and write the whole folder atomically.

    Writes ``maps/<key>.npy``, ``masks/<key>.png``, ``scores.csv`` (``image`` = name; with
    ``extra_columns=("image_id",)`` the key too) and ``run.json`` (``info`` plus timing).
    ``skipped`` is the list the ``items`` generator fills with refused inputs (``--on-error
    skip``): read after the last item, written as ``errors.csv`` and counted in ``run.json``.
    Returns the scores frame and the seconds spent detecting.
    """
    from tqdm.auto import tqdm

    rows, seconds, batch = [], 0.0, []
    bar = tqdm(total=n_total, disable=not progress or n_total < 2, desc="detect", unit="img")
    with atomic_path(out_dir, owner=owner) as tmp:
        tmp.mkdir()

        def flush() -> None:
            nonlocal seconds
            start = time.perf_counter()
            results = detector.detect([b[2] for b in batch], [b[1] for b in batch])
            seconds += time.perf_counter() - start
            for (key, _, _), det in zip(batch, results):
                write_detection_files(tmp, key, det)
                row = {"image": det.image_name, "score": det.score, **det.type_scores}
                if "image_id" in extra_columns:
                    row["image_id"] = key
                rows.append(row)
            bar.update(len(batch))
            batch.clear()

        for item in items:
            batch.append(item)
            if len(batch) >= max(1, detector.config.batch_size):
                flush()
        if batch:
            flush()
        bar.close()
        scores = pd.DataFrame(rows, columns=[*extra_columns, *SCORE_COLUMNS])
        scores.to_csv(tmp / "scores.csv", index=False)
        if skipped:
            write_errors(tmp / ERRORS_FILE, skipped)
        write_json(tmp / "run.json", {**(info or {}), "n_images": len(rows), "n_skipped": len(skipped or ()),
                                      "seconds": round(seconds, 3),
                                      "seconds_per_image": round(seconds / max(len(rows), 1), 4)})
    return scores, seconds


def run_detect_dir(images_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                   model: str | os.PathLike[str] | None = None, device: str | None = None,
                   batch_size: int | None = None, overwrite: bool = False, on_error: str = "stop",
                   progress: bool = True) -> tuple[Path, list[Skipped]]:
    """The ``dermclean detect`` contract (see module docstring). Returns ``out_dir`` and the skipped inputs.

    Raises ``OutputError`` for an output that is, holds or lies inside an input, or a non-empty one
    that is not an earlier ``detect`` output (or without ``overwrite``); ``ImageError`` for a bad
    image (``on_error="stop"``) or two images sharing a stem; ``ModelNotFound`` when no model resolves.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    on_error = check_on_error(on_error)
    check_output(out_dir, command=COMMAND, overwrite=overwrite, inputs={"IMAGES_DIR": images_dir, "--model": model})
    paths = list_images(images_dir)
    detector, uri = open_detector(model, device=device, batch_size=batch_size)
    info = run_info(detector, model=uri, device=detector.device, seconds=0.0, n_images=len(paths))
    skipped: list[Skipped] = []
    loaded = ((p, guarded(on_error, skipped, p, load_rgb, p)) for p in paths)
    items = ((p.stem, p.name, image) for p, image in loaded if image is not None)
    detect_to_folder(detector, items, out_dir, n_total=len(paths), info=info, skipped=skipped, progress=progress)
    return out_dir, skipped
