"""What the removal stages run: the ``clean`` stage's cleaned datasets and evaluation, and the
image-conditioned model's restoration check (the ``evaluate_imagecond`` stage).

:func:`clean_and_evaluate` cleans every manifest image inside its detected mask with each method of
``removal.methods`` (:func:`~dermclean.removal.datasets.build_cleaned_dataset`), then measures every
method on the ``test`` split's clean images with painted artifacts
(:func:`~dermclean.removal.evaluate.evaluate_removal`). :func:`evaluate_imagecond` restores the ``val``
split's clean images painted in training and held-out styles with ``imagecond.sample``, Telea beside it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermclean.config import from_dict, params_seed
from dermclean.io import atomic_path
from dermclean.methods.imagecond.sample import sample_config
from dermclean.removal.datasets import build_cleaned_dataset
from dermclean.removal.engine import RemovalConfig
from dermclean.removal.evaluate import evaluate_removal

CHECK_METHODS = ["imagecond", "telea"]


@dataclass
class CheckConfig:
    """``params["imagecond"]["evaluate"]``: the post-training restoration check."""

    images: int = 8  # clean val images painted (0 = all)


def clean_and_evaluate(manifest: Path, detections: Path, out: Path, plots: Path, *, models: dict[str, Path | None],
                       config: RemovalConfig, device: str, progress: bool = True) -> dict[str, Any]:
    """Write ``out/<method>/`` for every method of ``config.methods`` (``models[method]``: its model folder) and
    the before/after grids to ``plots``; returns ``{"datasets": {method: figures}, "evaluation": ...}``."""
    datasets = {}
    if out.exists():  # a DVC output: rebuilt whole; each method's folder is written atomically
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for method in config.methods:
        df = build_cleaned_dataset(manifest, detections, out / method, method=method, model_dir=models[method],
                                   dilation=config.dilation, device=device, batch_size=config.batch_size,
                                   config=config, progress=progress)
        area = df["mask_area"].astype(float)
        datasets[method] = {"n_images": len(df), "model_version": str(df["model_version"].iloc[0]),
                            "mean_mask_area": float(area.mean()), "images_with_mask": int((area > 0).sum())}
        print(f"clean: {method}: {len(df)} images, mean mask area {area.mean():.4f} -> {out / method}")
    with atomic_path(plots) as tmp:
        tmp.mkdir()
        evaluation = evaluate_removal(manifest, split="test", methods=config.methods, guided_model=models["inpaint"],
                                      imagecond_model=models["imagecond"], config=config, device=device,
                                      seed=config.seed, plots_dir=tmp)
    return {"datasets": datasets, "evaluation": evaluation}


def evaluate_imagecond(params: dict[str, Any], manifest: Path, model: Path, *, device: str) -> dict[str, Any]:
    """Restoration of the ``val`` split's clean images painted in training and held-out styles by the model in
    ``model`` (``imagecond.sample``; ``imagecond.evaluate.images`` images, masks dilated by ``removal.dilation``)
    and by Telea: ``{"val_removal": {method: {group: {psnr_in, ssim_in, psnr_out, ssim_out, n}}}}``."""
    seed, sample = params_seed(params), sample_config(params)
    check = from_dict(CheckConfig, params["imagecond"].get("evaluate"), where="imagecond.evaluate")
    config = RemovalConfig(methods=CHECK_METHODS, steps=sample.steps, imagecond=sample, seed=seed,
                           dilation=int(params.get("removal", {}).get("dilation", 3)), eval_images=check.images)
    result = evaluate_removal(manifest, split="val", methods=CHECK_METHODS, guided_model=None, imagecond_model=model,
                              config=config, device=device, seed=seed)
    return {"val_removal": {m: {g: r[g]["all"] for g in ("train_styles", "heldout_styles", "all") if g in r}
                            for m, r in result["methods"].items()}}
