"""Training of the image-conditioned model from the effective params (what ``train_imagecond`` runs).

The ``imagecond`` section: ``unet`` (the model), ``train`` (the DDPM loop), ``corruption`` (the painted
training pairs) are what training reads; ``sample`` (inference) and ``evaluate`` (the post-training
check) are read by detection, removal and the ``evaluate_imagecond`` stage, never by training.
:func:`fit_imagecond` trains :class:`~dermclean.diffusion.unet.DermUNet` (3 condition channels, 4 with
a mask condition; no class condition) on the manifest's ``train`` images labelled free of
ruler/ink/patches, each corrupted with painted artifacts (held-out renderer styles excluded,
``corruption.untouched_fraction`` left untouched), to produce the clean original. Checkpoints:
``checkpoints/<key>/`` with ``key`` hashing the training params, image size, seed and the manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dermclean.config import from_dict, params_seed
from dermclean.diffusion.train import TrainConfig, checkpoint_key
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.errors import ConfigError
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.imagecond.pairs import CorruptionConfig, corruption_from_params, heldout_styles, load_clean_images
from dermclean.methods.imagecond.train import train_imagecond
from dermclean.modelio import save_model_dir

TRAINING_KEYS = ("unet", "train", "corruption")
"""The subsections of ``params["imagecond"]`` that training reads."""
SECTION_KEYS = (*TRAINING_KEYS, "sample", "evaluate")


@dataclass
class ImagecondFit:
    """The trained model (EMA weights, eval mode), its configs and the figures of the run."""

    model: DermUNet
    unet_config: UNetConfig
    train_config: TrainConfig
    corruption: CorruptionConfig
    metrics: dict[str, Any]

    def save(self, folder: Path, *, run_id: str, profile: str) -> dict[str, Path]:
        """Write the model folder (kind ``unet``) to ``folder``; returns ``{"imagecond": folder}``."""
        meta = {"run_id": run_id, "profile": profile, "model": "imagecond",
                "train_config": dataclasses.asdict(self.train_config), "corruption": dataclasses.asdict(self.corruption),
                "heldout_styles": {k: list(v) for k, v in dict(heldout_styles()).items()}}
        save_model_dir(folder, kind="unet", config=self.unet_config, module=self.model, meta=meta)
        return {"imagecond": folder}


def training_section(params: dict[str, Any], *, where: str = "params") -> dict[str, Any]:
    """The training part of ``params["imagecond"]`` (``unet``, ``train``, ``corruption``); unknown keys refused."""
    section = params["imagecond"]
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"{where}: imagecond: unknown keys {unknown}; expected a subset of {list(SECTION_KEYS)}")
    return {k: section[k] for k in TRAINING_KEYS if k in section}


def fit_imagecond(params: dict[str, Any], manifest: Path, *, checkpoints: Path, device: torch.device,
                  progress: bool = True, on_log: Callable[[int, dict[str, float]], None] | None = None,
                  where: str = "params") -> ImagecondFit:
    """Train the image-conditioned model on the clean ``train`` images of ``manifest`` (``imagecond`` training
    subsections, ``data.image_size``, ``seed``), resuming from ``checkpoints`` when the params match."""
    ic, seed, size = training_section(params, where=where), params_seed(params), int(params["data"]["image_size"])
    unet_cfg = imagecond_unet_config(sample_size=size, **ic["unet"])
    train_cfg = from_dict(TrainConfig, {"seed": seed, **ic["train"]}, where=f"{where}: imagecond.train")
    corruption = corruption_from_params(ic)
    images = load_clean_images(manifest, split="train", size=unet_cfg.image_size)
    ckpt = checkpoints / checkpoint_key({"imagecond": ic, "image_size": size, "seed": seed}, manifest)
    tiles = f" in {size} px crops" if unet_cfg.image_size != size else ""
    print(f"train_imagecond: {len(images)} clean train images at {unet_cfg.image_size} px{tiles} on {device}; "
          f"checkpoints in {ckpt}")
    losses: list[float] = []

    def log(step: int, m: dict[str, float]) -> None:
        losses.append(m["loss"])
        if on_log is not None:
            on_log(step, m)

    model = train_imagecond(images, unet_cfg, train_cfg, checkpoint_dir=ckpt, device=device, seed=seed,
                            corruption=corruption, on_log=log, progress=progress)
    metrics = {"final_loss": losses[-1] if losses else None, "steps": train_cfg.steps, "train_images": len(images),
               "parameters": sum(p.numel() for p in model.parameters()), "device": str(device)}
    return ImagecondFit(model=model, unet_config=unet_cfg, train_config=train_cfg, corruption=corruption,
                        metrics=metrics)
