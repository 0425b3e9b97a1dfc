"""Training of the image-conditioned model (Baugh et al. 2024) on painted pairs
(:class:`~dermclean.methods.imagecond.pairs.ImagecondBatches`) with the shared DDPM loop
(:func:`dermclean.diffusion.train.train_diffusion`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dermclean.diffusion.train import TrainConfig, train_diffusion
from dermclean.diffusion.unet import DermUNet, UNetConfig, condition_channels
from dermclean.methods.imagecond.pairs import CorruptionConfig, ImagecondBatches


def train_imagecond(dataset_images: np.ndarray | Sequence[np.ndarray], unet_config: UNetConfig,
                    train_config: TrainConfig, *, checkpoint_dir: str | os.PathLike[str],
                    device: torch.device | str, seed: int, corruption: CorruptionConfig | None = None,
                    on_log: Callable[[int, dict[str, float]], None] | None = None,
                    progress: bool = True) -> DermUNet:
    """Train the image-conditioned model; returns the EMA model (eval mode).

    ``dataset_images``: clean uint8 ``S x S x 3`` images at ``unet_config.image_size`` (``work_size``
    when set: the model then trains on ``sample_size`` crops of them). Resumes from ``checkpoint_dir``
    like :func:`dermclean.diffusion.train.train_diffusion`.
    """
    expected = condition_channels(unet_config.channels, unet_config.mask_condition)
    if unet_config.cond_image_channels != expected or unet_config.num_classes:
        raise ValueError(f"train_imagecond: expected cond_image_channels={expected} (mask_condition "
                         f"{unet_config.mask_condition!r}) and num_classes=0; got {unet_config}")
    size = unet_config.image_size
    bad = [i for i, im in enumerate(dataset_images) if np.asarray(im).shape != (size, size, 3)]
    if bad:
        raise ValueError(f"train_imagecond: images {bad[:5]} are not {size}x{size}x3 uint8; resize them first")
    torch.manual_seed(seed)
    model = DermUNet(unet_config)
    crop = unet_config.sample_size if size != unet_config.sample_size else None
    batches = ImagecondBatches(dataset_images, batch_size=train_config.batch_size, seed=seed,
                               corruption=corruption or CorruptionConfig(), crop=crop,
                               mask_condition=unet_config.mask_condition)
    result = train_diffusion(model, batches, train_config, checkpoint_dir=Path(checkpoint_dir), device=device,
                             on_log=on_log, progress=progress)
    return result.model
