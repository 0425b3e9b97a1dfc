"""Shared diffusion training: eps-prediction MSE, condition dropout, EMA, AMP, checkpoints, resume.

Implements the DDPM objective of Ho et al. 2020 (``L = E_{x0, eps, t} |eps - eps_theta(x_t, t, y)|^2``
with ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``, ``t ~ U{0..T-1}``) as used by Wolleb et al.
2022, with the condition dropout of classifier-free guidance (Ho & Salimans 2022), and the same loop
for the image-conditioned model of Baugh et al. 2024 (``DiffusionBatch.cond_image``).

Resume: ``checkpoint_dir/checkpoint.pt`` holds the raw and EMA weights, the optimizer, the step, the
sampler's RNG state and a fingerprint of the model and training config. It is rewritten atomically
every ``checkpoint_every`` steps and at the end, so an interruption loses at most one interval, and a
resumed run on CPU reproduces an uninterrupted one exactly (given a resumable batch source such as
:func:`batches_from_dataset`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermclean.diffusion.batches import (  # re-exported: the batch sources' import path
    DatasetBatches, DiffusionBatch, batches_from_dataset, endless, ordered_batches,
)
from dermclean.diffusion.checkpoints import (  # re-exported: the checkpoint helpers' import path
    CHECKPOINT_NAME, check_fingerprint, checkpoint_key, fingerprint, load_checkpoint, progress_bar, restore_checkpoint,
    rng_state, save_checkpoint, set_rng_state,
)
from dermclean.diffusion.schedulers import training_scheduler
from dermclean.diffusion.unet import DermUNet
from dermclean.env import autocast

__all__ = [
    "CHECKPOINT_NAME", "EMA", "DatasetBatches", "DiffusionBatch", "TrainConfig", "TrainResult", "batches_from_dataset",
    "check_fingerprint", "checkpoint_key", "drop_conditions", "endless", "evaluate_diffusion_loss", "fingerprint",
    "load_checkpoint", "ordered_batches", "progress_bar", "regression_target", "restore_checkpoint", "rng_state",
    "save_checkpoint",
    "set_rng_state", "train_diffusion", "weighted_mse",
]


@dataclass(kw_only=True)
class TrainConfig:
    """``params["diffusion"]["train"]`` (and ``params["imagecond"]["train"]``)."""

    steps: int
    batch_size: int
    lr: float
    ema_decay: float
    cond_dropout: float = 0.0
    checkpoint_every: int = 500
    amp: bool = True
    seed: int = 0
    grad_clip: float = 1.0
    log_every: int = 10
    warmup_steps: int = 0
    max_timestep: int | None = None
    min_timestep: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError(f"TrainConfig: steps, batch_size and checkpoint_every must be >= 1; got {self}")
        if self.max_timestep is not None and self.max_timestep < 1:
            raise ValueError(f"TrainConfig.max_timestep must be null or >= 1; got {self.max_timestep}")
        if self.min_timestep < 0 or (self.max_timestep is not None and self.min_timestep >= self.max_timestep):
            raise ValueError(f"TrainConfig.min_timestep must be >= 0 and below max_timestep; got {self.min_timestep}")
        if not 0.0 <= self.cond_dropout <= 1.0:
            raise ValueError(f"TrainConfig.cond_dropout must be in [0, 1]; got {self.cond_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1); got {self.ema_decay}")


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """MSE of ``pred`` against ``target``; with ``weight`` (B,1,H,W) each pixel counts in proportion to it
    (normalised by the batch's mean weight, so all-ones weights give the plain MSE)."""
    if weight is None:
        return torch.nn.functional.mse_loss(pred, target)
    weight = weight.to(device=pred.device, dtype=pred.dtype)
    return ((pred - target) ** 2 * weight).mean() / weight.mean().clamp_min(1e-12)


@dataclass(kw_only=True)
class TrainResult:
    model: DermUNet          # the EMA copy, in eval mode
    steps_done: int
    final_loss: float        # mean loss over the last ``log_every`` steps run
    seconds: float           # wall time of this call
    resumed_from: int | None  # the checkpoint step resumed from, None when started fresh


class EMA:
    """Exponential moving average of a module's parameters (buffers copied).

    Decay warms up as ``min(decay, (1 + n) / (10 + n))`` (as diffusers' ``EMAModel``), so short runs
    are not dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - d)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def drop_conditions(labels: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Labels (B,K) with whole rows set to NaN (= unconditional) with probability ``p``.

    Rows with any unknown (NaN) label are dropped too: an incompletely labelled image must not teach
    the model that "absent" looks like it.
    """
    labels = labels.float().clone()
    drop = torch.rand(labels.shape[0], generator=generator, device=generator.device) < p
    drop = drop.to(labels.device) | torch.isnan(labels).any(dim=1)
    labels[drop] = float("nan")
    return labels


def regression_target(model: DermUNet, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """What the model is trained to output: ``eps`` or, for ``prediction_type="sample"``, ``x0``."""
    return x0.float() if getattr(model.config, "prediction_type", "epsilon") == "sample" else eps


def train_diffusion(model: DermUNet, batches: Iterable[DiffusionBatch], config: TrainConfig, *,
                    checkpoint_dir: Path, device: torch.device | str,
                    on_log: Callable[[int, dict[str, float]], None] | None = None,
                    progress: bool = True) -> TrainResult:
    """Train ``model`` (eps-prediction) for ``config.steps`` steps, resuming from ``checkpoint_dir``.

    Each step: ``x0 = batch.target`` (B,C,H,W), ``eps ~ N(0, I)``, ``t ~ U{t0..T'-1}`` (B,) with ``T' = T``
    or ``config.max_timestep`` (a model only ever sampled from below some level) and ``t0 =
    config.min_timestep`` (one only ever sampled from above it, e.g. in one step from pure noise), ``x_t`` by the
    DDPM training scheduler's ``add_noise``, loss ``mse(model(x_t, t, labels, cond_image), eps)`` (``x0`` in
    place of ``eps`` for a ``prediction_type="sample"`` model; weighted per pixel by ``batch.weight``).
    AdamW with linear warmup, gradient clipping, EMA; bf16 autocast and channels-last on CUDA.
    ``on_log(step, {"loss", "lr", "grad_norm"})`` every ``log_every`` steps. Returns the EMA model.
    The step loop stays whole here (a little over 60 lines) so the order of the optimizer step, the EMA
    update, the log and the checkpoint, on which exact resume depends, reads in one place.
    """
    device = torch.device(device)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    fp = fingerprint(model.config, {k: v for k, v in dataclasses.asdict(config).items()
                                    if k not in ("steps", "checkpoint_every", "log_every")})
    scheduler = training_scheduler(model.config)
    num_t = _timestep_bound(config, scheduler.config.num_train_timesteps)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    model.to(device=device, memory_format=fmt).train()
    ema = EMA(model, decay=config.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    resumed_from, recent = restore_checkpoint(ckpt_path, fp, generator, model=model, ema=ema, optimizer=optimizer)
    start = resumed_from or 0

    def lr_at(step: int) -> float:
        return config.lr * min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else config.lr

    began = time.perf_counter()
    stream = endless(batches, start)
    bar = progress_bar(config.steps, start, enabled=progress, desc="train diffusion")
    step = start
    try:
        while step < config.steps:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            loss = _batch_loss(model, next(stream), scheduler, config, device=device, generator=generator, num_t=num_t,
                               fmt=fmt)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"diffusion loss became {loss.item()} at step {step}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            ema.update(model)
            step += 1
            recent = (recent + [loss.item()])[-config.log_every:]
            bar.update(1)
            bar.set_postfix(loss=f"{recent[-1]:.4f}")
            if on_log is not None and (step % config.log_every == 0 or step == config.steps):
                on_log(step, {"loss": sum(recent) / len(recent), "lr": lr_at(step - 1),
                              "grad_norm": float(grad_norm)})
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_checkpoint(ckpt_path, {"model": model.state_dict(), "ema": ema.state_dict(), "step": step,
                                            "optimizer": optimizer.state_dict(), "rng": rng_state(generator),
                                            "fingerprint": fp, "recent_losses": list(recent)})
    finally:
        bar.close()
    ema_model = ema.module.to(memory_format=torch.contiguous_format).eval()
    final = sum(recent) / len(recent) if recent else float("nan")
    return TrainResult(model=ema_model, steps_done=step, final_loss=final,
                       seconds=time.perf_counter() - began, resumed_from=resumed_from)


def _timestep_bound(config: TrainConfig, num_train_timesteps: int) -> int:
    """The exclusive upper bound of the training timesteps: ``config.max_timestep`` or T (checked)."""
    num_t = num_train_timesteps
    if config.max_timestep is not None:
        if config.max_timestep > num_t:
            raise ValueError(f"TrainConfig.max_timestep {config.max_timestep} exceeds num_train_timesteps {num_t}")
        num_t = config.max_timestep
    if config.min_timestep >= num_t:
        raise ValueError(f"TrainConfig.min_timestep {config.min_timestep} must be below {num_t} timesteps")
    return num_t


def _batch_loss(model: DermUNet, batch: DiffusionBatch, scheduler: Any, config: TrainConfig, *, device: torch.device,
                generator: torch.Generator, num_t: int, fmt: torch.memory_format) -> torch.Tensor:
    """One step's loss: condition dropout, then ``eps`` and ``t`` drawn from ``generator`` (in that order),
    ``x_t`` by ``add_noise``, the (weighted) MSE against :func:`regression_target`."""
    x0 = batch.target.to(device, non_blocking=True).contiguous(memory_format=fmt)
    labels = batch.labels
    if labels is not None and model.num_classes:
        labels = drop_conditions(labels.to(device), config.cond_dropout, generator)
    elif not model.num_classes:
        labels = None
    cond = None if batch.cond_image is None else batch.cond_image.to(device).contiguous(memory_format=fmt)
    eps = torch.randn(x0.shape, generator=generator, device=device).contiguous(memory_format=fmt)
    t = torch.randint(config.min_timestep, num_t, (x0.shape[0],), generator=generator, device=device)
    x_t = scheduler.add_noise(x0, eps, t)
    with autocast(device, config.amp):
        pred = model(x_t, t, labels, cond)
    return weighted_mse(pred.float(), regression_target(model, x0, eps), batch.weight)


@torch.no_grad()
def evaluate_diffusion_loss(model: DermUNet, batches: Iterable[DiffusionBatch], *, device: torch.device | str,
                            seed: int = 0) -> float:
    """Mean eps-MSE (x0-MSE for a ``sample``-prediction model) of ``model`` over one pass of ``batches`` with seeded noise and timesteps (labels as
    given; rows with an unknown label are unconditional), for comparable validation losses."""
    device = torch.device(device)
    scheduler = training_scheduler(model.config)
    generator = torch.Generator(device=device).manual_seed(seed)
    model.to(device).eval()
    total, count = 0.0, 0
    for batch in batches:
        x0 = batch.target.to(device)
        labels = None
        if batch.labels is not None and model.num_classes:
            labels = drop_conditions(batch.labels.to(device), 0.0, generator)
        cond = None if batch.cond_image is None else batch.cond_image.to(device)
        eps = torch.randn(x0.shape, generator=generator, device=device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator, device=device)
        with autocast(device):
            pred = model(scheduler.add_noise(x0, eps, t), t, labels, cond)
        total += torch.nn.functional.mse_loss(pred.float(), regression_target(model, x0, eps), reduction="sum").item()
        count += eps.numel()
    if not count:
        raise ValueError("evaluate_diffusion_loss: the batch source yielded no batches")
    return total / count
