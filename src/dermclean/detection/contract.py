"""The ``detect`` contract: a folder of images in, maps / masks / scores / provenance out.

``run_detect_dir(images_dir, out_dir, *, model, device, batch_size, overwrite, on_error, maps,
recursive, address, workers)`` writes::

    out_dir/maps/<id>.npy      float32 H x W at the input's size, higher = more likely artifact (--maps npy)
    out_dir/maps/<id>.png      the same map quantised to 8 bits (--maps png; see :func:`read_map`)
    out_dir/masks/<id>.png     uint8 0/255 H x W at the input's size: the decision at the fitted threshold
    out_dir/scores.csv         image, score, ruler, ink, patches (one row per image, in input order)
    out_dir/run.json           model URI and version, L, s, guidance, steps, threshold, device, time,
                               n_images, n_skipped, n_resumed, maps (and map_png), recursive;
                               address, workers and retried_batches when run on a Ray cluster
    out_dir/errors.csv         with --on-error skip and some image refused: file, reason

An image's id is its file name without the suffix; with ``recursive`` the images of subfolders are
read too, the id is the path below ``images_dir`` (``sub/x``), the outputs mirror the subfolders
(``masks/sub/x.png``) and ``scores.csv``'s ``image`` is that relative path (``sub/x.jpg``).

``--maps png`` stores each map as ``round(255 * (map - lo) / (hi - lo))`` with ``lo, hi`` the map's
own minimum and maximum, written in the PNG (tEXt ``dermclean.map_min`` / ``dermclean.map_max``)
and in ``run.json`` (``map_png.ranges``); ``--maps none`` writes no maps (masks always).

Everything is built in a hidden sibling folder that is renamed into place at the end, so a bad
image (``--on-error stop``) leaves nothing; a run killed halfway is resumed by the same command
(:mod:`dermclean.distributed`). With a Ray address the batches run on the cluster's actors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from dermclean import __version__
from dermclean.batch import (ERRORS_FILE, Batch, BatchOutcome, Skipped, check_on_error, image_refs, load_images,
                             write_errors)
from dermclean.constants import DEFAULT_DETECTOR, OUTLIER_CLASSES
from dermclean.data.images import png_text, save_png
from dermclean.detection.detector import Detection, Detector
from dermclean.detection.storage import load_detector
from dermclean.detection.memo import timed_detect
from dermclean.diffusion.schedulers import ddim_grid
from dermclean.distributed import check_workers, cluster_address, run_resumable
from dermclean.errors import OptionError
from dermclean.io import atomic_path, building_dir, check_output, fingerprint, write_json

DEFAULT_MODEL = DEFAULT_DETECTOR
COMMAND = "detect"
SCORE_COLUMNS = ["image", "score", *OUTLIER_CLASSES]
MAP_FORMATS = ("npy", "png", "none")
MAP_TEXT = ("dermclean.map_min", "dermclean.map_max")
"""tEXt keys of a ``--maps png`` file: the float range its 0..255 levels span."""
_KEPT_OUT_OF_KEY = ("time", "seconds", "seconds_per_image", "n_images", "device")


def check_maps(value: str) -> str:
    if value not in MAP_FORMATS:
        raise OptionError(f"--maps {value!r}; expected one of {', '.join(MAP_FORMATS)}")
    return value


def write_detection_files(folder: Path, key: str, detection: Detection, *, maps: str = "npy"
                          ) -> tuple[float, float] | None:
    """``masks/<key>.png`` and the map (``maps/<key>.npy``, ``.png`` or none) of one detection inside
    ``folder``, each file atomically (``key`` may hold subfolders). Returns a png map's ``(lo, hi)``."""
    save_png(folder / "masks" / f"{key}.png", detection.mask.astype(bool))
    anomaly_map = detection.anomaly_map.astype(np.float32)
    if maps == "npy":
        with atomic_path(folder / "maps" / f"{key}.npy") as tmp:
            np.save(tmp, anomaly_map)
    elif maps == "png":
        levels, lo, hi = quantise_map(anomaly_map)
        save_png(folder / "maps" / f"{key}.png", levels, text=dict(zip(MAP_TEXT, (repr(lo), repr(hi)))))
        return lo, hi
    return None


def quantise_map(anomaly_map: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint8 levels ``round(255 * (map - lo) / (hi - lo))`` of a float ``H x W`` map, with its ``lo, hi``
    (a constant map is all 0). Decoding (:func:`dequantise_map`) is off by at most ``(hi - lo) / 510``."""
    lo, hi = float(anomaly_map.min()), float(anomaly_map.max())
    if not hi > lo:
        return np.zeros(anomaly_map.shape, np.uint8), lo, hi
    scaled = (anomaly_map.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8), lo, hi


def dequantise_map(levels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 ``H x W`` map back from :func:`quantise_map`'s levels and range."""
    return (lo + np.asarray(levels, np.float64) * ((hi - lo) / 255.0)).astype(np.float32)


def read_map(out_dir: str | os.PathLike[str], key: str) -> np.ndarray:
    """The anomaly map of image id ``key`` from a ``detect`` output folder, whichever ``--maps`` wrote it."""
    folder = Path(out_dir) / "maps"
    if (folder / f"{key}.npy").is_file():
        return np.load(folder / f"{key}.npy")
    path = folder / f"{key}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir}: no map for {key!r}; expected maps/{key}.npy or .png (a run with "
                                f"--maps none writes none)")
    texts = [png_text(path, k) for k in MAP_TEXT]
    if None in texts:
        raise ValueError(f"{path}: no {' / '.join(MAP_TEXT)} text; expected a map written by detect --maps png")
    lo, hi = (float(t) for t in texts)
    with Image.open(path) as image:
        return dequantise_map(np.asarray(image), lo, hi)


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
    if detector.detector_kind == "fused":
        info["fusion"] = {k: v for k, v in detector.settings().items() if k != "calibrations"}
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


def detection_record(detection: Detection, map_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """One ``scores.csv`` row (``image``, ``score``, per-type scores); a png map's range rides along."""
    row: dict[str, Any] = {"image": detection.image_name, "score": detection.score, **detection.type_scores}
    if map_range is not None:
        row["map_range"] = list(map_range)
    return row


def write_summary(folder: Path, rows: Sequence[dict[str, Any]], *, skipped: Sequence[Skipped], info: dict[str, Any],
                  seconds: float, extra_columns: Sequence[str] = ()) -> pd.DataFrame:
    """``scores.csv`` (rows in the order given), ``errors.csv`` (when some input was skipped) and
    ``run.json`` (``info`` plus counts and timing) inside ``folder``; returns the scores frame."""
    scores = pd.DataFrame(list(rows), columns=[*extra_columns, *SCORE_COLUMNS])
    scores.to_csv(folder / "scores.csv", index=False)
    if skipped:
        write_errors(folder / ERRORS_FILE, skipped)
    write_json(folder / "run.json", {**info, "n_images": len(scores), "n_skipped": len(skipped),
                                     "seconds": round(seconds, 3),
                                     "seconds_per_image": round(seconds / max(len(scores), 1), 4)})
    return scores


def detect_to_folder(detector: Detector, items: Iterable[tuple[str, str, np.ndarray]], out_dir: Path, *,
                     n_total: int, extra_columns: Sequence[str] = (), info: dict[str, Any] | None = None,
                     progress: bool = True, skipped: list[Skipped] | None = None,
                     owner: str = COMMAND) -> tuple[pd.DataFrame, float]:
    """Detect over already loaded ``(key, name, image)`` items in batches and write the whole folder atomically.

    For images listed elsewhere (a manifest); a folder of images goes through :func:`run_detect_dir`.
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
            results, spent = timed_detect(detector, [b[2] for b in batch], [b[1] for b in batch])
            seconds += spent
            for (key, _, _), det in zip(batch, results):
                write_detection_files(tmp, key, det)
                rows.append({**detection_record(det), **({"image_id": key} if "image_id" in extra_columns else {})})
            bar.update(len(batch))
            batch.clear()

        for item in items:
            batch.append(item)
            if len(batch) >= max(1, detector.config.batch_size):
                flush()
        if batch:
            flush()
        bar.close()
        scores = write_summary(tmp, rows, skipped=skipped or [], info=info or {}, seconds=seconds,
                               extra_columns=extra_columns)
    return scores, seconds


@dataclass(frozen=True)
class DetectJob:
    """``detect``'s work per batch (a :class:`~dermclean.distributed.BatchJob`): settings only, so that
    it travels to Ray actors; :meth:`open` loads the detector where it runs."""

    model: str
    device: str | None
    batch_size: int | None
    build: Path
    maps: str = "npy"
    on_error: str = "stop"

    def open(self) -> Detector:
        return open_detector(self.model, device=self.device, batch_size=self.batch_size)[0]

    def run(self, detector: Detector, batch: Batch) -> BatchOutcome:
        """Load ``batch``'s images, detect in one pass, write their maps and masks; their score rows."""
        skipped: list[Skipped] = []
        loaded = load_images([r.path for r in batch.refs], on_error=self.on_error, skipped=skipped)
        refs = {r.path: r for r in batch.refs}
        start = time.perf_counter()
        found = detector.detect([im for _, im in loaded], [refs[p].name for p, _ in loaded]) if loaded else []
        seconds = time.perf_counter() - start
        rows = [detection_record(det, write_detection_files(self.build, refs[p].key, det, maps=self.maps))
                for (p, _), det in zip(loaded, found, strict=True)]
        return BatchOutcome(index=batch.index, records=rows, skipped=skipped, seconds=seconds)


def run_detect_dir(images_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                   model: str | os.PathLike[str] | None = None, device: str | None = None,
                   batch_size: int | None = None, overwrite: bool = False, on_error: str = "stop",
                   progress: bool = True, maps: str = "npy", recursive: bool = False, address: str | None = None,
                   workers: int | None = None) -> tuple[Path, list[Skipped]]:
    """The ``dermclean detect`` contract (see module docstring). Returns ``out_dir`` and the skipped inputs.

    ``maps``: ``npy``, ``png`` or ``none``; ``recursive``: read subfolders too; ``address``: a Ray
    cluster to run on (default ``RAY_ADDRESS``; neither: this process), with ``workers`` actors
    (default: one per CPU, or GPU). A killed run is resumed by the same call. Raises ``OutputError``
    for an output that is, holds or lies inside an input, or a non-empty one that is not an earlier
    ``detect`` output (or without ``overwrite``); ``ImageError`` for a bad image (``on_error="stop"``)
    or two images sharing an id; ``ModelNotFound`` when no model resolves; ``ClusterError`` when the
    cluster cannot be joined or loses every worker.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    on_error, maps, workers = check_on_error(on_error), check_maps(maps), check_workers(workers)
    address = cluster_address(address)
    check_output(out_dir, command=COMMAND, overwrite=overwrite, inputs={"IMAGES_DIR": images_dir, "--model": model})
    refs = image_refs(images_dir, recursive=recursive)
    # on a cluster the actors detect; this copy (on CPU) only checks the model and describes it
    detector, uri = open_detector(model, device="cpu" if address else device, batch_size=batch_size)
    info = run_info(detector, model=uri, device=detector.device, seconds=0.0, n_images=len(refs))
    info.update(maps=maps, recursive=recursive)
    key = fingerprint({"images": str(images_dir.resolve()), "names": [r.name for r in refs], "on_error": on_error,
                       "requested_device": device, "version": __version__,
                       **{k: v for k, v in info.items() if k not in _KEPT_OUT_OF_KEY}})
    with building_dir(out_dir, owner=COMMAND, key=key) as build:
        job = DetectJob(model=uri, device=device, batch_size=batch_size, build=build.absolute(), maps=maps,
                        on_error=on_error)
        report = run_resumable(job, refs, build=build, batch_size=detector.config.batch_size,
                               tools=None if address else detector, address=address, workers=workers,
                               desc=COMMAND, progress=progress)
        if maps == "png":
            keys = {r.name: r.key for r in refs}
            info["map_png"] = {"scale": "per-image min/max", "decode": "lo + level * (hi - lo) / 255",
                               "text_keys": list(MAP_TEXT),
                               "ranges": {keys[row["image"]]: row["map_range"] for row in report.records}}
        info.update(n_resumed=report.n_resumed, **(report.cluster or {}))
        write_summary(build, report.records, skipped=report.skipped, info=info, seconds=report.seconds)
    return out_dir, report.skipped

