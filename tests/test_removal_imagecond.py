"""Image-conditioned model (Baugh et al. 2024): training data, a few training steps, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.families import FAMILIES, fold_exclusion
from dermclean.data.images import save_png
from dermclean.data.manifest import clean_mask, write_manifest
from dermclean.data.masks import dilate_mask
from dermclean.data.readers import read_folder
from dermclean.diffusion.schedulers import training_scheduler
from dermclean.diffusion.train import TrainConfig, regression_target
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.imagecond.pairs import CorruptionConfig, ImagecondBatches, corrupt, heldout_styles
from dermclean.methods.imagecond.sample import imagecond_restore
from dermclean.methods.imagecond.train import train_imagecond
from dermclean.removal.engine import RemovalConfig
from dermclean.removal.evaluate import evaluate_removal

SIZE = 32


def skin_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Smooth skin-toned images with a darker blob (a lesion), uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        base = np.array([200, 150, 120]) + rng.normal(0, 10, 3)
        cy, cx, r = rng.uniform(0.35, 0.65, 2).tolist() + [rng.uniform(0.12, 0.25)]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2))[..., None]
        img = base * (1 - 0.6 * blob) + rng.normal(0, 3, (size, size, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def heldout_pairs() -> set[str]:
    """Held-out styles as "kind/style" (style names repeat across kinds, e.g. patches/round, gel_bubble/round)."""
    return {f"{kind}/{style}" for kind, styles in dict(heldout_styles()).items() for style in styles}


def test_untouched_fraction_and_heldout_styles_never_painted():
    images = skin_images(4)
    config = CorruptionConfig(untouched_fraction=0.2)
    rng = np.random.default_rng(0)
    pairs = [corrupt(images[i % 4], rng, config) for i in range(300)]
    untouched = [p for p in pairs if p.untouched]
    assert abs(len(untouched) / len(pairs) - 0.2) < 0.07
    assert all(np.array_equal(p.corrupted, p.target) and not p.mask.any() for p in untouched)
    painted = [p for p in pairs if not p.untouched]
    assert sum(not np.array_equal(p.corrupted, p.target) for p in painted) >= 0.9 * len(painted)
    assert heldout_pairs(), "HELDOUT_STYLES must hold out at least one style"
    seen = set()
    for p in painted:
        assert p.styles and not (set(p.styles) & heldout_pairs()), p.styles
        assert np.array_equal(p.corrupted[~p.mask], p.target[~p.mask])  # paint only inside its mask
        seen |= set(p.styles)
    assert len(seen) >= 4  # several training styles are in use


def test_family_painter_holds_out_a_fold_and_pairs_differ_at_the_artifact():
    held_out = fold_exclusion(0)
    excluded = {f"{kind}/{family}" for kind, families in dict(held_out).items() for family in families}
    assert excluded and len(excluded) < sum(len(v) for v in FAMILIES.values())
    config = CorruptionConfig(untouched_fraction=0.0, painter="families", exclude_families=sorted(excluded))
    rng = np.random.default_rng(0)
    images = skin_images(4, size=64)
    pairs = [corrupt(images[i % 4], rng, config) for i in range(60)]
    seen = set()
    for p in pairs:
        assert p.styles and not (set(p.styles) & excluded), p.styles
        assert p.mask.any() and p.target.shape == p.corrupted.shape == (64, 64, 3)
        far = ~dilate_mask(p.mask, 16)  # beyond JPEG blocks and blur around the artifact
        if far.any():
            diff = np.abs(p.corrupted.astype(int) - p.target.astype(int))[far]
            assert diff.mean() < 1.0, diff.mean()
        seen |= set(p.styles)
    assert len(seen) >= 5
    both = [corrupt(images[i % 4], rng, CorruptionConfig(untouched_fraction=0.0, painter="both")) for i in range(40)]
    kinds_of_painter = {("/" in s and s.split("/")[1] in sum(map(list, FAMILIES.values()), [])) for p in both
                        for s in p.styles}
    assert kinds_of_painter == {True, False}  # both renderers are in use
    with pytest.raises(ValueError, match="painter"):
        CorruptionConfig(painter="oils")


def test_batches_are_deterministic_per_step_and_paired():
    batches = ImagecondBatches(skin_images(5), batch_size=6, seed=3, corruption=CorruptionConfig())
    a, b = batches.batch(7), batches.batch(7)
    assert torch.equal(a.target, b.target) and torch.equal(a.cond_image, b.cond_image)
    assert a.target.shape == a.cond_image.shape == (6, 3, SIZE, SIZE) and a.labels is None
    assert a.target.min() >= -1 and a.target.max() <= 1
    first = next(batches.iter_from(7))
    assert torch.equal(first.cond_image, a.cond_image)
    assert not torch.equal(batches.batch(8).cond_image, a.cond_image)


def fixed_loss(model: DermUNet, target: torch.Tensor, cond: torch.Tensor) -> float:
    g = torch.Generator().manual_seed(11)
    sched = training_scheduler(model.config)
    losses = []
    with torch.no_grad():
        for _ in range(4):
            eps = torch.randn(target.shape, generator=g)
            t = torch.randint(0, 1000, (target.shape[0],), generator=g)
            pred = model.eval()(sched.add_noise(target, eps, t), t, None, cond)
            losses.append(torch.nn.functional.mse_loss(pred, eps).item())
    return float(np.mean(losses))


def test_training_steps_reduce_loss_on_fixed_batch(tmp_path):
    images = skin_images(6, size=16)
    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16])
    train_cfg = TrainConfig(steps=8, batch_size=6, lr=5e-3, ema_decay=0.5, checkpoint_every=8, log_every=4)
    fixed = ImagecondBatches(images, batch_size=6, seed=99, corruption=CorruptionConfig()).batch(0)
    torch.manual_seed(0)
    before = fixed_loss(DermUNet(cfg), fixed.target, fixed.cond_image)
    model = train_imagecond(images, cfg, train_cfg, checkpoint_dir=tmp_path / "ckpt", device="cpu", seed=0,
                            progress=False)
    after = fixed_loss(model, fixed.target, fixed.cond_image)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "ckpt" / "checkpoint.pt").is_file()
    with pytest.raises(ValueError, match="cond_image_channels"):

        train_imagecond(images, UNetConfig(sample_size=16, block_out_channels=[8, 16]), train_cfg,
                        checkpoint_dir=tmp_path / "x", device="cpu", seed=0, progress=False)


def test_evaluate_removal_reports_groups_types_and_outside(tmp_path):
    rows = []
    for i, img in enumerate(skin_images(3, size=48, seed=5)):
        save_png(tmp_path / "images" / f"s{i}.png", img)
        rows.append({"image_id": f"s{i}", "image_path": f"images/s{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     **{f: 0 for f in ARTIFACT_FLAGS}, "split": "test", "source": "test"})
    rows[2]["ink"] = 1  # not clean: excluded
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    torch.manual_seed(0)
    model = DermUNet(imagecond_unet_config(sample_size=16, block_out_channels=[8, 16]))
    config = RemovalConfig(steps=2, dilation=1, eval_images=0, figure_rows=2)
    result = evaluate_removal(tmp_path / "manifest.csv", split="test", methods=["imagecond", "telea"],
                              guided_model=None, imagecond_model=model, config=config, device="cpu", seed=0,
                              plots_dir=tmp_path / "plots")
    assert result["n_images"] == 2
    for method in ("imagecond", "telea"):
        r = result["methods"][method]
        for kind in ("ruler", "ink", "patches", "all"):
            scores = r["train_styles"][kind]
            assert scores["psnr_out"] == 100.0 and scores["ssim_out"] == pytest.approx(1.0)
            assert 0 < scores["psnr_in"] < 100
        assert r["all"]["all"]["n"] == result["n_cases"]
        assert (tmp_path / "plots" / f"{method}_grid.png").stat().st_size > 1000
    if any(dict(heldout_styles()).values()):
        assert "heldout_styles" in result["methods"]["telea"]
    assert set(result["psnr_in_gain_over_telea"]) == {"imagecond"}
    json.dumps(result)  # metrics file material


@pytest.mark.realdata
def test_realdata_removal_keeps_the_rest_of_full_resolution_images(real_data, tmp_path):
    """Real ISIC images (read in place) at their own resolution, a 16-px model: outside untouched."""

    df = read_folder(real_data)
    rows = df[clean_mask(df)].head(2).copy()
    rows["split"] = "test"
    write_manifest(rows, tmp_path / "manifest.csv")
    torch.manual_seed(0)
    model = DermUNet(imagecond_unet_config(sample_size=16, block_out_channels=[8, 16]))
    result = evaluate_removal(tmp_path / "manifest.csv", split="test", methods=["telea", "imagecond"],
                              guided_model=None, imagecond_model=model,
                              config=RemovalConfig(steps=2, dilation=3, eval_images=0), device="cpu", seed=0)
    for r in result["methods"].values():
        assert r["all"]["all"]["psnr_out"] == 100.0 and r["all"]["all"]["ssim_out"] == pytest.approx(1.0)
    assert result["methods"]["telea"]["all"]["all"]["psnr_in"] > 15


def test_sample_prediction_restore_returns_the_x0_estimate_exactly():
    """A sample-prediction model that outputs its condition gives back the condition, bit for bit
    (up to float), whatever the start and steps: the result is the last x0 estimate, not re-noised."""

    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16], prediction_type="sample")

    class CopiesCondition(torch.nn.Module):
        config = cfg

        def forward(self, x_t, t, labels, cond):
            return cond

    x = torch.rand(2, 3, 16, 16) * 2 - 1
    for steps, level in [(1, 250), (3, 400), (4, None)]:
        out = imagecond_restore(CopiesCondition(), x, steps=steps, noise_level=level)
        assert torch.allclose(out, x, atol=1e-5), (steps, level)


def test_sample_prediction_trains_on_x0(tmp_path):
    cfg = imagecond_unet_config(sample_size=SIZE, block_out_channels=[8, 16], prediction_type="sample")
    model = train_imagecond(skin_images(8), cfg, TrainConfig(steps=3, batch_size=4, lr=1e-3, ema_decay=0.9),
                            checkpoint_dir=tmp_path, device="cpu", seed=0, progress=False)
    assert model.config.prediction_type == "sample"

    x0, eps = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    assert torch.equal(regression_target(model, x0, eps), x0)
    with pytest.raises(ValueError, match="prediction_type"):
        imagecond_unet_config(sample_size=SIZE, block_out_channels=[8, 16], prediction_type="v")


@pytest.mark.parametrize("noise_level", [None, 250])
def test_restore_of_an_image_does_not_depend_on_its_batch(noise_level):
    """The detector's maps and the remover's fills must not change with --batch-size or batch order."""

    torch.manual_seed(0)  # x0 output, as the profiles' model (an eps model's x0 at t = T magnifies float noise ~100x)
    model = DermUNet(imagecond_unet_config(sample_size=16, block_out_channels=[8, 16], prediction_type="sample")).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        batch = imagecond_restore(model, x, steps=2, noise_level=noise_level)
        alone = imagecond_restore(model, x[2:], steps=2, noise_level=noise_level)
        reordered = imagecond_restore(model, x.flip(0), steps=2, noise_level=noise_level)
    assert torch.allclose(batch[2:], alone, atol=1e-5)
    assert torch.allclose(batch, reordered.flip(0), atol=1e-5)
