"""The ``clean`` contract: ``run_clean_dir(IMAGES_DIR, OUT_DIR, ...)`` (what ``dermclean clean`` runs).

It sits above :mod:`dermclean.detection` (masks from the detector) and :mod:`dermclean.removal`
(the remover), which never import each other.

Reads ``IMAGES_DIR`` as ``detect`` does (``*.jpg/*.jpeg/*.png`` directly inside, any case; EXIF
applied; duplicate ids refused; with ``recursive`` the subfolders too) and writes::

    OUT_DIR/<id>.png          cleaned image, lossless 8-bit RGB PNG, same size as the input
    OUT_DIR/masks/<id>.png    the dilated mask actually used (0/255)
    OUT_DIR/run.json          provenance: method, detector or masks folder, remover and its version,
                              dilation, settings, per-image size and mask area, counts, timings;
                              address, workers and retried_batches when run on a Ray cluster
    OUT_DIR/errors.csv        with --on-error skip and some input refused: file, reason

An image's id is its file name without the suffix; with ``recursive`` it is the path below
``IMAGES_DIR`` (``sub/x``), so the outputs mirror the subfolders (``sub/x.png``, ``masks/sub/x.png``).
Masks come from ``masks_dir/<id>.png`` (two-level 0/255 PNGs, see :mod:`dermclean.data.masks`)
when given, else from the detector (default: the champion, ``models:/dermclean-detector@champion``).
Outside the dilated mask every output pixel equals the decoded input pixel. Images stream through
in batches (memory bounded by the batch size, not the folder), into a hidden build folder beside
``OUT_DIR`` that is renamed into place at the end; a run killed halfway is resumed by the same
command. With a Ray address (``--address`` or ``RAY_ADDRESS``) the batches run on the cluster's
actors, each with its own remover and detector (see :mod:`dermclean.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermclean import __version__
from dermclean.batch import (ERRORS_FILE, Batch, BatchOutcome, ImageRef, Skipped, check_on_error, guarded,
                             image_refs, load_images, write_errors)
from dermclean.config import load_params
from dermclean.constants import CLEAN_COMMAND
from dermclean.data.images import save_png
from dermclean.data.masks import MaskNotFound, dilate_mask, fit_mask, read_mask
from dermclean.detection.contract import open_detector
from dermclean.distributed import check_workers, cluster_address, run_resumable
from dermclean.env import find_repo_root
from dermclean.errors import OptionError, PathNotFound
from dermclean.io import building_dir, check_output, fingerprint, write_json
from dermclean.removal.engine import RemovalConfig, Remover, check_method, make_remover, removal_config

log = logging.getLogger(__name__)

COMMAND = CLEAN_COMMAND


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

    def masks(self, loaded: list[tuple[ImageRef, np.ndarray]], *, on_error: str,
              skipped: list[Skipped]) -> list[tuple[ImageRef, np.ndarray, np.ndarray]]:
        """``(ref, image, raw bool mask at the image's size)`` for every image whose mask is usable."""
        if self.bundle is not None:
            detections = self.bundle.detect([im for _, im in loaded], [r.name for r, _ in loaded])
            return [(r, im, fit_mask(np.asarray(d.mask, dtype=bool), im.shape[:2], where=f"detector mask of {r.name}"))
                    for (r, im), d in zip(loaded, detections, strict=True)]
        out = []
        for r, im in loaded:
            file = self.masks_dir / f"{r.key}.png"
            mask = guarded(on_error, skipped, file, lambda f=file, i=im: fit_mask(read_mask(f), i.shape[:2], where=str(f)))
            if mask is not None:
                out.append((r, im, mask))
        return out


@dataclass
class CleanTools:
    """What cleans a batch: where its masks come from and the remover that fills them."""

    source: _MaskSource
    remover: Remover


def open_tools(method: str, *, detector: str | os.PathLike[str] | None, model: str | os.PathLike[str] | None,
               masks_dir: Path | None, config: RemovalConfig, device: str | None,
               batch_size: int | None) -> CleanTools:
    """Load the remover and the mask source; a bad remover fails before the detector is loaded."""
    remover = None
    if model is not None or method == "telea" or masks_dir is not None:
        remover = make_remover(method, model=model, config=config, device=device, batch_size=batch_size)
    source = _MaskSource(masks_dir=masks_dir, detector=detector, device=device, batch_size=batch_size)
    if remover is None:
        unet = _detector_unet(source.bundle, method)
        remover = make_remover(method, model=unet, model_ref=f"{source.ref} (unet)" if unet is not None else None,
                               config=config, device=device, batch_size=batch_size)
    return CleanTools(source=source, remover=remover)


@dataclass(frozen=True)
class CleanJob:
    """``clean``'s work per batch (a :class:`~dermclean.distributed.BatchJob`): settings only, so that it
    travels to Ray actors; :meth:`open` loads the models where it runs."""

    method: str
    detector: str | None
    model: str | None
    masks_dir: Path | None
    dilation: int
    config: RemovalConfig
    device: str | None
    batch_size: int | None
    on_error: str
    build: Path

    def open(self) -> CleanTools:
        return open_tools(self.method, detector=self.detector, model=self.model, masks_dir=self.masks_dir,
                          config=self.config, device=self.device, batch_size=self.batch_size)

    def run(self, tools: CleanTools, batch: Batch) -> BatchOutcome:
        """Load ``batch``'s images and masks, fill them, write the cleaned images and masks; their records."""
        skipped: list[Skipped] = []
        loaded = load_images([r.path for r in batch.refs], on_error=self.on_error, skipped=skipped)
        refs = {r.path: r for r in batch.refs}
        triples = tools.source.masks([(refs[p], im) for p, im in loaded], on_error=self.on_error,
                                     skipped=skipped) if loaded else []
        before = tools.remover.seconds
        records = _clean_batch(self.build, triples, tools.remover, dilation=self.dilation,
                               max_area=self.config.max_mask_area)
        return BatchOutcome(index=batch.index, records=records, skipped=skipped,
                            seconds=tools.remover.seconds - before)


def _detector_unet(bundle: object, method: str) -> object | None:
    """The detector's own UNet when it is the remover ``method`` needs (a guided bundle's UNet for
    ``inpaint``, an imagecond bundle's for ``imagecond``; a fused bundle's first member's); else None
    (the pipeline's default folder)."""
    wanted = "guided" if method == "inpaint" else "imagecond"
    if getattr(bundle, "detector_kind", None) == "fused":
        bundle = bundle.first
    return bundle.unet.module if getattr(bundle, "detector_kind", None) == wanted else None


def _check_masks_dir(masks_dir: Path, refs: list[ImageRef], on_error: str) -> None:
    if not masks_dir.is_dir():
        raise PathNotFound(f"--masks {masks_dir} is not a folder; expected a folder of <id>.png masks")
    missing = [r.name for r in refs if not (masks_dir / f"{r.key}.png").is_file()]
    if missing and on_error == "stop":
        raise MaskNotFound(f"--masks {masks_dir}: no mask for {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                           f"expected {masks_dir}/<id>.png for every image (or --on-error skip)")


def run_clean_dir(images_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, method: str | None = None,
                  detector: str | os.PathLike[str] | None = None, model: str | os.PathLike[str] | None = None,
                  masks_dir: str | os.PathLike[str] | None = None, dilation: int | None = None,
                  device: str | None = None, batch_size: int | None = None, overwrite: bool = False,
                  config: RemovalConfig | None = None, on_error: str = "stop", progress: bool = True,
                  recursive: bool = False, address: str | None = None, workers: int | None = None) -> CleanResult:
    """Clean every image of ``images_dir`` into ``out_dir`` (see module docstring).

    ``method``: ``telea`` (OpenCV), ``imagecond`` (the image-conditioned model) or ``inpaint``
    (RePaint with the guided model); default ``config.method`` (params ``removal.method``). ``model``
    (folder or MLflow URI) defaults to the detector's own UNet when the detector is of the matching
    kind, else to the pipeline's ``models/diffusion/unet`` / ``models/imagecond``. ``dilation``:
    radius in pixels at the input's resolution (default ``config.dilation``). ``config``: sampling
    settings (default: ``params.yaml`` removal section). ``on_error``: see :mod:`dermclean.batch`.
    ``recursive``: read subfolders too. ``address`` / ``workers``: run on a Ray cluster's actors
    (default ``RAY_ADDRESS``; neither: this process; see :mod:`dermclean.distributed`).
    Over 60 lines: the command's checks, the resumable build and its ``run.json`` in the order they happen.
    """
    began = time.perf_counter()
    config = config or default_removal_config()
    method = check_method(method or config.method)
    on_error, workers, address = check_on_error(on_error), check_workers(workers), cluster_address(address)
    dilation = config.dilation if dilation is None else int(dilation)
    if dilation < 0:
        raise OptionError(f"--dilation must be >= 0; got {dilation}")
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    masks_dir = Path(masks_dir) if masks_dir is not None else None
    check_output(out_dir, command=COMMAND, overwrite=overwrite,
                 inputs={"IMAGES_DIR": images_dir, "--masks": masks_dir, "--detector": detector, "--model": model})
    refs = image_refs(images_dir, recursive=recursive)
    if masks_dir is not None:
        _check_masks_dir(masks_dir, refs, on_error)
    # on a cluster the actors clean; this copy (on CPU) only checks the models and describes them
    tools = open_tools(method, detector=detector, model=model, masks_dir=masks_dir, config=config,
                       device="cpu" if address else device, batch_size=batch_size)
    source, remover = tools.source, tools.remover
    key = fingerprint({"images": str(images_dir.resolve()), "names": [r.name for r in refs], **source.describe(),
                       **remover.describe(), "dilation": dilation, "settings": dataclasses.asdict(config),
                       "on_error": on_error, "version": __version__})
    with building_dir(out_dir, owner=COMMAND, key=key) as build:
        job = CleanJob(method=method, detector=_text(detector), model=_text(model), masks_dir=masks_dir,
                       dilation=dilation, config=config, device=device, batch_size=batch_size, on_error=on_error,
                       build=build.absolute())
        (build / "masks").mkdir(exist_ok=True)
        report = run_resumable(job, refs, build=build, batch_size=batch_size or config.batch_size,
                               tools=None if address else tools, address=address, workers=workers, desc=COMMAND,
                               progress=progress)
        ordered, skipped = report.records, report.skipped
        n_large = sum(r["mask_area"] > config.max_mask_area for r in ordered)
        if skipped:
            write_errors(build / ERRORS_FILE, skipped)
        write_json(build / "run.json", {
            "command": COMMAND, "images_dir": str(images_dir), **source.describe(), **remover.describe(),
            "dilation": dilation, "settings": dataclasses.asdict(config), "device": str(remover.device),
            "on_error": on_error, "recursive": recursive, "n_images": len(ordered), "n_skipped": len(skipped),
            "n_resumed": report.n_resumed, "max_mask_area": config.max_mask_area, "n_large_masks": int(n_large),
            "images": ordered, "seconds": time.perf_counter() - began, "seconds_removal": report.seconds,
            "dermclean_version": __version__, **(report.cluster or {}),
        })
    return CleanResult(out_dir=out_dir, n_images=len(ordered), skipped=skipped, n_resumed=report.n_resumed,
                       n_large_masks=int(n_large))


def _text(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else str(value)


def _clean_batch(build: Path, triples: list[tuple[ImageRef, np.ndarray, np.ndarray]], remover: Remover, *,
                 dilation: int, max_area: float) -> list[dict[str, Any]]:
    """Fill one batch and write its images and masks into ``build``; returns their records."""
    if not triples:
        return []
    masks = [dilate_mask(m, dilation) for _, _, m in triples]
    cleaned = remover.fill([im for _, im, _ in triples], masks)
    records = []
    for (ref, image, _), mask, out in zip(triples, masks, cleaned, strict=True):
        area = float(mask.mean())
        if area > max_area:
            log.warning("%s: the mask covers %.0f%% of the image (above removal.max_mask_area %.0f%%); "
                        "check the mask or detector", ref.path, 100 * area, 100 * max_area)
        save_png(build / f"{ref.key}.png", out)
        save_png(build / "masks" / f"{ref.key}.png", mask)
        records.append({"image": ref.name, "output": f"{ref.key}.png", "height": image.shape[0],
                        "width": image.shape[1], "mask_area": area})
    return records
