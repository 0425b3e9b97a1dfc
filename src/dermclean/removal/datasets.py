"""Cleaned datasets: one per removal method, built from a manifest and the detect stage's masks.

``build_cleaned_dataset`` writes, atomically (temporary folder renamed at the end; the raw data is
only read)::

    out_dir/images/<image_id>.png   cleaned image (lossless, the source image's size)
    out_dir/masks/<image_id>.png    dilated mask used (0/255)
    out_dir/manifest.csv            the source manifest's rows, labels and splits, with image_path
                                    pointing at the cleaned image, plus provenance columns
                                    source_image (path relative to this manifest), method,
                                    model_version and mask_area (fraction of the image's pixels)
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from dermclean.data.images import load_rgb, save_png
from dermclean.data.manifest import image_paths, read_manifest, relative_to_manifest, write_manifest
from dermclean.data.masks import dilate_mask, fit_mask, read_mask
from dermclean.io import atomic_path
from dermclean.removal.engine import RemovalConfig, make_remover

PROVENANCE_COLUMNS: tuple[str, ...] = ("source_image", "method", "model_version", "mask_area")


def build_cleaned_dataset(manifest_path: str | os.PathLike[str], detections_dir: str | os.PathLike[str],
                          out_dir: str | os.PathLike[str], *, method: str, model_dir: str | os.PathLike[str] | None,
                          dilation: int, device: str | None = None, batch_size: int | None = None,
                          config: RemovalConfig | None = None, progress: bool = True) -> pd.DataFrame:
    """Clean every image of the manifest with ``method`` using ``detections_dir/masks/<image_id>.png``.

    ``model_dir``: the remover (guided UNet folder for ``inpaint``, image-conditioned folder for
    ``imagecond``; ignored for ``telea``). Returns the written manifest.
    """
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    masks_dir = Path(detections_dir) / "masks"
    config = config or RemovalConfig()
    df = read_manifest(manifest_path)
    sources = image_paths(df, manifest_path)
    missing = [i for i in df["image_id"] if not (masks_dir / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{masks_dir}: no mask for image ids {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                                f"of {manifest_path}; expected masks/<image_id>.png from the detect stage")
    remover = make_remover(method, model=None if method == "telea" else model_dir, config=config, device=device,
                           batch_size=batch_size)
    chunk = remover.batch_size
    rows = []
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        final_manifest = out_dir / "manifest.csv"
        bar = tqdm(total=len(df), desc=f"clean ({method})", disable=not progress, dynamic_ncols=True)
        for start in range(0, len(df), chunk):
            ids = list(df["image_id"].iloc[start:start + chunk])
            images = [load_rgb(p) for p in sources[start:start + chunk]]
            masks = [dilate_mask(fit_mask(read_mask(masks_dir / f"{i}.png"), im.shape[:2],
                                          where=str(masks_dir / f"{i}.png")), dilation)
                     for i, im in zip(ids, images)]
            for image_id, src, mask, cleaned in zip(ids, sources[start:start + chunk], masks,
                                                    remover.fill(images, masks), strict=True):
                save_png(tmp / "images" / f"{image_id}.png", cleaned)
                save_png(tmp / "masks" / f"{image_id}.png", mask)
                rows.append({"image_path": f"images/{image_id}.png",
                             "source_image": relative_to_manifest(src, final_manifest),
                             "mask_area": float(mask.mean())})
            bar.update(len(ids))
        bar.close()
        out = df.copy()
        extra = pd.DataFrame(rows)
        out["image_path"] = extra["image_path"].to_numpy()
        out["source_image"] = extra["source_image"].to_numpy()
        out["method"] = method
        out["model_version"] = remover.version
        out["mask_area"] = extra["mask_area"].to_numpy()
        write_manifest(out, tmp / "manifest.csv")
    return out
