"""Removal core: mask dilation and fitting, masked PSNR/SSIM (hand-worked), methods at full resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dermclean.data.masks import MaskError, dilate_mask, fit_mask
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.classical.telea import telea_inpaint
from dermclean.methods.guided.repaint import InpaintConfig, repaint
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.imagecond.sample import imagecond_anomaly_map, imagecond_restore
from dermclean.removal.engine import RemovalConfig, make_remover, paste
from dermclean.removal.metrics import PSNR_CAP, masked_psnr, masked_ssim, region_scores, window_free

CFG = RemovalConfig(steps=2, jump_length=1, jump_n_sample=2, batch_size=4)


@pytest.fixture(scope="module")
def guided() -> DermUNet:
    torch.manual_seed(0)
    return DermUNet(UNetConfig(sample_size=16, block_out_channels=[8, 16]))


@pytest.fixture(scope="module")
def imagecond() -> DermUNet:
    torch.manual_seed(1)
    return DermUNet(imagecond_unet_config(sample_size=16, block_out_channels=[8, 16]))


def test_dilation_is_euclidean_disk():
    mask = np.zeros((15, 15), bool)
    mask[7, 7] = True
    out = dilate_mask(mask, 3)
    yy, xx = np.mgrid[:15, :15]
    assert np.array_equal(out, (yy - 7) ** 2 + (xx - 7) ** 2 <= 9)
    assert out.sum() == 29  # lattice points in a disk of radius 3
    assert np.array_equal(dilate_mask(mask, 0), mask)
    assert not dilate_mask(np.zeros((5, 5), bool), 4).any()
    with pytest.raises(ValueError):
        dilate_mask(mask, -1)


def test_fit_mask_covers_and_refuses_other_aspect():
    small = np.zeros((8, 8), bool)
    small[2, 3] = True
    big = fit_mask(small, (32, 32))
    assert big.shape == (32, 32) and big[8:12, 12:16].all()
    with pytest.raises(MaskError, match="aspect"):
        fit_mask(small, (32, 64))


def test_masked_psnr_hand_worked():
    target = np.zeros((4, 4, 3), np.uint8)
    pred = target.copy()
    pred[0, 0, 1] = 10
    region = np.zeros((4, 4), bool)
    region[0, :2] = True  # 2 pixels x 3 channels = 6 values, one off by 10 -> MSE 100/6
    assert masked_psnr(pred, target, region) == pytest.approx(10 * math.log10(255 ** 2 * 6 / 100))
    assert masked_psnr(pred, target, ~region) == PSNR_CAP
    assert math.isnan(masked_psnr(pred, target, np.zeros((4, 4), bool)))


def test_masked_ssim_hand_worked():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 110, np.uint8)
    c1 = (0.01 * 255) ** 2
    expected = (2 * 100 * 110 + c1) / (100 ** 2 + 110 ** 2 + c1)  # constant: contrast/structure terms = 1
    region = np.zeros((16, 16), bool)
    region[4:8, 4:8] = True
    assert masked_ssim(a, b, region) == pytest.approx(expected, rel=1e-9)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert masked_ssim(noise, noise, region) == pytest.approx(1.0)
    scores = region_scores(b, a, region)
    assert scores.ssim_in == pytest.approx(expected) and scores.ssim_out == pytest.approx(expected)
    assert scores.psnr_in == pytest.approx(10 * math.log10(255 ** 2 / 100))


def test_region_scores_outside_untouched_is_perfect():
    """An edit confined to the mask: outside PSNR is the cap and outside SSIM (windows clear of the mask) is 1."""
    rng = np.random.default_rng(1)
    target = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[2:6, 2:6] = True
    pred = target.copy()
    pred[mask] = 255 - pred[mask]
    scores = region_scores(pred, target, mask)
    assert scores.psnr_out == PSNR_CAP and scores.ssim_out == pytest.approx(1.0, abs=1e-9)
    assert scores.ssim_in < 0.5 and scores.psnr_in < 20
    far = window_free(mask)
    assert not far[:11, :11].any() and far[11:, :].all() and far[:, 11:].all()


def test_paste_only_inside_mask():
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:20] = True
    out = paste(image, torch.ones(3, 8, 8), mask)
    assert out.shape == image.shape
    assert np.array_equal(out[~mask], image[~mask]) and (out[mask] == 255).all()


@pytest.mark.parametrize("method", ["inpaint", "imagecond", "telea"])
def test_methods_keep_outside_pixels_and_input_size(method, guided, imagecond):
    """Non-square inputs larger than the 16-px model: size kept, outside-mask pixels bit-identical."""
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (48, 72, 3), dtype=np.uint8), rng.integers(0, 256, (40, 33, 3), dtype=np.uint8)]
    masks = [np.zeros(im.shape[:2], bool) for im in images]
    masks[0][10:20, 30:50] = True
    masks = [dilate_mask(m, 2) for m in masks]  # second mask stays empty
    model = {"inpaint": guided, "imagecond": imagecond, "telea": None}[method]
    remover = make_remover(method, model=model, config=CFG, device="cpu")
    out = remover.fill(images, masks)
    for im, m, o in zip(images, masks, out):
        assert o.shape == im.shape and o.dtype == np.uint8
        assert np.array_equal(o[~m], im[~m])
    assert not np.array_equal(out[0][masks[0]], images[0][masks[0]])


def test_make_remover_refuses_wrong_model(guided, imagecond):
    with pytest.raises(ValueError, match="image-conditioned"):
        make_remover("imagecond", model=guided, config=CFG, device="cpu")
    with pytest.raises(ValueError, match="guided"):
        make_remover("inpaint", model=imagecond, config=CFG, device="cpu")
    with pytest.raises(ValueError, match="unknown"):
        make_remover("blur", model=None, config=CFG, device="cpu")


def test_repaint_reimposes_known_pixels(guided):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    mask[:, :, 4:10, 4:10] = True
    for scale in (1.0, 3.0):
        out = repaint(guided, x, mask, config=InpaintConfig(steps=2, guidance_scale=scale, jump_length=1,
                                                            jump_n_sample=2))
        assert torch.equal(out[~mask.expand_as(out)], x[~mask.expand_as(x)])
        assert out.abs().max() <= 1.0


def test_imagecond_restore_shapes_and_determinism(imagecond):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    a = imagecond_restore(imagecond, x, steps=2)
    assert a.shape == x.shape and torch.equal(a, imagecond_restore(imagecond, x, steps=2))
    maps = imagecond_anomaly_map(imagecond, x, steps=2, noise_level=200)
    assert maps.shape == (2, 16, 16) and (maps >= 0).all() and (maps <= 6).all()
    with pytest.raises(ValueError, match="noise_level"):
        imagecond_restore(imagecond, x, steps=2, noise_level=5000)


def test_telea_fills_smoothly():
    image = np.full((24, 24, 3), 120, np.uint8)
    mask = np.zeros((24, 24), bool)
    mask[8:14, 8:14] = True
    corrupted = image.copy()
    corrupted[mask] = (0, 0, 255)
    out = telea_inpaint(corrupted, mask, radius=3)
    assert np.array_equal(out[~mask], corrupted[~mask])
    assert np.abs(out[mask].astype(int) - 120).max() <= 2  # a flat surround is filled flat
