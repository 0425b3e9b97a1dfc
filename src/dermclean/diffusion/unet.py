"""A diffusers ``UNet2DModel`` with a multi-label outlier condition and an optional image condition.

- Class condition (Wolleb et al. 2022 with classifier-free guidance, Ho & Salimans 2022): one
  learned embedding per outlier class (ruler, ink, patches), summed onto a learned "conditioned"
  base token and added to the timestep embedding (``class_embed_type="identity"``). "Clean" is the
  base token alone (all labels 0); "unconditional" is a separate learned null token, used for
  condition dropout in training and for the unconditional branch of guidance.
- Image condition (Baugh et al. 2024): ``cond_image_channels > 0`` concatenates the corrupted image
  to ``x_t`` on the channel axis.
- Output: eps (``prediction_type="epsilon"``, the guided model: guidance formulas act on eps) or the
  clean image itself (``"sample"``): an image-conditioned model then copies clean skin straight
  from its condition instead of recovering it from an eps estimate divided by ``sqrt(abar_t)``.
  ``condition_residual`` goes one step further: ``x0 = cond_image + UNet(...)``, so the network only
  learns what to change and reproduces everything else exactly from the start of training.
- Mask condition (``mask_condition``, image-conditioned models only): the condition carries one more
  channel, the removal mask (1 = "replace this", 0 elsewhere; all 0 when the model is used as a
  detector and must find the artifact itself). With ``"telea"`` the condition image is also
  pre-filled inside that mask by Telea's inpainting, so a residual model starts from the classical
  fill and learns what to change in it; ``"telea_image"`` gives both, the Telea-filled image (the
  residual's base) and the unfilled one, so the model also sees which pixels inside the (dilated)
  mask are clean skin it can keep (:mod:`dermclean.methods.imagecond.model`).
- Tiles: with ``work_size`` set the model is trained on ``sample_size`` crops of ``work_size`` images
  and :meth:`DermUNet.forward` runs any input larger than ``sample_size`` as overlapping tiles
  (:mod:`dermclean.diffusion.tiles`), so thin artifacts keep their native width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import UNet2DModel
from torch import nn

from dermclean.diffusion.tiles import tiled
from dermclean.modelio import register


MASK_CONDITIONS = (None, "mask", "telea", "telea_image")
"""What an image-conditioned model is told about the removal mask: nothing, the mask as an extra
condition channel, the mask plus a condition image pre-filled inside it by Telea, or the mask plus
both the Telea-filled and the unfilled image."""


def condition_channels(channels: int, mask_condition: str | None) -> int:
    """Condition channels of an image-conditioned model: the image(s) it is shown plus the mask channel."""
    if mask_condition not in MASK_CONDITIONS:
        raise ValueError(f"mask_condition is {mask_condition!r}; expected one of {MASK_CONDITIONS}")
    images = 2 if mask_condition == "telea_image" else 1
    return images * channels + (1 if mask_condition else 0)

PREDICTION_TYPES = ("epsilon", "sample")
"""What the UNet predicts: the noise (eps, Ho et al. 2020) or the clean image x0 (diffusers' "sample")."""


@dataclass
class UNetConfig:
    """Typed configuration of :class:`DermUNet`, saved as the model folder's ``config.json``."""

    sample_size: int = 64
    channels: int = 3
    cond_image_channels: int = 0
    num_classes: int = 3
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 1
    attention: bool = False
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    work_size: int | None = None
    prediction_type: str = "epsilon"
    condition_residual: bool = False
    mask_condition: str | None = None

    def __post_init__(self) -> None:
        self.block_out_channels = list(self.block_out_channels)
        if self.sample_size % (2 ** (len(self.block_out_channels) - 1)):
            raise ValueError(f"sample_size {self.sample_size} must be divisible by "
                             f"2**{len(self.block_out_channels) - 1} for block_out_channels {self.block_out_channels}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type is {self.prediction_type!r}; expected one of {PREDICTION_TYPES}")
        if self.mask_condition not in MASK_CONDITIONS:
            raise ValueError(f"mask_condition is {self.mask_condition!r}; expected one of {MASK_CONDITIONS}")
        if self.mask_condition and self.cond_image_channels != condition_channels(self.channels, self.mask_condition):
            raise ValueError(f"mask_condition {self.mask_condition!r} needs cond_image_channels = "
                             f"{condition_channels(self.channels, self.mask_condition)} (its image(s) and the mask); "
                             f"got {self.cond_image_channels}")
        if self.condition_residual and (self.prediction_type != "sample" or self.condition_image_channels < self.channels):
            raise ValueError("condition_residual needs prediction_type 'sample' and an image condition with at "
                             f"least as many channels as the image; got {self.prediction_type!r}, {self.cond_image_channels}")
        if self.work_size is not None and int(self.work_size) < self.sample_size:
            raise ValueError(f"work_size {self.work_size} must be null or at least sample_size {self.sample_size} "
                             f"(the model sees sample_size tiles of work_size images)")

    @property
    def condition_image_channels(self) -> int:
        """Channels of the condition that are images (``cond_image_channels`` less the mask channel): the
        image, or with ``"telea_image"`` the Telea-filled image then the unfilled one."""
        return self.cond_image_channels - (1 if self.mask_condition else 0)

    @property
    def image_size(self) -> int:
        """Side of the whole images the model works on: ``work_size`` (as tiles) or ``sample_size``."""
        return int(self.work_size or self.sample_size)


class DermUNet(nn.Module):
    """eps- (or x0-, ``prediction_type``) prediction UNet. ``forward(x_t (B,C,H,W), t (B,), labels (B,K) or None, cond_image (B,C',H,W))``.

    Inputs larger than ``sample_size`` are run as overlapping ``sample_size`` tiles, each with its
    image's timestep, labels and condition, and the eps predictions blended (:func:`tiles.tiled`).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        n = len(config.block_out_channels)
        down = ["DownBlock2D"] * n
        up = ["UpBlock2D"] * n
        if config.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        time_dim = config.block_out_channels[0] * 4
        groups = min(8, config.block_out_channels[0])
        self.unet = UNet2DModel(
            sample_size=config.sample_size,
            in_channels=config.channels + config.cond_image_channels,
            out_channels=config.channels,
            block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=groups,
            add_attention=config.attention,
            class_embed_type="identity" if config.num_classes else None,
        )
        if config.num_classes:
            # rows: 0 = "conditioned" base, 1..K = classes, K+1 = null (unconditional)
            self.class_tokens = nn.Parameter(torch.randn(config.num_classes + 2, time_dim) * 0.02)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def condition_embedding(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """(B, D) embedding for multi-hot ``labels`` (B, K); ``None`` gives the null token.

        Rows of ``labels`` that are all NaN are treated as unconditional (condition dropout).
        """
        if not self.config.num_classes:
            return None
        k = self.config.num_classes
        null = self.class_tokens[k + 1].expand(batch, -1)
        if labels is None:
            return null
        labels = labels.to(self.class_tokens.dtype)
        dropped = torch.isnan(labels).all(dim=1, keepdim=True)
        cond = self.class_tokens[0] + torch.nan_to_num(labels) @ self.class_tokens[1 : k + 1]
        return torch.where(dropped, null, cond)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                cond_image: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.cond_image_channels:
            if cond_image is None:
                raise ValueError("this UNet is image-conditioned: pass cond_image")
            x_t = torch.cat([x_t, cond_image.to(x_t.dtype)], dim=1)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        tile = self.config.sample_size
        if x_t.shape[-1] > tile or x_t.shape[-2] > tile:
            out = tiled(lambda z, src: self._forward(z, t[src], None if labels is None else labels[src]),
                        x_t, tile=tile)
        else:
            out = self._forward(x_t, t, labels)
        if self.config.condition_residual:
            out = out + cond_image[:, :self.config.channels].to(out.dtype)
        return out

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.condition_embedding(labels, x.shape[0])
        return self.unet(x, t, class_labels=emb).sample


register("unet", UNetConfig, DermUNet)
