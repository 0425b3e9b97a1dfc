"""Masked image-quality metrics for removal on paired data (clean -> painted -> removed).

- :func:`masked_psnr`: ``10 log10(R^2 / MSE)`` with the MSE over the pixels of a region (all
  channels), ``R`` the data range (255 for uint8). Identical regions give :data:`PSNR_CAP` instead
  of infinity, so metrics files stay valid JSON.
- :func:`masked_ssim`: the SSIM map of Wang et al. 2004 (Gaussian window 11 px, sigma 1.5,
  ``K1 = 0.01``, ``K2 = 0.03``, reflect padding so the map has the image's size), computed per
  channel on the whole image and averaged over the region's pixels and the channels.
- :func:`region_scores`: inside = the mask's pixels (their windows may reach outside it, as in any
  local SSIM); outside = PSNR over every pixel outside the mask, SSIM over the pixels whose whole
  window lies outside it (so "outside" measures the untouched rest of the image, not the edit
  leaking into windows that straddle the mask's border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0
"""PSNR reported for identical regions (MSE = 0)."""

SSIM_WINDOW = 11


@dataclass
class RegionScores:
    """PSNR (dB) and SSIM inside and outside a mask; NaN where the region is empty."""

    psnr_in: float
    ssim_in: float
    psnr_out: float
    ssim_out: float


def _as_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    return image[..., None] if image.ndim == 2 else image


def masked_psnr(pred: np.ndarray, target: np.ndarray, region: np.ndarray, *, data_range: float = 255.0) -> float:
    """PSNR over ``region`` (bool ``H x W``) of ``pred`` vs ``target`` (``H x W`` or ``H x W x C``)."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return float("nan")
    diff = (_as_float(pred) - _as_float(target))[region]
    mse = float(np.mean(diff ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(data_range ** 2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(pred: np.ndarray, target: np.ndarray, *, data_range: float = 255.0, window: int = SSIM_WINDOW,
             sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM ``H x W x C`` (Wang et al. 2004) with reflect padding."""
    x = torch.from_numpy(_as_float(pred)).permute(2, 0, 1)[:, None]   # (C,1,H,W)
    y = torch.from_numpy(_as_float(target)).permute(2, 0, 1)[:, None]
    kernel = _gaussian_window(window, sigma)
    pad = window // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(z, (pad, pad, pad, pad), mode=mode), kernel)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s[:, 0].permute(1, 2, 0).numpy()


def masked_ssim(pred: np.ndarray, target: np.ndarray, region: np.ndarray, *, data_range: float = 255.0) -> float:
    """Mean SSIM over ``region`` (bool ``H x W``) and channels; NaN for an empty region."""
    region = np.asarray(region, dtype=bool)
    if not region.any():
        return float("nan")
    return float(ssim_map(pred, target, data_range=data_range)[region].mean())


def window_free(mask: np.ndarray, window: int = SSIM_WINDOW) -> np.ndarray:
    """Pixels whose ``window x window`` neighbourhood contains no ``mask`` pixel (bool ``H x W``)."""
    import cv2

    touched = cv2.dilate(np.asarray(mask, dtype=np.uint8), np.ones((window, window), np.uint8))
    return touched == 0


def region_scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> RegionScores:
    """PSNR and SSIM of uint8 ``pred`` vs ``target`` inside ``mask`` and outside it (module docstring)."""
    mask = np.asarray(mask, dtype=bool)
    smap = ssim_map(pred, target)
    far = window_free(mask)
    inside = float(smap[mask].mean()) if mask.any() else float("nan")
    outside = float(smap[far].mean()) if far.any() else float("nan")
    return RegionScores(psnr_in=masked_psnr(pred, target, mask), ssim_in=inside,
                        psnr_out=masked_psnr(pred, target, ~mask), ssim_out=outside)
