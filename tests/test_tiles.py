"""diffusion.tiles and tiled UNets: geometry, exact blending, per-tile conditions, crops for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermclean.diffusion.tiles import blend_window, tile_starts, tiled
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.imagecond.pairs import CorruptionConfig, ImagecondBatches
from dermclean.methods.imagecond.sample import imagecond_restore


def test_tile_starts_cover_the_side_with_the_overlap_asked():
    assert tile_starts(256, 64, 16) == [0, 48, 96, 144, 192]
    assert tile_starts(256, 64, 0) == [0, 64, 128, 192]
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(100, 64, 16) == [0, 36]  # uneven: the last tile ends at the border
    for size, tile, overlap in [(256, 64, 16), (97, 32, 8), (130, 64, 0)]:
        starts = tile_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(256, 64, 64)
    with pytest.raises(ValueError, match="tile"):
        tile_starts(32, 64, 0)


def test_blend_window_hand_worked():
    w = blend_window(4, 1)
    ramp = torch.tensor([0.5, 1.0, 1.0, 0.5])
    assert torch.equal(w, ramp[:, None] * ramp[None, :])
    assert torch.equal(blend_window(3, 0), torch.ones(3, 3))


def test_tiled_reproduces_a_pointwise_function_exactly_and_passes_the_source_image():
    x = torch.randn(3, 2, 40, 56)
    out = tiled(lambda z, src: z * 2 + src[:, None, None, None], x, tile=16, overlap=4, max_tiles=5)
    expected = x * 2 + torch.arange(3.0)[:, None, None, None]
    assert out.shape == x.shape and torch.allclose(out, expected, atol=1e-5)


def _tiled_unet(**kw) -> DermUNet:
    torch.manual_seed(0)
    return DermUNet(UNetConfig(sample_size=16, block_out_channels=[8, 16], work_size=48, **kw)).eval()


def test_unet_runs_larger_inputs_as_tiles_with_each_images_condition():
    model = _tiled_unet()
    assert model.config.image_size == 48
    x = torch.randn(2, 3, 48, 48)
    labels = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    with torch.no_grad():
        both = model(x, torch.tensor([10, 500]), labels)
        one = model(x[1:], torch.tensor([500]), labels[1:])
        tile = model(x[1:, :, :16, :16], torch.tensor([500]), labels[1:])
    assert both.shape == x.shape
    assert torch.allclose(both[1:], one, atol=1e-5)  # each image keeps its own t and labels
    # the top-left corner is covered by one tile only: it is that tile's output
    assert torch.allclose(one[..., :4, :4], tile[..., :4, :4], atol=1e-5)
    with pytest.raises(ValueError, match="work_size"):
        UNetConfig(sample_size=16, block_out_channels=[8, 16], work_size=8)


def test_imagecond_restore_of_a_tiled_model_returns_the_whole_image():
    torch.manual_seed(0)
    model = DermUNet(imagecond_unet_config(sample_size=16, block_out_channels=[8, 16], work_size=48)).eval()
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    out = imagecond_restore(model, x, steps=2, noise_level=200)
    assert out.shape == x.shape and out.abs().max() <= 1


def test_imagecond_crops_paint_first_then_cut_around_the_artifact():
    rng = np.random.default_rng(0)
    images = rng.integers(90, 200, size=(4, 96, 96, 3), dtype=np.uint8)
    corruption = CorruptionConfig(untouched_fraction=0.0)
    batches = ImagecondBatches(images, batch_size=16, seed=0, corruption=corruption, crop=32,
                               artifact_crop_fraction=1.0)
    batch = batches.batch(3)
    assert batch.target.shape == batch.cond_image.shape == (16, 3, 32, 32)
    changed = (batch.target != batch.cond_image).any(dim=1).flatten(1).any(dim=1)
    assert bool(changed.all()), "every crop cut around an artifact pixel must contain painted pixels"
    assert torch.equal(batches.batch(3).cond_image, batch.cond_image)  # deterministic per step
    # each crop is a window of one of the source images (target side: the clean image)
    src = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    windows = src.unfold(2, 32, 1).unfold(3, 32, 1)  # (4, 3, 65, 65, 32, 32)
    first = batch.target[0]
    hits = ((windows - first[None, :, None, None]).abs().amax(dim=(1, 4, 5)) < 1e-6)
    assert bool(hits.any())


def test_condition_residual_adds_the_condition_to_the_output():
    torch.manual_seed(0)
    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16], prediction_type="sample",
                                condition_residual=True, work_size=32)
    model = DermUNet(cfg).eval()
    x_t, cond = torch.randn(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x_t, torch.tensor([3, 300]), None, cond)
        cond2 = cond + 0.5
        out2 = model(x_t, torch.tensor([3, 300]), None, cond2)
    plain = DermUNet(imagecond_unet_config(sample_size=16, block_out_channels=[8, 16], prediction_type="sample",
                                           work_size=32)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(out, plain(x_t, torch.tensor([3, 300]), None, cond) + cond, atol=1e-5)
    assert not torch.allclose(out, out2)
    with pytest.raises(ValueError, match="condition_residual"):
        UNetConfig(sample_size=16, block_out_channels=[8, 16], condition_residual=True)
