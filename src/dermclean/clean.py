"""The ``clean`` contract: ``run_clean_dir(IMAGES_DIR, OUT_DIR, ...)`` (what ``dermclean clean`` runs).

It sits above :mod:`dermclean.detection` (masks from the detector) and :mod:`dermclean.removal`
(the remover), which never import each other.

Reads ``IMAGES_DIR`` as ``detect`` does (``*.jpg/*.jpeg/*.png`` directly inside, any case; EXIF
applied; duplicate stems refused) and writes::

    OUT_DIR/<stem>.png        cleaned image, lossless 8-bit RGB PNG, same size as the input
    OUT_DIR/masks/<stem>.png  the dilated mask actually used (0/255)
    OUT_DIR/run.json          provenance: method, detector or masks folder, remover and its version,
                              dilation, settings, per-image size and mask area, counts, timings
    OUT_DIR/errors.csv        with --on-error skip and some input refused: file, reason

Masks come from ``masks_dir/<stem>.png`` (two-level 0/255 PNGs, see
:mod:`dermclean.data.masks`) when given, else from the detector (default: the champion,
``models:/dermclean-detector@champion``). Outside the dilated mask every output pixel equals the
decoded input pixel. Images stream through in batches (memory bounded by the batch size, not the
folder), into a hidden build folder beside ``OUT_DIR`` that is renamed into place at the end; a run
killed halfway is resumed by the same command (see :func:`dermclean.io.building_dir`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dermclean import __version__
from dermclean.batch import ERRORS_FILE, Skipped, check_on_error, chunks, guarded, load_images, write_errors
from dermclean.config import load_params
from dermclean.data.images import list_images, save_png
from dermclean.data.masks import MaskNotFound, dilate_mask, fit_mask, read_mask
from dermclean.detection.contract import open_detector
from dermclean.env import find_repo_root
from dermclean.errors import OptionError, PathNotFound
from dermclean.io import building_dir, check_output, fingerprint, write_json
from dermclean.removal.engine import RemovalConfig, Remover, check_method, make_remover, removal_config

log = logging.getLogger(__name__)

COMMAND = "clean"
_PROGRESS_FILE = "progress.jsonl"  # inside the build folder only; removed before the rename


def default_removal_config() -> RemovalConfig:
    """``params.yaml``'s ``removal`` section of the repository (profile applied, image-conditioned sampling from
    ``imagecond.sample``), else the defaults."""
    params_file = find_repo_root() / "params.yaml"
    if not params_file.is_file():
        return RemovalConfig()
    return removal_config(load_params(params_file))


@dataclass
class CleanResult:
    """What :func:`run_clean_dir` did: where, how many images, how many skipped or resumed."""

    out_dir: Path
    n_images: int
    skipped: list[Skipped] = field(default_factory=list)
    n_resumed: int = 0
    n_large_masks: int = 0


class _MaskSource:
    """Masks for a batch: read from ``masks_dir`` or detected (the detector is loaded once)."""

    def __init__(self, *, masks_dir: Path | None, detector: str | os.PathLike[str] | None, device: str | None,
                 batch_size: int | None) -> None:
        self.masks_dir, self.bundle = masks_dir, None
        if masks_dir is None:
            try:
                self.bundle, self.ref = open_detector(detector, device=device, batch_size=batch_size)
            except FileNotFoundError as exc:
                if detector is not None:
                    raise
                raise type(exc)(f"{exc}. For clean, pass the detector as --detector PATH_OR_URI, or give "
                                f"--masks DIR with <stem>.png masks") from exc

    def describe(self) -> dict:
        return {"masks_dir": str(self.masks_dir)} if self.masks_dir is not None else {"detector": self.ref}

    def masks(self, loaded: list[tuple[Path, np.ndarray]], *, on_error: str,
              skipped: list[Skipped]) -> list[tuple[Path, np.ndarray, np.ndarray]]:
        """``(path, image, raw bool mask at the image's size)`` for every image whose mask is usable."""
        if self.bundle is not None:
            detections = self.bundle.detect([im for _, im in loaded], [p.name for p, _ in loaded])
            return [(p, im, fit_mask(np.asarray(d.mask, dtype=bool), im.shape[:2], where=f"detector mask of {p.name}"))
                    for (p, im), d in zip(loaded, detections, strict=True)]
        out = []
        for p, im in loaded:
            file = self.masks_dir / f"{p.stem}.png"
            mask = guarded(on_error, skipped, file, lambda f=file, i=im: fit_mask(read_mask(f), i.shape[:2], where=str(f)))
            if mask is not None:
                out.append((p, im, mask))
        return out


def _detector_unet(bundle: object, method: str) -> object | None:
    """The detector's own UNet when it is the remover ``method`` needs (a guided bundle's UNet for
    ``inpaint``, an imagecond bundle's for ``imagecond``); else None (the pipeline's default folder)."""
    wanted = "guided" if method == "inpaint" else "imagecond"
    return bundle.unet.module if getattr(bundle, "detector_kind", None) == wanted else None


def _check_masks_dir(masks_dir: Path, paths: list[Path], on_error: str) -> None:
    if not masks_dir.is_dir():
        raise PathNotFound(f"--masks {masks_dir} is not a folder; expected a folder of <stem>.png masks")
    missing = [p.name for p in paths if not (masks_dir / f"{p.stem}.png").is_file()]
    if missing and on_error == "stop":
        raise MaskNotFound(f"--masks {masks_dir}: no mask for {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                           f"expected {masks_dir}/<stem>.png for every image (or --on-error skip)")


def _read_progress(build: Path) -> tuple[dict[str, dict], list[Skipped]]:
    """Per-image records and skipped inputs a killed run left in its build folder."""
    records, skipped = {}, []
    progress = build / _PROGRESS_FILE
    if progress.is_file():
        for line in progress.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # the line being written when the run was killed
                continue
            if "skipped" in entry:
                skipped.append(Skipped(file=entry["file"], reason=entry["skipped"]))
            else:
                records[entry["image"]] = entry
    return records, skipped


def _append(build: Path, entries: list[dict]) -> None:
    with open(build / _PROGRESS_FILE, "a") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in entries)
        handle.flush()
        os.fsync(handle.fileno())


def run_clean_dir(images_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, method: str | None = None,
                  detector: str | os.PathLike[str] | None = None, model: str | os.PathLike[str] | None = None,
                  masks_dir: str | os.PathLike[str] | None = None, dilation: int | None = None,
                  device: str | None = None, batch_size: int | None = None, overwrite: bool = False,
                  config: RemovalConfig | None = None, on_error: str = "stop", progress: bool = True) -> CleanResult:
    """Clean every image of ``images_dir`` into ``out_dir`` (see module docstring).

    ``method``: ``telea`` (OpenCV), ``imagecond`` (the image-conditioned model) or ``inpaint``
    (RePaint with the guided model); default ``config.method`` (params ``removal.method``). ``model``
    (folder or MLflow URI) defaults to the detector's own UNet when the detector is of the matching
    kind, else to the pipeline's ``models/diffusion/unet`` / ``models/imagecond``. ``dilation``:
    radius in pixels at the input's resolution (default ``config.dilation``). ``config``: sampling
    settings (default: ``params.yaml`` removal section). ``on_error``: see :mod:`dermclean.batch`.
    Over 60 lines: the command's checks, the resumable build and its ``run.json`` in the order they happen.
    """
    began = time.perf_counter()
    config = config or default_removal_config()
    method = check_method(method or config.method)
    on_error = check_on_error(on_error)
    dilation = config.dilation if dilation is None else int(dilation)
    if dilation < 0:
        raise OptionError(f"--dilation must be >= 0; got {dilation}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    masks_dir = Path(masks_dir) if masks_dir is not None else None
    check_output(out_dir, command=COMMAND, overwrite=overwrite,
                 inputs={"IMAGES_DIR": images_dir, "--masks": masks_dir, "--detector": detector, "--model": model})
    paths = list_images(images_dir)
    if masks_dir is not None:
        _check_masks_dir(masks_dir, paths, on_error)
    remover = None
    if model is not None or method == "telea" or masks_dir is not None:  # fail on a bad remover before detecting
        remover = make_remover(method, model=model, config=config, device=device, batch_size=batch_size)
    source = _MaskSource(masks_dir=masks_dir, detector=detector, device=device, batch_size=batch_size)
    if remover is None:
        unet = _detector_unet(source.bundle, method)
        remover = make_remover(method, model=unet, model_ref=f"{source.ref} (unet)" if unet is not None else None,
                               config=config, device=device, batch_size=batch_size)
    key = fingerprint({"images": str(images_dir.resolve()), "names": [p.name for p in paths], **source.describe(),
                       **remover.describe(), "dilation": dilation, "settings": dataclasses.asdict(config),
                       "on_error": on_error, "version": __version__})
    with building_dir(out_dir, owner=COMMAND, key=key) as build:
        (build / "masks").mkdir(exist_ok=True)
        records, skipped = _read_progress(build)
        n_resumed = len(records) + len(skipped)
        done = set(records) | {Path(s.file).name for s in skipped}
        todo = [p for p in paths if p.name not in done]
        bar = tqdm(total=len(paths), initial=n_resumed, disable=not progress or len(paths) < 2, desc="clean",
                   unit="img")
        for batch in chunks(todo, batch_size or config.batch_size):
            new_skipped: list[Skipped] = []
            loaded = load_images(batch, on_error=on_error, skipped=new_skipped)
            triples = source.masks(loaded, on_error=on_error, skipped=new_skipped) if loaded else []
            entries = _clean_batch(build, triples, remover, dilation=dilation, max_area=config.max_mask_area)
            records.update((e["image"], e) for e in entries)
            entries += [{"file": s.file, "skipped": s.reason} for s in new_skipped]
            skipped += new_skipped
            _append(build, entries)
            bar.update(len(batch))
        bar.close()
        ordered = [records[p.name] for p in paths if p.name in records]
        n_large = sum(r["mask_area"] > config.max_mask_area for r in ordered)
        if skipped:
            write_errors(build / ERRORS_FILE, skipped)
        (build / _PROGRESS_FILE).unlink(missing_ok=True)
        write_json(build / "run.json", {
            "command": COMMAND, "images_dir": str(images_dir), **source.describe(), **remover.describe(),
            "dilation": dilation, "settings": dataclasses.asdict(config), "device": str(remover.device),
            "on_error": on_error, "n_images": len(ordered), "n_skipped": len(skipped), "n_resumed": n_resumed,
            "max_mask_area": config.max_mask_area, "n_large_masks": int(n_large), "images": ordered,
            "seconds": time.perf_counter() - began, "seconds_removal": remover.seconds,
            "dermclean_version": __version__,
        })
    return CleanResult(out_dir=out_dir, n_images=len(ordered), skipped=skipped, n_resumed=n_resumed,
                       n_large_masks=int(n_large))


def _clean_batch(build: Path, triples: list[tuple[Path, np.ndarray, np.ndarray]], remover: Remover, *,
                 dilation: int, max_area: float) -> list[dict]:
    """Fill one batch and write its images and masks into ``build``; returns their records."""
    if not triples:
        return []
    masks = [dilate_mask(m, dilation) for _, _, m in triples]
    cleaned = remover.fill([im for _, im, _ in triples], masks)
    records = []
    for (path, image, _), mask, out in zip(triples, masks, cleaned, strict=True):
        area = float(mask.mean())
        if area > max_area:
            log.warning("%s: the mask covers %.0f%% of the image (above removal.max_mask_area %.0f%%); "
                        "check the mask or detector", path, 100 * area, 100 * max_area)
        save_png(build / f"{path.stem}.png", out)
        save_png(build / "masks" / f"{path.stem}.png", mask)
        records.append({"image": path.name, "output": f"{path.stem}.png", "height": image.shape[0],
                        "width": image.shape[1], "mask_area": area})
    return records
