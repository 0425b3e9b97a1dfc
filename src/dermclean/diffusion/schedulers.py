"""diffusers schedulers configured from a :class:`~dermclean.diffusion.unet.UNetConfig`.

Schedulers hold the maths (noise schedule, DDIM steps and inversion); loops that combine a model
with a scheduler live where they are used (training, detection, removal).
"""

from __future__ import annotations

from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler

from dermclean.diffusion.unet import UNetConfig


def _kwargs(config: UNetConfig) -> dict:
    return {"num_train_timesteps": config.num_train_timesteps, "beta_schedule": config.beta_schedule,
            "clip_sample": False, "prediction_type": config.prediction_type}


def training_scheduler(config: UNetConfig) -> DDPMScheduler:
    """The forward (noising) process used in training: linear betas, T steps, the model's prediction type."""
    return DDPMScheduler(**_kwargs(config))


def ddim_scheduler(config: UNetConfig) -> DDIMScheduler:
    """Deterministic DDIM sampling (eta = 0)."""
    return DDIMScheduler(**_kwargs(config), set_alpha_to_one=False)


def ddim_inverse_scheduler(config: UNetConfig) -> DDIMInverseScheduler:
    """Deterministic DDIM encoding (inversion), the reverse of :func:`ddim_scheduler`."""
    return DDIMInverseScheduler(**_kwargs(config))
