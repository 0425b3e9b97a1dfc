"""diffusion.train: overfitting, exact resume, condition dropout, EMA, params compatibility."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dermclean.config import from_dict, load_params
from dermclean.data.manifest import write_manifest
from dermclean.diffusion.schedulers import training_scheduler
from dermclean.diffusion.train import (
    CHECKPOINT_NAME, DiffusionBatch, TrainConfig, batches_from_dataset, drop_conditions, endless, load_checkpoint,
    train_diffusion,
)
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.io import read_json
from dermclean.modelio import load_model_dir

REPO = Path(__file__).resolve().parents[1]
TINY = UNetConfig(sample_size=16, block_out_channels=[8, 16], layers_per_block=1)


def make_model(seed: int = 0) -> DermUNet:
    torch.manual_seed(seed)
    return DermUNet(TINY)


def make_batches(n: int = 3, b: int = 4, seed: int = 1) -> list[DiffusionBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        target = torch.rand(b, 3, 16, 16, generator=g) * 2 - 1
        labels = (torch.rand(b, 3, generator=g) < 0.5).float()
        out.append(DiffusionBatch(target=target, labels=labels))
    return out


def config(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, lr=2e-3, ema_decay=0.9, checkpoint_every=3, cond_dropout=0.2, seed=0,
                log_every=1)
    return TrainConfig(**{**base, **kw})


def fixed_loss(model: DermUNet, batch: DiffusionBatch) -> float:
    """eps-MSE over fixed noise and timesteps (the same draws before and after training)."""
    g = torch.Generator().manual_seed(123)
    sched = training_scheduler(model.config)
    losses = []
    with torch.no_grad():
        for _ in range(8):
            eps = torch.randn(batch.target.shape, generator=g)
            t = torch.randint(0, 1000, (batch.target.shape[0],), generator=g)
            pred = model.eval()(sched.add_noise(batch.target, eps, t), t, batch.labels)
            losses.append(torch.nn.functional.mse_loss(pred, eps).item())
    return sum(losses) / len(losses)


def test_params_train_section_builds_trainconfig():
    for profile in ("tiny", "cpu", "gpu"):
        params = load_params(REPO / "params.yaml", profile=profile)
        cfg = from_dict(TrainConfig, params["diffusion"]["train"])
        assert cfg.steps >= 1 and 0 < cfg.cond_dropout < 1


def test_loss_decreases_on_fixed_batch(tmp_path):
    batch = make_batches(n=1)[0]
    model = make_model()
    before = fixed_loss(model, batch)
    result = train_diffusion(model, [batch], config(steps=10, ema_decay=0.0, cond_dropout=0.0, lr=3e-3),
                             checkpoint_dir=tmp_path, device="cpu", progress=False)
    after = fixed_loss(result.model, batch)
    assert result.steps_done == 10 and result.resumed_from is None
    assert after < 0.8 * before, (before, after)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    batches = make_batches()
    full = train_diffusion(make_model(), batches, config(), checkpoint_dir=tmp_path / "a", device="cpu",
                           progress=False)

    def crash(step, _):
        if step == 5:  # after the checkpoint at step 3; steps 4-5 are lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_diffusion(make_model(), batches, config(), checkpoint_dir=tmp_path / "b", device="cpu",
                        on_log=crash, progress=False)
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["step"] == 3
    resumed = train_diffusion(make_model(seed=99), batches, config(), checkpoint_dir=tmp_path / "b",
                              device="cpu", progress=False)
    assert resumed.resumed_from == 3 and resumed.steps_done == 6
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.final_loss == pytest.approx(full.final_loss)
    raw_a = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)["model"]
    raw_b = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["model"]
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)


def test_resume_refuses_a_different_config(tmp_path):
    train_diffusion(make_model(), make_batches(), config(steps=3), checkpoint_dir=tmp_path, device="cpu",
                    progress=False)
    with pytest.raises(ValueError, match="different model or training config"):
        train_diffusion(make_model(), make_batches(), config(steps=6, lr=1e-4), checkpoint_dir=tmp_path,
                        device="cpu", progress=False)


def test_condition_dropout_rate_and_unknown_rows():
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(20000, 3)
    dropped = torch.isnan(drop_conditions(labels, 0.3, g)).all(dim=1).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.015)
    assert not torch.isnan(drop_conditions(labels, 0.0, g)).any()
    partial = torch.tensor([[1.0, float("nan"), 0.0], [1.0, 0.0, 0.0]])
    out = drop_conditions(partial, 0.0, g)
    assert torch.isnan(out[0]).all() and torch.equal(out[1], partial[1])


def test_ema_is_returned_and_differs_from_raw_weights(tmp_path):
    result = train_diffusion(make_model(), make_batches(), config(steps=5, ema_decay=0.9),
                             checkpoint_dir=tmp_path, device="cpu", progress=False)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    raw, ema = state["model"], state["ema"]["module"]
    returned = result.model.state_dict()
    assert not result.model.training
    assert all(torch.equal(returned[k], ema[k]) for k in returned)
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)


def test_endless_cycles_and_skips_plain_iterables():
    batches = make_batches(n=3)
    stream = endless(batches, start=2)
    got = [next(stream) for _ in range(4)]
    assert [b.target is batches[i].target for b, i in zip(got, [2, 0, 1, 2])] == [True] * 4


def test_batches_from_dataset_resumes_exactly():
    dataset_mod = pytest.importorskip("dermclean.data.dataset")

    class Toy(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return dataset_mod.Sample(image=torch.full((3, 8, 8), float(i) / 10), labels=torch.zeros(3),
                                      melanoma=0, image_id=f"img{i}", index=i)

    batches = batches_from_dataset(Toy(), batch_size=3, seed=5)
    assert len(batches) == 3
    stream = batches.iter_from(0)
    ids = [next(stream).target[:, 0, 0, 0] for _ in range(7)]
    again = batches.iter_from(4)
    assert all(torch.equal(next(again).target[:, 0, 0, 0], ids[k]) for k in range(4, 7))
    epoch0 = torch.cat(ids[:3])
    assert len(set(epoch0.tolist())) == 9  # drop_last: 9 distinct samples in an epoch


@pytest.mark.slow
def test_train_diffusion_stage_end_to_end(tmp_path, monkeypatch):
    """The DVC stage on a 16-image manifest: model folders, mlflow_run.json, metrics, resume on rerun."""
    import importlib.util

    import numpy as np
    import pandas as pd
    import yaml
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(16):
        flags = [int(i % 2 == 0), int(i % 3 == 0), int(i % 4 == 1)]
        img = rng.integers(100, 200, (40, 40, 3), dtype=np.uint8)
        img[30:34, :, :] = 20 * flags[0]
        Image.fromarray(img).save(tmp_path / "images" / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "image_path": f"images/im{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     "ruler": flags[0], "ink": flags[1], "patches": flags[2], "hair": 0, "dark_corner": 0,
                     "gel_bubble": 0, "gel_border": 0, "split": "val" if i < 6 else "train", "source": "test"})
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    params = {"profile": "tiny", "seed": 0, "data": {"image_size": 16}, "profiles": {"tiny": {}},
              "diffusion": {"unet": {"block_out_channels": [8, 16], "layers_per_block": 1, "attention": False},
                            "train": {"steps": 3, "batch_size": 4, "lr": 1e-3, "ema_decay": 0.9,
                                      "cond_dropout": 0.2, "checkpoint_every": 2},
                            "noisy_classifier": {"width": 8, "depth": 2, "steps": 3, "batch_size": 4, "lr": 1e-3}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    spec = importlib.util.spec_from_file_location("stage", REPO / "pipelines" / "train_diffusion.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    argv = ["--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "manifest.csv"),
            "--out", str(tmp_path / "out"), "--checkpoints", str(tmp_path / "ckpt"),
            "--metrics", str(tmp_path / "metrics.json"), "--device", "cpu", "--no-progress"]
    assert stage.main(argv) == 0
    metrics = read_json(tmp_path / "metrics.json")
    assert metrics["unet"]["steps"] == 3 and metrics["unet"]["resumed_from"] is None
    assert metrics["train_images"] == 10 and metrics["val_images"] == 6
    assert set(metrics["noisy_classifier"]["val_auroc_t0"]) == {"ruler", "ink", "patches"}
    unet, cfg, _ = load_model_dir(tmp_path / "out" / "unet", expect_kind="unet")
    assert cfg.sample_size == 16 and cfg.num_classes == 3
    load_model_dir(tmp_path / "out" / "noisy_classifier", expect_kind="noisy_classifier")
    record = read_json(tmp_path / "out" / "mlflow_run.json")
    assert record["run_id"] and record["model_uri"] == record["model_uris"]["unet"]
    assert stage.main(argv) == 0  # rerun: resumes from the final checkpoint, trains nothing
    assert read_json(tmp_path / "metrics.json")["unet"]["resumed_from"] == 3
    # A changed classifier recipe retrains the classifier only: the UNet resumes from its own checkpoint.
    params["diffusion"]["noisy_classifier"]["lr"] = 5e-4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert stage.main(argv) == 0
    assert read_json(tmp_path / "metrics.json")["unet"]["resumed_from"] == 3
    assert len(list((tmp_path / "ckpt" / "noisy_classifier").iterdir())) == 2
    assert len(list((tmp_path / "ckpt" / "unet").iterdir())) == 1


def test_max_timestep_limits_the_training_timesteps(tmp_path):
    model = make_model()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    train_diffusion(model, make_batches(), config(steps=6, max_timestep=5), checkpoint_dir=tmp_path,
                    device="cpu", progress=False)
    ts = torch.cat(seen)
    assert len(ts) == 6 * 4 and int(ts.max()) < 5
    with pytest.raises(ValueError, match="max_timestep"):
        train_diffusion(make_model(), make_batches(), config(steps=1, max_timestep=5000),
                        checkpoint_dir=tmp_path / "other", device="cpu", progress=False)


def test_min_timestep_keeps_the_training_timesteps_above_it(tmp_path):
    model = make_model()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    train_diffusion(model, make_batches(), config(steps=6, min_timestep=990), checkpoint_dir=tmp_path,
                    device="cpu", progress=False)
    ts = torch.cat(seen)
    assert len(ts) == 6 * 4 and int(ts.min()) >= 990 and int(ts.max()) <= 999
    with pytest.raises(ValueError, match="min_timestep"):
        config(steps=1, min_timestep=5, max_timestep=5)
    with pytest.raises(ValueError, match="min_timestep"):
        train_diffusion(make_model(), make_batches(), config(steps=1, min_timestep=1000),
                        checkpoint_dir=tmp_path / "other", device="cpu", progress=False)
