"""The ``clean`` contract: ``run_clean_dir(IMAGES_DIR, OUT_DIR, ...)`` (what ``dermclean clean`` runs).

Reads ``IMAGES_DIR`` as ``detect`` does (``*.jpg/*.jpeg/*.png`` directly inside, any case; EXIF
applied; duplicate stems refused) and writes, atomically (a temporary folder renamed at the end)::

    OUT_DIR/<stem>.png        cleaned image, lossless PNG, same size as the input
    OUT_DIR/masks/<stem>.png  the dilated mask actually used (0/255)
    OUT_DIR/run.json          provenance: method, detector or masks folder, remover and its version,
                              dilation, settings, per-image size and mask area, timings

Masks come from ``masks_dir/<stem>.png`` when given, else from the detector (default: the
champion, ``models:/dermclean-detector@champion``). Outside the dilated mask every output pixel
equals the decoded input pixel.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from dermclean.removal.engine import RemovalConfig, check_method, make_remover
from dermclean.removal.masks import dilate_mask, fit_mask, read_mask

DEFAULT_DETECTOR = "models:/dermclean-detector@champion"


def default_removal_config() -> RemovalConfig:
    """``params.yaml`` ``removal`` section of the repository (profile applied), else the defaults."""
    from dermclean.config import from_dict, load_params
    from dermclean.removal.engine import repo_root

    params_file = repo_root() / "params.yaml"
    if not params_file.is_file():
        return RemovalConfig()
    return from_dict(RemovalConfig, load_params(params_file).get("removal"), where=f"{params_file}: removal")


def prepare_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file; expected a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out_dir} is not empty; pass --overwrite to replace its contents")


def detect_masks(paths: list[Path], images: list[np.ndarray], *, detector: str | os.PathLike[str] | None,
                 device: str | None, batch_size: int | None) -> tuple[list[np.ndarray], str, object]:
    """Binary masks (bool ``H x W`` per image, at the image's size) from a detector (default: the
    champion), the detector's reference, and the loaded detector."""
    from dermclean.detection.contract import open_detector

    try:
        bundle, ref = open_detector(detector, device=device, batch_size=batch_size)
    except FileNotFoundError as exc:
        if detector is not None:
            raise
        raise type(exc)(f"clean: no default detector ({DEFAULT_DETECTOR}). Pass --detector PATH_OR_URI "
                        f"(e.g. models/detector) or --masks DIR with <stem>.png masks") from exc
    detections = bundle.detect(images, [p.name for p in paths])
    masks = [fit_mask(np.asarray(d.mask, dtype=bool), im.shape[:2], where=f"detector mask of {p.name}")
             for d, im, p in zip(detections, images, paths, strict=True)]
    return masks, ref, bundle


def _detector_unet(bundle: object, method: str) -> object | None:
    """The detector's own UNet when it is the remover ``method`` needs (a guided bundle's UNet for
    ``inpaint``, an imagecond bundle's for ``imagecond``); else None (the pipeline's default folder)."""
    wanted = "guided" if method == "inpaint" else "imagecond"
    return bundle.unet.module if getattr(bundle, "detector_kind", None) == wanted else None


def run_clean_dir(images_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, method: str = "inpaint",
                  detector: str | os.PathLike[str] | None = None, model: str | os.PathLike[str] | None = None,
                  masks_dir: str | os.PathLike[str] | None = None, dilation: int | None = None,
                  device: str | None = None, batch_size: int | None = None, overwrite: bool = False,
                  config: RemovalConfig | None = None) -> Path:
    """Clean every image of ``images_dir`` into ``out_dir`` (see module docstring); returns ``out_dir``.

    ``method``: ``inpaint`` (RePaint with the guided model), ``imagecond`` (the image-conditioned
    model) or ``telea``. ``model`` (folder or MLflow URI) defaults to the detector's own UNet when the
    detector is of the matching kind (guided for inpaint, imagecond for imagecond), else to the
    pipeline's ``models/diffusion/unet`` / ``models/imagecond`` under the repository root.
    ``dilation``: radius in pixels at the input's resolution (default ``params.yaml`` removal.dilation).
    ``config``: sampling settings (default: ``params.yaml`` removal section).
    """
    from dermclean import __version__
    from dermclean.data.images import list_images, load_rgb, save_png
    from dermclean.io import atomic_path, write_json

    began = time.perf_counter()
    check_method(method)
    out_dir = Path(out_dir)
    prepare_output(out_dir, overwrite)
    config = config or default_removal_config()
    dilation = config.dilation if dilation is None else int(dilation)
    if dilation < 0:
        raise ValueError(f"--dilation must be >= 0; got {dilation}")
    paths = list_images(images_dir)
    if masks_dir is not None:
        masks_dir = Path(masks_dir)
        if not masks_dir.is_dir():
            raise FileNotFoundError(f"--masks {masks_dir} is not a folder; expected a folder of <stem>.png masks")
        missing = [p.name for p in paths if not (masks_dir / f"{p.stem}.png").is_file()]
        if missing:
            raise FileNotFoundError(f"--masks {masks_dir}: no mask for {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
                                    f"expected {masks_dir}/<stem>.png for every image")
    if model is not None or method == "telea" or masks_dir is not None:  # fail on a bad remover before detecting
        remover = make_remover(method, model=model, config=config, device=device, batch_size=batch_size)
    images = [load_rgb(p) for p in paths]
    if masks_dir is not None:
        raw = [fit_mask(read_mask(masks_dir / f"{p.stem}.png"), im.shape[:2], where=str(masks_dir / f"{p.stem}.png"))
               for p, im in zip(paths, images)]
        mask_source = {"masks_dir": str(masks_dir)}
    else:
        raw, ref, bundle = detect_masks(paths, images, detector=detector, device=device, batch_size=batch_size)
        mask_source = {"detector": ref}
        if model is None and method != "telea":
            unet = _detector_unet(bundle, method)
            remover = make_remover(method, model=unet, model_ref=f"{ref} (unet)" if unet is not None else None,
                                   config=config, device=device, batch_size=batch_size)
    masks = [dilate_mask(m, dilation) for m in raw]
    cleaned = remover.fill(images, masks)
    with atomic_path(out_dir) as tmp:
        (tmp / "masks").mkdir(parents=True)
        records = []
        for path, image, mask, out in zip(paths, images, masks, cleaned, strict=True):
            save_png(tmp / f"{path.stem}.png", out)
            save_png(tmp / "masks" / f"{path.stem}.png", mask)
            records.append({"image": path.name, "output": f"{path.stem}.png", "height": image.shape[0],
                            "width": image.shape[1], "mask_area": float(mask.mean())})
        write_json(tmp / "run.json", {
            "command": "clean", "images_dir": str(images_dir), **mask_source, **remover.describe(),
            "dilation": dilation, "settings": dataclasses.asdict(config), "device": str(remover.device),
            "n_images": len(paths), "images": records, "seconds": time.perf_counter() - began,
            "seconds_removal": remover.seconds, "dermclean_version": __version__,
        })
    return out_dir
