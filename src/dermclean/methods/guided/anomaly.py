"""Anomaly maps by guided DDIM (Wolleb et al., "Diffusion Models for Medical Anomaly Detection", MICCAI 2022).

1. Deterministic DDIM **encoding** (eta = 0, no guidance, unconditional null token) of ``x0`` up to
   noise level L with diffusers' ``DDIMInverseScheduler``.
2. DDIM **decoding** back to t = 0 with diffusers' ``DDIMScheduler``, guided towards "clean":

   - ``cfg`` (Ho & Salimans 2022): ``eps = eps_uncond + s (eps_clean - eps_uncond)``, the two
     forwards batched together (labels all 0 = clean, all NaN = unconditional);
   - ``classifier`` (Wolleb et al.): ``eps = eps_uncond - sqrt(1 - abar_t) s grad log p(clean | x_t)``
     with the noise-aware classifier;
   - ``none``: ``eps_uncond``, the s = 0 reconstruction baseline.
3. Map = ``|x0 - x0_hat|`` summed over channels, optionally Gaussian-smoothed: ``(B, S, S)``.

Timestep grid: DDIM steps of ``r = T // n`` training timesteps; encoding visits ``r, 2r, ..., k r``,
decoding visits them in reverse. The input is taken as the sample at t = 0 (``abar_0 = 1 - beta_0``).
Plain DDIM inversion is only approximately undone by DDIM decoding (first-order error per step, large
with few steps); ``fixed_point_iters`` refines each encoding step until the unguided decoding step
inverts it exactly (see :func:`ddim_encode`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from dermclean.diffusion.schedulers import DDIMGrid, ddim_grid, ddim_inverse_scheduler, ddim_scheduler
from dermclean.diffusion.unet import UNetConfig
from dermclean.env import autocast
from dermclean.methods.guided.noisy_classifier import classifier_log_prob_grad


def _unet_config(model: nn.Module) -> UNetConfig:
    config = getattr(model, "config", None)
    if not isinstance(config, UNetConfig):
        raise TypeError(f"expected a DermUNet with a UNetConfig; got {type(model).__name__}")
    if config.prediction_type != "epsilon":
        raise ValueError(f"guided DDIM needs an eps-prediction UNet (guidance acts on eps); this one predicts "
                         f"{config.prediction_type!r}")
    return config


def _eps(model: nn.Module, x: torch.Tensor, t: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    with autocast(x.device):
        return model(x, tt, labels).float()


@torch.no_grad()
def ddim_encode(model: nn.Module, x0: torch.Tensor, grid: DDIMGrid, *, fixed_point_iters: int = 0) -> torch.Tensor:
    """Deterministic DDIM encoding ``x0 (B,3,S,S) in [-1,1] -> x_L (B,3,S,S)``, unconditional, no guidance.

    Each step ``t - r -> t`` first uses ``eps(x_{t-r}, t)`` (the usual DDIM inversion), then refines
    ``x_t`` with ``fixed_point_iters`` iterations of ``x_t <- invstep(eps(x_t, t))`` (fixed-point DDIM
    inversion, Pan et al. 2023, "Effective Real Image Editing with Accelerated Iterative Diffusion
    Inversion"), whose fixed point is exactly what the unguided decoding step maps back to ``x_{t-r}``.
    Each iteration costs one more forward per step; with few steps it removes most of the
    reconstruction error (see tests/test_detection_anomaly.py).
    """
    scheduler = ddim_inverse_scheduler(_unet_config(model))
    scheduler.set_timesteps(grid.num_inference_steps)
    x = x0.float()
    for t in grid.timesteps:
        x_t = scheduler.step(_eps(model, x, t), t, x).prev_sample
        for _ in range(fixed_point_iters):
            x_t = scheduler.step(_eps(model, x_t, t), t, x).prev_sample
        x = x_t
    return x


def guided_eps(model: nn.Module, x: torch.Tensor, t: int, *, guidance: str, scale: float,
               classifier: nn.Module | None = None, alphas_cumprod: torch.Tensor | None = None) -> torch.Tensor:
    """eps (B,3,S,S) guided towards "clean" (all outlier labels 0) at scale ``scale``; see module docstring."""
    b = x.shape[0]
    if guidance == "none" or scale == 0:
        return _eps(model, x, t, None)
    if guidance == "cfg":
        k = model.num_classes
        labels = torch.cat([torch.zeros(b, k), torch.full((b, k), float("nan"))]).to(x.device)
        eps_clean, eps_uncond = _eps(model, torch.cat([x, x]), t, labels).chunk(2)
        return eps_uncond + scale * (eps_clean - eps_uncond)
    if guidance == "classifier":
        if classifier is None:
            raise ValueError("guidance 'classifier' needs a noisy classifier in the detector bundle "
                             "(noisy_classifier/); use guidance 'cfg' or 'none', or train one")
        eps = _eps(model, x, t, None)
        tt = torch.full((b,), t, device=x.device, dtype=torch.long)
        target = torch.zeros(b, classifier.config.num_classes, device=x.device)
        grad = classifier_log_prob_grad(classifier, x, tt, target, scale)
        return eps - math.sqrt(1.0 - float(alphas_cumprod[t])) * grad
    raise ValueError(f"guidance {guidance!r}; expected cfg, classifier or none")


@torch.no_grad()
def ddim_decode(model: nn.Module, x_l: torch.Tensor, grid: DDIMGrid, *, guidance: str = "none",
                scale: float = 0.0, classifier: nn.Module | None = None) -> torch.Tensor:
    """DDIM decoding ``x_L (B,3,S,S) -> x0_hat (B,3,S,S)`` (eta = 0) guided towards "clean"."""
    scheduler = ddim_scheduler(_unet_config(model))
    scheduler.set_timesteps(grid.num_inference_steps)
    x = x_l.float()
    for t in reversed(grid.timesteps):
        eps = guided_eps(model, x, t, guidance=guidance, scale=scale, classifier=classifier,
                         alphas_cumprod=scheduler.alphas_cumprod)
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    return x


def smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of maps ``(B,S,S)`` with ``sigma`` in pixels (no-op for sigma <= 0)."""
    if sigma <= 0:
        return maps
    size = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(maps[:, None], [size, size], [sigma, sigma])[:, 0]


def difference_map(x0: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """``|x0 - clamp(x_hat)|`` summed over channels: ``(B,3,S,S) x2 -> (B,S,S)``, in [0, 6]."""
    return (x0.float() - x_hat.float().clamp(-1, 1)).abs().sum(dim=1)


@torch.no_grad()
def guided_anomaly_maps(model: nn.Module, x0: torch.Tensor, *, noise_level: int, steps: int, guidance: str,
                        scale: float, classifier: nn.Module | None = None, smoothing_sigma: float = 0.0,
                        fixed_point_iters: int = 0) -> torch.Tensor:
    """Wolleb et al. 2022 anomaly maps: ``x0 (B,3,S,S) in [-1,1] -> (B,S,S)``, higher = more anomalous."""
    grid = ddim_grid(_unet_config(model).num_train_timesteps, noise_level, steps)
    x_l = ddim_encode(model, x0, grid, fixed_point_iters=fixed_point_iters)
    x_hat = ddim_decode(model, x_l, grid, guidance=guidance, scale=scale, classifier=classifier)
    return smooth(difference_map(x0, x_hat), smoothing_sigma)


@torch.no_grad()
def diffusion_class_scores(model: nn.Module, x0: torch.Tensor, *, t: int, seed: int = 0) -> torch.Tensor:
    """Per-class scores (B,K) from the conditional UNet alone ("diffusion classifier", Li et al. 2023).

    ``score_k = |eps - eps(x_t | clean)|^2 - |eps - eps(x_t | only class k)|^2`` at one timestep ``t``
    with a fixed noise draw: positive when the condition "class k present" explains the image better
    than "clean". Used for per-type scores when the bundle has no noisy classifier.
    """
    config = _unet_config(model)
    scheduler = ddim_scheduler(config)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    tt = torch.full((x0.shape[0],), t, dtype=torch.long)
    x_t = scheduler.add_noise(x0.float().cpu(), noise.cpu(), tt).to(x0.device)
    b, k = x0.shape[0], config.num_classes
    labels = torch.cat([torch.zeros(1, k), torch.eye(k)]).repeat_interleave(b, dim=0).to(x0.device)
    eps = _eps(model, x_t.repeat(k + 1, 1, 1, 1), t, labels)
    err = ((eps - noise.repeat(k + 1, 1, 1, 1)) ** 2).mean(dim=(1, 2, 3)).view(k + 1, b)
    return (err[0:1] - err[1:]).T
