"""Restoration and the difference-map anomaly map of the image-conditioned model (Baugh et al. 2024).

:func:`imagecond_restore` samples the clean image with deterministic DDIM (eta = 0),
by default from pure noise at t = T-1 ("trailing" timestep spacing, so the first step really starts
at pure noise), the corrupted image always visible through the condition (Baugh et al., ~50 steps).
With ``noise_level=L`` it instead starts from the corrupted image noised to L (faster, closer to
the input). :func:`imagecond_anomaly_map` is ``|x - x_hat|`` summed over channels.
:class:`SampleConfig` is ``params["imagecond"]["sample"]``, the one home of both inference settings
(detection, removal and the post-training check read it through :func:`sample_config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler

from dermclean.config import from_dict
from dermclean.diffusion.schedulers import ddim_grid, ddim_scheduler, training_scheduler
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.env import autocast
from dermclean.methods.imagecond.model import check_imagecond, with_mask_channel


@dataclass(frozen=True)
class SampleConfig:
    """Inference of the image-conditioned model: DDIM ``steps`` from ``noise_level`` (L of
    ``num_train_timesteps``; None = from pure noise, Baugh et al.)."""

    steps: int = 8
    noise_level: int | None = None

    def __post_init__(self) -> None:
        if int(self.steps) < 1:
            raise ValueError(f"imagecond.sample.steps must be >= 1; got {self.steps}")
        object.__setattr__(self, "steps", int(self.steps))
        if self.noise_level is not None:
            object.__setattr__(self, "noise_level", int(self.noise_level))


def sample_config(params: dict[str, Any]) -> SampleConfig:
    """The :class:`SampleConfig` of the effective params (``imagecond.sample``; defaults when absent)."""
    return from_dict(SampleConfig, (params.get("imagecond") or {}).get("sample"), where="imagecond.sample")


def _sampling_plan(config: UNetConfig, steps: int, noise_level: int | None) -> tuple[DDIMScheduler, list[int]]:
    """DDIM scheduler and the timesteps to visit (descending): ``steps`` steps from T-1 (pure noise),
    or the DDIM grid that reaches ``noise_level`` in ``steps`` steps (:func:`~dermclean.diffusion.schedulers.ddim_grid`,
    the grid the guided detector decodes on), one model evaluation per step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    base = ddim_scheduler(config)
    big_t = config.num_train_timesteps
    if noise_level is None:
        scheduler = DDIMScheduler.from_config(base.config, timestep_spacing="trailing")
        scheduler.set_timesteps(min(steps, big_t))
        return scheduler, [int(t) for t in scheduler.timesteps]
    if not 1 <= noise_level < big_t:
        raise ValueError(f"noise_level must be in [1, {big_t - 1}] or None (pure noise); got {noise_level}")
    grid = ddim_grid(big_t, noise_level, steps)
    base.set_timesteps(grid.num_inference_steps)
    return base, list(reversed(grid.timesteps))


@torch.no_grad()
def imagecond_restore(model: DermUNet, x_corrupted: torch.Tensor, *, steps: int, noise_level: int | None = None,
                      generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Clean estimate ``(B,3,S,S)`` in [-1, 1] of ``x_corrupted`` ``(B,3,S,S)`` in [-1, 1] (``S`` the model's
    ``image_size``; a tiled model steps the whole image, see :class:`~dermclean.diffusion.unet.DermUNet`).

    Deterministic DDIM (eta = 0) conditioned on ``x_corrupted``: from pure noise (``noise_level=None``,
    Baugh et al.) or from ``x_corrupted`` noised to ``noise_level``; the result is the last step's x0
    estimate (DDIM's final step would add back ``sqrt(1 - abar_0)`` of its eps). The initial noise comes from
    ``generator`` (default: seeded with 0, so the result is reproducible): one draw, shared by every image
    of the batch, so an image's result does not depend on its place in the batch or on the batch size
    (``dermclean detect --batch-size``). A mask-conditioned model is told ``mask`` (B,S,S) in {0, 1},
    or nothing (an empty mask) when it is ``None``; ``x_corrupted`` is then already its condition
    image (:func:`~dermclean.methods.imagecond.model.prefill`: (B,6,S,S) for ``"telea_image"``).
    """
    check_imagecond(model)
    device = x_corrupted.device
    cond = with_mask_channel(x_corrupted.float(), mask, model.config)
    image = cond[:, :model.config.channels]  # the image the model starts from (a telea_image model: the fill)
    scheduler, timesteps = _sampling_plan(model.config, steps, noise_level)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    noise = torch.randn((1, *image.shape[1:]), generator=generator, device=device).expand_as(image)
    if noise_level is None:
        x = noise
    else:
        x = training_scheduler(model.config).add_noise(image, noise, torch.tensor([timesteps[0]], device=device))
    for t in timesteps:
        tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        with autocast(device):
            out = model(x, tt, None, cond).float()  # eps or x0: the scheduler has the model's prediction type
        step = scheduler.step(out, t, x, eta=0.0)
        x = step.prev_sample
    return step.pred_original_sample.clamp(-1.0, 1.0)  # the last x0 estimate, not re-noised to abar_0


@torch.no_grad()
def imagecond_anomaly_map(model: DermUNet, x: torch.Tensor, *, steps: int, noise_level: int | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Anomaly map ``(B,S,S)`` = ``|x - imagecond_restore(x)|`` summed over channels (range [0, 6])."""
    restored = imagecond_restore(model, x, steps=steps, noise_level=noise_level, generator=generator)
    return (x.float() - restored).abs().sum(dim=1)
