"""The image-conditioned model (Baugh et al. 2024): its UNet config and the condition it is given.

Model: :class:`~dermclean.diffusion.unet.DermUNet` with ``cond_image_channels=3, num_classes=0``;
the corrupted image is concatenated to ``x_t`` on the channel axis and the model learns eps -- or, with
``prediction_type="sample"``, the *clean* original itself -- of the clean image (same DDPM objective
and machinery as the guided model: :mod:`dermclean.diffusion.train`).

Mask condition (``UNetConfig.mask_condition``): a remover is always given the (dilated) mask it must
fill, so the model may be told too. With ``"mask"`` the condition gets a fourth channel, the mask;
with ``"telea"`` the condition image is moreover pre-filled inside the mask by Telea's inpainting
(:func:`prefill`), so a residual model starts from the classical fill and learns what to change in
it; ``"telea_image"`` shows the unfilled image as well (6 image channels, the Telea fill first), so the
model can also keep the clean skin that the dilated mask covers, which Telea discards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dermclean.diffusion.unet import UNetConfig, condition_channels
from dermclean.methods.classical.telea import telea_inpaint


def imagecond_unet_config(*, sample_size: int, block_out_channels: Sequence[int], layers_per_block: int = 1,
                          attention: bool = False, work_size: int | None = None,
                          prediction_type: str = "epsilon", condition_residual: bool = False,
                          mask_condition: str | None = None) -> UNetConfig:
    """The UNet config of the image-conditioned model: 3 condition channels (plus the mask, and the
    unfilled image too with ``"telea_image"``: :func:`~dermclean.diffusion.unet.condition_channels`),
    no class condition; ``work_size`` trains it on ``sample_size`` crops of ``work_size`` images (tiles
    at inference); ``prediction_type="sample"`` makes it predict the clean image rather than eps,
    ``condition_residual`` predicts it as the (pre-filled) corrupted image plus a learned change."""
    return UNetConfig(sample_size=sample_size, cond_image_channels=condition_channels(3, mask_condition), num_classes=0,
                      block_out_channels=list(block_out_channels), layers_per_block=layers_per_block,
                      attention=attention, work_size=work_size, prediction_type=prediction_type,
                      condition_residual=condition_residual, mask_condition=mask_condition)


def check_imagecond(model: torch.nn.Module, where: str = "model") -> None:
    config = getattr(model, "config", None)
    if not isinstance(config, UNetConfig) or not config.cond_image_channels or config.num_classes or \
            config.cond_image_channels != condition_channels(config.channels, config.mask_condition):
        raise ValueError(f"{where}: expected an image-conditioned UNet (no classes; cond_image_channels 3, "
                         f"or more with a mask_condition: the image(s) and the mask), e.g. models/imagecond; "
                         f"got {config}")


PREFILL_RADIUS = 3
"""Telea radius (px) of the ``"telea"`` mask condition's pre-fill, the same in training and removal."""


def prefill(image: np.ndarray, mask: np.ndarray, mask_condition: str | None) -> np.ndarray:
    """The condition image for ``image`` (uint8 H x W x 3) with removal mask ``mask`` (bool H x W):
    Telea-filled inside ``mask`` for ``mask_condition="telea"``; that fill and ``image`` stacked on the
    channel axis (H x W x 6) for ``"telea_image"``; else ``image`` itself."""
    filled = image
    if mask_condition in ("telea", "telea_image") and mask.any():
        filled = telea_inpaint(image, mask, radius=PREFILL_RADIUS)
    if mask_condition == "telea_image":
        return np.concatenate([filled, image], axis=2)
    return filled


def with_mask_channel(x: torch.Tensor, mask: torch.Tensor | None, config: UNetConfig) -> torch.Tensor:
    """The model's condition: ``x`` (B,C',S,S), the condition image(s) (:func:`prefill`), plus, for a
    mask-conditioned model, ``mask`` (B,1,S,S) or (B,S,S) in {0, 1} (``None``: empty, the detector's case)
    as the last channel. Without a mask, a ``"telea_image"`` model may be given the plain image (B,3,S,S):
    with nothing to fill, its Telea-filled and unfilled images are the same."""
    if not config.mask_condition:
        if mask is not None:
            raise ValueError("this image-conditioned model takes no mask (mask_condition is null)")
        return x
    wanted = config.condition_image_channels
    if mask is None and x.shape[1] == config.channels and wanted == 2 * config.channels:
        x = torch.cat([x, x], dim=1)
    if x.shape[1] != wanted:
        raise ValueError(f"condition of {x.shape[1]} channels for a mask_condition={config.mask_condition!r} model; "
                         f"expected {wanted} (build it with prefill())")
    if mask is None:
        mask = torch.zeros((x.shape[0], 1, *x.shape[-2:]), device=x.device, dtype=x.dtype)
    mask = mask.to(device=x.device, dtype=x.dtype)
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.shape != (x.shape[0], 1, *x.shape[-2:]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the images {tuple(x.shape)}")
    return torch.cat([x, mask], dim=1)
