"""diffusers schedulers configured from a :class:`~dermclean.diffusion.unet.UNetConfig`.

Schedulers hold the maths (noise schedule, DDIM steps and inversion, the DDIM grid up to a noise
level); loops that combine a model with a scheduler live where they are used (training, the methods).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class DDIMGrid:
    """The DDIM timesteps used between 0 and L: ``timesteps`` = ``(r, 2r, ..., k r)`` ascending."""

    num_train_timesteps: int
    num_inference_steps: int
    ratio: int
    timesteps: list[int]

    @property
    def noise_level(self) -> int:
        return self.timesteps[-1]

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def ddim_grid(num_train_timesteps: int, noise_level: int, steps: int) -> DDIMGrid:
    """The grid nearest to L = ``noise_level`` reached in ``steps`` DDIM steps.

    diffusers' DDIM schedulers step by ``r = T // num_inference_steps``; we pick ``r ~ L / steps`` and
    ``k = round(L / r)`` steps, so L and steps are exact when ``steps`` divides L and ``L / steps``
    divides T (e.g. L=400, 8 steps: r = 50; the Wolleb reference L=500, 500 steps: r = 1).
    """
    t_max = num_train_timesteps - 1
    if not 1 <= noise_level <= t_max:
        raise ValueError(f"noise_level {noise_level} must be in [1, {t_max}] (num_train_timesteps {num_train_timesteps})")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    r0 = max(1, round(noise_level / steps))
    n = max(1, num_train_timesteps // r0)
    r = num_train_timesteps // n
    k = max(1, min(round(noise_level / r), t_max // r))
    return DDIMGrid(num_train_timesteps, n, r, [r * i for i in range(1, k + 1)])
