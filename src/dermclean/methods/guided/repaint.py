"""RePaint-style diffusion inpainting with the guided class-conditional model, conditioned on "clean".

Lugmayr et al., "RePaint: Inpainting using Denoising Diffusion Probabilistic Models", CVPR 2022, with
diffusers' ``RePaintScheduler`` (which holds the maths): at every reverse step the unknown region
(inside the mask) comes from the model's step and the known region (outside it) is the *input*
noised to the current level, ``sqrt(abar) x0 + sqrt(1 - abar) eps``; resampling jumps
(``jump_length``, ``jump_n_sample``) re-noise the sample and repeat steps so the two regions
harmonise. The model is the Wolleb-style conditional UNet (:class:`~dermclean.diffusion.unet.DermUNet`)
with labels all 0 ("clean": no ruler, ink or patches); ``guidance_scale > 1`` adds classifier-free
guidance away from the unconditional (null-token) prediction (Ho & Salimans 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import RePaintScheduler
from torch import nn

from dermclean.env import autocast


@dataclass
class InpaintConfig:
    """Sampling settings of :func:`repaint` (``params["removal"]``)."""

    steps: int = 8
    guidance_scale: float = 1.0
    jump_length: int = 2
    jump_n_sample: int = 2
    eta: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.jump_length < 1 or self.jump_n_sample < 1:
            raise ValueError(f"InpaintConfig: steps, jump_length and jump_n_sample must be >= 1; got {self}")


def repaint_scheduler(model: nn.Module) -> RePaintScheduler:
    """A ``RePaintScheduler`` with the model's training noise schedule (x0 clipped to [-1, 1])."""
    config = model.config
    return RePaintScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule,
                            clip_sample=True)


def clean_eps(model: nn.Module, x: torch.Tensor, t: int, guidance_scale: float) -> torch.Tensor:
    """eps (B,3,S,S) conditioned on "clean" (labels zeros), with CFG when ``guidance_scale != 1``."""
    b, k = x.shape[0], model.num_classes
    tt = torch.full((b,), int(t), device=x.device, dtype=torch.long)
    with autocast(x.device):
        if guidance_scale == 1.0:
            return model(x, tt, torch.zeros(b, k, device=x.device)).float()
        labels = torch.cat([torch.zeros(b, k), torch.full((b, k), float("nan"))]).to(x.device)
        eps_clean, eps_uncond = model(torch.cat([x, x]), torch.cat([tt, tt]), labels).float().chunk(2)
    return eps_uncond + guidance_scale * (eps_clean - eps_uncond)


@torch.no_grad()
def repaint(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, *, config: InpaintConfig,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Inpaint ``x`` (B,3,S,S) in [-1, 1] inside ``mask`` (B,1,S,S) or (B,S,S), True/1 = replace.

    Returns (B,3,S,S) in [-1, 1]; outside the mask it equals ``x`` exactly (the final known part is
    ``x`` itself, and it is re-imposed once more at the end against float round-off).
    """
    if not getattr(model, "num_classes", 0):
        raise ValueError("repaint needs the class-conditional (guided) UNet (num_classes > 0); got an "
                         "unconditional or image-conditioned model. Pass the guided model (models/diffusion/unet)")
    if getattr(model.config, "cond_image_channels", 0):
        raise ValueError("repaint needs the guided class-conditional UNet, not the image-conditioned one")
    if getattr(model.config, "prediction_type", "epsilon") != "epsilon":
        raise ValueError("repaint needs an eps-prediction UNet (RePaintScheduler steps on eps); got "
                         f"prediction_type {model.config.prediction_type!r}")
    if mask.ndim == 3:
        mask = mask[:, None]
    device = x.device
    known = (~mask.bool()).to(x.dtype)  # RePaintScheduler: 1 = known pixel
    scheduler = repaint_scheduler(model)
    scheduler.eta = config.eta
    scheduler.set_timesteps(config.steps, jump_length=config.jump_length, jump_n_sample=config.jump_n_sample,
                            device=device)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    sample = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
    original = x.float()
    t_last = int(scheduler.timesteps[0]) + 1
    for t in scheduler.timesteps.tolist():
        if t < t_last:
            eps = clean_eps(model, sample, t, config.guidance_scale)
            sample = scheduler.step(eps, t, sample, original, known, generator=generator).prev_sample
        else:
            sample = scheduler.undo_step(sample, t_last, generator=generator)
        t_last = t
    sample = sample.clamp(-1.0, 1.0)
    return known * original + (1.0 - known) * sample
