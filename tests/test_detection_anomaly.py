"""Guided DDIM anomaly maps: grid, encode/decode shapes, determinism, reconstruction, guidance direction.

Reconstruction is checked on a denoiser whose eps is exact: the optimal eps-predictor for Gaussian
data ``x0 ~ N(mu, sigma^2 I)`` (``eps* = b (x_t - a mu) / (a^2 sigma^2 + b^2)``, ``a = sqrt(abar_t)``,
``b = sqrt(1 - abar_t)``). Measured tolerances (16x16, sigma 0.3, L = 400): plain DDIM inversion with
8 steps leaves a mean absolute error of ~0.06 (first-order error of the discretised ODE, which is why
Wolleb et al. use every step); two fixed-point iterations bring it to ~0.004 and four to ~0.0003;
500 steps of plain inversion to ~0.002.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dermclean.diffusion.schedulers import ddim_grid, training_scheduler
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.guided.anomaly import ddim_decode, ddim_encode, diffusion_class_scores, guided_anomaly_maps

MU, SIGMA = 0.2, 0.3


class GaussianEps(nn.Module):
    """Exact eps for Gaussian data; ``clean_shift`` is added to eps when the labels say "clean"."""

    num_classes = 3

    def __init__(self, clean_shift: float = 0.0) -> None:
        super().__init__()
        self.config = UNetConfig(sample_size=16, block_out_channels=[8, 16])
        self.register_buffer("abar", training_scheduler(self.config).alphas_cumprod.clone())
        self.clean_shift = clean_shift

    def forward(self, x, t, labels=None, cond_image=None):
        abar = self.abar[t].view(-1, 1, 1, 1)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        eps = b * (x - a * MU) / (a * a * SIGMA**2 + b * b)
        if labels is not None:
            clean = (torch.nan_to_num(labels, nan=1.0).sum(dim=1) == 0).float().view(-1, 1, 1, 1)
            eps = eps + self.clean_shift * clean
        return eps


class RedClassifier(nn.Module):
    """Hand-built 'artifact' classifier: every class's logit is 20 x the mean of the red channel."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("C", (), {"num_classes": 3})()
        self.gain = nn.Parameter(torch.tensor(20.0))

    def forward(self, x_t, t):
        return self.gain * x_t[:, 0].mean(dim=(1, 2))[:, None].expand(-1, 3)


@pytest.fixture(scope="module")
def x0():
    torch.manual_seed(0)
    return (MU + SIGMA * torch.randn(2, 3, 16, 16)).clamp(-1, 1)


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return DermUNet(UNetConfig(sample_size=16, block_out_channels=[8, 16])).eval()


def test_grid_is_exact_where_possible_and_rounds_otherwise():
    g = ddim_grid(1000, 400, 8)
    assert (g.ratio, g.steps, g.noise_level, g.timesteps[0]) == (50, 8, 400, 50)
    ref = ddim_grid(1000, 500, 500)
    assert (ref.ratio, ref.steps, ref.noise_level) == (1, 500, 500)
    odd = ddim_grid(1000, 300, 7)
    assert odd.steps == 7 and abs(odd.noise_level - 300) <= odd.ratio
    with pytest.raises(ValueError, match="noise_level"):
        ddim_grid(1000, 1000, 8)


def test_encode_decode_shapes_and_determinism(tiny_unet, x0):
    grid = ddim_grid(1000, 300, 3)
    x_l = ddim_encode(tiny_unet, x0, grid)
    assert x_l.shape == x0.shape and torch.isfinite(x_l).all()
    assert torch.equal(x_l, ddim_encode(tiny_unet, x0, grid))
    x_hat = ddim_decode(tiny_unet, x_l, grid, guidance="cfg", scale=2.0)
    assert x_hat.shape == x0.shape
    assert torch.equal(x_hat, ddim_decode(tiny_unet, x_l, grid, guidance="cfg", scale=2.0))
    maps = guided_anomaly_maps(tiny_unet, x0, noise_level=300, steps=2, guidance="cfg", scale=2.0, smoothing_sigma=1.0)
    assert maps.shape == (2, 16, 16) and (maps >= 0).all()


def test_encoding_moves_towards_noise():
    model = GaussianEps()
    x0 = torch.full((1, 3, 16, 16), 0.9)
    x_l = ddim_encode(model, x0, ddim_grid(1000, 800, 8))
    assert (x_l - x0).abs().mean() > 0.3


@pytest.mark.parametrize(("steps", "iters", "tol_mean"), [(8, 0, 0.1), (8, 2, 0.01), (8, 4, 0.001), (3, 4, 0.02)])
def test_unguided_decode_of_encode_reconstructs(x0, steps, iters, tol_mean):
    model = GaussianEps()
    grid = ddim_grid(1000, 400 if steps == 8 else 250, steps)
    x_hat = ddim_decode(model, ddim_encode(model, x0, grid, fixed_point_iters=iters), grid, guidance="none")
    err = (x_hat - x0).abs()
    assert err.mean() < tol_mean, f"mean error {err.mean():.4f} >= {tol_mean}"


def test_classifier_guidance_moves_away_from_the_artifact_class(x0):
    model, clf = GaussianEps(), RedClassifier()
    grid = ddim_grid(1000, 400, 8)
    x_l = ddim_encode(model, x0, grid, fixed_point_iters=2)
    plain = ddim_decode(model, x_l, grid, guidance="none")
    guided = ddim_decode(model, x_l, grid, guidance="classifier", scale=5.0, classifier=clf)
    # p(artifact) rises with red: guidance towards "clean" must lower the red channel, not the others much
    assert guided[:, 0].mean() < plain[:, 0].mean() - 0.05
    assert (guided[:, 1:] - plain[:, 1:]).abs().mean() < (guided[:, 0] - plain[:, 0]).abs().mean()


def test_cfg_guidance_scales_the_clean_direction(x0):
    model = GaussianEps(clean_shift=0.05)
    grid = ddim_grid(1000, 400, 8)
    x_l = ddim_encode(model, x0, grid)
    means = [ddim_decode(model, x_l, grid, guidance="cfg", scale=s).mean().item() for s in (0.0, 1.0, 3.0)]
    # a larger eps under the "clean" condition predicts a darker x0; the effect grows with s
    assert means[0] > means[1] > means[2]


def test_classifier_guidance_without_classifier_is_refused(x0):
    with pytest.raises(ValueError, match="noisy classifier"):
        guided_anomaly_maps(GaussianEps(), x0, noise_level=100, steps=2, guidance="classifier", scale=1.0)


def test_diffusion_class_scores_shape(tiny_unet, x0):
    scores = diffusion_class_scores(tiny_unet, x0, t=200)
    assert scores.shape == (2, 3) and torch.isfinite(scores).all()
    assert torch.equal(scores, diffusion_class_scores(tiny_unet, x0, t=200))
