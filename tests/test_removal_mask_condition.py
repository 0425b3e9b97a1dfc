"""The image-conditioned model told the removal mask (``mask_condition``): the condition it is built
from in training and in removal, and that a residual ``"telea"`` model starts from Telea's fill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermclean.data.masks import dilate_mask
from dermclean.diffusion.train import TrainConfig, weighted_mse
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.classical.telea import telea_inpaint
from dermclean.methods.imagecond.model import PREFILL_RADIUS, imagecond_unet_config, prefill
from dermclean.methods.imagecond.pairs import CorruptionConfig, ImagecondBatches, corrupt
from dermclean.methods.imagecond.sample import imagecond_anomaly_map, imagecond_restore
from dermclean.methods.imagecond.train import train_imagecond
from dermclean.removal.engine import RemovalConfig, make_remover
from test_removal_imagecond import skin_images

SIZE = 32


def residual_config(mask_condition: str | None, **kw) -> UNetConfig:
    return imagecond_unet_config(sample_size=16, block_out_channels=[8, 16], prediction_type="sample",
                                 condition_residual=True, mask_condition=mask_condition, **kw)


def test_config_counts_the_mask_channel_and_refuses_a_mismatch():
    cfg = residual_config("telea")
    assert cfg.cond_image_channels == 4 and cfg.condition_image_channels == 3
    assert residual_config(None).cond_image_channels == 3
    both = residual_config("telea_image")
    assert both.cond_image_channels == 7 and both.condition_image_channels == 6
    with pytest.raises(ValueError, match="cond_image_channels = 7"):
        UNetConfig(sample_size=16, block_out_channels=[8, 16], num_classes=0, cond_image_channels=4,
                   mask_condition="telea_image")
    with pytest.raises(ValueError, match="mask_condition"):
        UNetConfig(sample_size=16, block_out_channels=[8, 16], num_classes=0, cond_image_channels=3,
                   mask_condition="mask")
    with pytest.raises(ValueError, match="mask_condition"):
        residual_config("poisson")
    with pytest.raises(ValueError, match="mask_fraction"):
        CorruptionConfig(mask_fraction=1.5)
    with pytest.raises(ValueError, match="mask_dilation"):
        CorruptionConfig(mask_dilation=[4, 2])


@pytest.mark.parametrize("mask_condition", ["mask", "telea", "telea_image"])
def test_batches_tell_a_share_of_painted_pairs_their_dilated_mask(mask_condition):
    images = skin_images(6)
    corruption = CorruptionConfig(untouched_fraction=0.2, mask_fraction=0.5, mask_dilation=[2, 2])
    batches = ImagecondBatches(images, batch_size=8, seed=1, corruption=corruption, mask_condition=mask_condition)
    told = painted = 0
    for k in range(25):
        batch = batches.batch(k)
        shown_channels = 6 if mask_condition == "telea_image" else 3
        assert batch.cond_image.shape == (8, shown_channels + 1, SIZE, SIZE)
        assert torch.equal(batch.cond_image, batches.batch(k).cond_image)  # deterministic per step
        # Rebuild the step's pairs with the same draws, to compare against what the model was given.
        rng = np.random.default_rng([1, k])
        idx = rng.integers(0, len(images), size=8)
        for j, i in enumerate(idx):
            pair = batches.tell(corrupt(images[i], rng, corruption), rng)
            given = batch.cond_image[j, -1].numpy() > 0.5
            assert np.array_equal(given, pair.given_mask)
            shown = ((batch.cond_image[j, :-1].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
            if mask_condition == "telea_image":  # the fill first, then the unfilled image as it was painted
                assert np.array_equal(shown[..., 3:], pair.corrupted)
            if pair.untouched:
                assert not given.any() and np.array_equal(shown[..., :3], pair.corrupted)
                continue
            painted += 1
            if not given.any():
                assert np.array_equal(shown[..., :3], pair.corrupted)
                continue
            told += 1
            assert np.array_equal(given, dilate_mask(pair.mask, 2))
            expected = prefill(pair.corrupted, given, mask_condition)
            assert np.array_equal(shown, expected)
            if mask_condition in ("telea", "telea_image"):
                fill = expected[..., :3]
                assert np.array_equal(fill, telea_inpaint(pair.corrupted, given, radius=PREFILL_RADIUS))
                assert not np.array_equal(fill[given], pair.corrupted[given])
            else:
                assert np.array_equal(expected, pair.corrupted)
    assert painted > 100 and 0.35 < told / painted < 0.65, (told, painted)


def test_batches_without_a_mask_condition_are_unchanged_by_the_new_options():
    images = skin_images(4)
    plain = ImagecondBatches(images, batch_size=4, seed=2, corruption=CorruptionConfig())
    other = ImagecondBatches(images, batch_size=4, seed=2, corruption=CorruptionConfig(mask_fraction=1.0))
    a, b = plain.batch(3), other.batch(3)
    assert a.cond_image.shape[1] == 3 and torch.equal(a.cond_image, b.cond_image) and torch.equal(a.target, b.target)


def zeroed(model: DermUNet) -> DermUNet:
    """``model`` with its last convolution zeroed: a residual model then returns its condition image."""
    with torch.no_grad():
        model.unet.conv_out.weight.zero_()
        model.unet.conv_out.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("mask_condition", ["telea", "telea_image"])
def test_a_residual_telea_model_starts_from_telea_and_reads_the_mask(mask_condition):
    torch.manual_seed(0)
    model = zeroed(DermUNet(residual_config(mask_condition, work_size=SIZE)))
    image = skin_images(1, seed=3)[0]
    mask = np.zeros((SIZE, SIZE), bool)
    mask[10:14, 4:28] = True
    config = RemovalConfig(methods=["imagecond", "telea"], steps=1, dilation=0, telea_radius=PREFILL_RADIUS)
    cleaned = make_remover("imagecond", model=model, config=config, device="cpu").fill([image], [mask])[0]
    telea = make_remover("telea", model=None, config=config, device="cpu").fill([image], [mask])[0]
    assert np.abs(cleaned.astype(int) - telea.astype(int)).max() <= 1  # float round trip of the condition
    assert np.array_equal(cleaned[~mask], image[~mask])

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    trained = DermUNet(residual_config(mask_condition, work_size=SIZE)).eval()
    m = torch.from_numpy(mask)[None]
    cond = torch.from_numpy(prefill(image, mask, mask_condition)).permute(2, 0, 1)[None].float() / 127.5 - 1
    told, blind = (imagecond_restore(trained, cond, steps=1, mask=mm) for mm in (m, None))
    assert not torch.allclose(told, blind)  # the mask channel reaches the network
    with pytest.raises(ValueError, match="does not match"):
        imagecond_restore(trained, cond, steps=1, mask=torch.ones(1, 8, 8))
    if mask_condition == "telea_image":
        fill_only = torch.cat([cond[:, :3], cond[:, :3]], dim=1)
        assert not torch.allclose(told, imagecond_restore(trained, fill_only, steps=1, mask=m))  # sees the unfilled image
        with pytest.raises(ValueError, match="expected 6"):
            imagecond_restore(trained, x, steps=1, mask=m)  # told a mask, it needs the fill too
    plain = DermUNet(residual_config(None, work_size=SIZE)).eval()
    with pytest.raises(ValueError, match="takes no mask"):
        imagecond_restore(plain, x, steps=1, mask=m)


@pytest.mark.parametrize("mask_condition", ["telea", "telea_image"])
def test_a_mask_conditioned_model_trains_and_detects_without_a_mask(tmp_path, mask_condition):
    cfg = residual_config(mask_condition, work_size=SIZE)
    model = train_imagecond(skin_images(6), cfg, TrainConfig(steps=3, batch_size=4, lr=1e-3, ema_decay=0.9),
                            checkpoint_dir=tmp_path, device="cpu", seed=0,
                            corruption=CorruptionConfig(mask_fraction=1.0), progress=False)
    assert model.config.mask_condition == mask_condition
    maps = imagecond_anomaly_map(model, torch.rand(2, 3, SIZE, SIZE) * 2 - 1, steps=1)
    assert maps.shape == (2, SIZE, SIZE) and torch.isfinite(maps).all()


def test_mask_loss_weight_weights_painted_pixels():
    images = skin_images(4)
    plain = ImagecondBatches(images, batch_size=6, seed=4, corruption=CorruptionConfig()).batch(2)
    weighted = ImagecondBatches(images, batch_size=6, seed=4, corruption=CorruptionConfig(mask_loss_weight=9.0))
    batch = weighted.batch(2)
    assert plain.weight is None and torch.equal(plain.cond_image, batch.cond_image)  # same draws
    rng = np.random.default_rng([4, 2])
    idx = rng.integers(0, len(images), size=6)
    painted = np.stack([corrupt(images[i], rng, weighted.corruption).mask for i in idx])
    assert painted.any()
    assert torch.equal(batch.weight[:, 0], torch.from_numpy(np.where(painted, 10.0, 1.0)).float())
    pred, target = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    target[0, :, 0, 0] = 3.0  # error 9 on one pixel of one image, 1 elsewhere
    w = torch.ones(2, 1, 4, 4)
    assert weighted_mse(pred, target, None) == pytest.approx(weighted_mse(pred, target, w).item())
    w[0, 0, 0, 0] = 10.0
    expected = (96 - 3 + 3 * 9 * 10) / (3 * (32 - 1 + 10))
    assert weighted_mse(pred, target, w).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="mask_loss_weight"):
        CorruptionConfig(mask_loss_weight=-1)


def test_mask_loss_weight_covers_the_whole_told_mask():
    """A mask-conditioned model is judged on the whole (dilated) mask it is told, clean skin in it included."""
    images = skin_images(4)
    corruption = CorruptionConfig(mask_loss_weight=4.0, mask_fraction=1.0, mask_dilation=[3, 3], untouched_fraction=0.0)
    batches = ImagecondBatches(images, batch_size=6, seed=5, corruption=corruption, mask_condition="telea_image")
    batch = batches.batch(1)
    told = batch.cond_image[:, -1].numpy() > 0.5
    rng = np.random.default_rng([5, 1])
    idx = rng.integers(0, len(images), size=6)
    painted = np.stack([batches.tell(corrupt(images[i], rng, corruption), rng).mask for i in idx])
    assert (told & ~painted).any()  # the dilation ring: clean skin inside the told mask
    assert torch.equal(batch.weight[:, 0], torch.from_numpy(np.where(told | painted, 5.0, 1.0)).float())
