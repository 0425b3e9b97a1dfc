"""Training of the artifact segmenter on :class:`~dermclean.methods.segment.batches.SegmentBatches`.

Loss per batch (every term a mean over where it applies):

- pixel binary cross-entropy on the channels supervised per pixel (painted, untouched, and the types
  a real image's labels say are absent);
- soft Dice on the painted channels that hold artifact pixels (thin rulers cover well under 1 % of an
  image: cross-entropy alone is content to predict nothing);
- ``mil_weight`` x binary cross-entropy of the mean of the ``mil_topk`` largest logits per channel
  against the image's label (the weak supervision from human labels; on painted images, whether the
  type was painted).

AdamW with a linear warm-up and cosine decay; bf16 autocast on CUDA. ``checkpoint_dir/checkpoint.pt``
is rewritten atomically every ``checkpoint_every`` steps and a rerun resumes from it (batches are
drawn per step index, so the resumed run sees the same batches).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dermclean.diffusion.checkpoints import check_fingerprint, fingerprint, load_checkpoint, progress_bar, save_checkpoint
from dermclean.env import autocast
from dermclean.methods.segment.batches import SegmentBatch, SegmentBatches
from dermclean.methods.segment.model import Segmenter, SegmenterConfig, member_config, network_fields, topk_mean


@dataclass(kw_only=True)
class SegmentTrainConfig:
    """``params["segment"]["train"]``."""

    steps: int
    batch_size: int = 8
    lr: float = 0.002
    weight_decay: float = 0.0001
    warmup_steps: int = 100
    dice_weight: float = 1.0
    mil_weight: float = 0.5
    mil_topk: int = 32
    checkpoint_every: int = 250
    log_every: int = 25
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1 or self.mil_topk < 1:
            raise ValueError(f"segment train: steps, batch_size, checkpoint_every and mil_topk must be >= 1; "
                             f"got {self}")


def segment_loss(logits: torch.Tensor, batch: SegmentBatch, config: SegmentTrainConfig) -> dict[str, torch.Tensor]:
    """The three loss terms and their weighted ``total`` for ``logits (B,K,S,S)``."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, batch.target, reduction="none").flatten(2).mean(-1)
    pixel = (bce * batch.pixel_weight).sum() / batch.pixel_weight.sum().clamp_min(1.0)
    prob = torch.sigmoid(logits).flatten(2)
    truth = batch.target.flatten(2)
    has = (truth.sum(-1) > 0) & (batch.pixel_weight > 0)
    dice_all = 1.0 - (2 * (prob * truth).sum(-1) + 1.0) / (prob.sum(-1) + truth.sum(-1) + 1.0)
    dice = dice_all[has].mean() if has.any() else logits.new_zeros(())
    evidence = topk_mean(logits, config.mil_topk)
    mil_all = F.binary_cross_entropy_with_logits(evidence, batch.image_label, reduction="none")
    mil = (mil_all * batch.image_weight).sum() / batch.image_weight.sum().clamp_min(1.0)
    total = pixel + config.dice_weight * dice + config.mil_weight * mil
    return {"total": total, "pixel": pixel, "dice": dice, "mil": mil}


def _lr_at(step: int, config: SegmentTrainConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    done = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))


def _to(batch: SegmentBatch, device: torch.device) -> SegmentBatch:
    return SegmentBatch(**{k: getattr(batch, k).to(device) for k in SegmentBatch.__dataclass_fields__})


def train_segmenter(batches: SegmentBatches, model_config: SegmenterConfig, config: SegmentTrainConfig, *,
                    checkpoint_dir: str | os.PathLike[str], device: torch.device | str, seed: int,
                    on_log: Callable[[int, dict[str, float]], None] | None = None,
                    progress: bool = True) -> Segmenter:
    """Train (or resume) one network of ``model_config`` (its ``members`` aside); returns it in eval mode
    on ``device``."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = Segmenter(member_config(model_config)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    path = Path(checkpoint_dir) / "checkpoint.pt"
    expected = fingerprint(network_fields(model_config), config, batches.config, {"seed": seed})
    state, start = load_checkpoint(path), 0
    if state is not None:
        check_fingerprint(state, expected, path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
    bar = progress_bar(config.steps, start, enabled=progress, desc="train segmenter")
    model.train()
    source = batches.iter_from(start)
    for step in range(start, config.steps):
        batch = _to(next(source), device)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        with autocast(device):
            logits = model(batch.x)
        losses = segment_loss(logits, batch, config)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        bar.update(1)
        if on_log is not None and (step + 1) % config.log_every == 0:
            on_log(step + 1, {("loss" if k == "total" else k): float(v.detach()) for k, v in losses.items()})
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "step": step + 1, "fingerprint": expected})
    bar.close()
    return model.eval()
