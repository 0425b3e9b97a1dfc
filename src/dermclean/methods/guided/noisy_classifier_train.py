"""Training of the noise-aware classifier (Wolleb et al. 2022) on noised images, and its evaluation.

Each step noises clean images with the diffusion model's forward process at a uniform ``t``
(:func:`train_noisy_classifier`); params.yaml's ``diffusion.noisy_classifier`` splits into the model
config and this recipe (:func:`noisy_classifier_from_params`). The model itself is
:class:`~dermclean.methods.guided.noisy_classifier.NoisyClassifier`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dermclean.constants import OUTLIER_CLASSES
from dermclean.diffusion.augment import random_dihedral
from dermclean.diffusion.schedulers import training_scheduler
from dermclean.diffusion.batches import DiffusionBatch, endless
from dermclean.diffusion.checkpoints import fingerprint, progress_bar, restore_checkpoint, rng_state, save_checkpoint
from dermclean.diffusion.unet import UNetConfig
from dermclean.env import autocast
from dermclean.methods.guided.noisy_classifier import (
    NoisyClassifier, NoisyClassifierConfig, class_probabilities, model_view,
)


@dataclass(kw_only=True)
class NoisyClassifierTraining:
    """The training recipe in params.yaml's ``diffusion.noisy_classifier`` (see :func:`train_noisy_classifier`)."""

    steps: int
    batch_size: int
    lr: float
    checkpoint_every: int | None = None  # None: every steps // 8
    max_timestep: int | None = None
    augment: bool = False
    model_view_fraction: float = 0.5
    t_zero_fraction: float = 0.0
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        # YAML reads 1e-3 as a string; coerce so that a config written either way trains the same.
        self.steps, self.batch_size, self.lr = int(self.steps), int(self.batch_size), float(self.lr)
        self.checkpoint_every = int(self.checkpoint_every or max(1, self.steps // 8))
        self.max_timestep = None if self.max_timestep is None else int(self.max_timestep)
        self.augment, self.lr_schedule = bool(self.augment), str(self.lr_schedule)
        self.model_view_fraction, self.t_zero_fraction = float(self.model_view_fraction), float(self.t_zero_fraction)
        if min(self.steps, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError(f"NoisyClassifierTraining: steps and batch_size must be >= 1 and lr > 0; got {self}")

    def train_kwargs(self) -> dict:
        """Keyword arguments of :func:`train_noisy_classifier` (everything but ``batch_size``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "batch_size"}


MODEL_KEYS = ("width", "depth", "blocks", "norm", "input_scale", "arch")
"""Keys of ``diffusion.noisy_classifier`` that shape the model; the others are :class:`NoisyClassifierTraining`."""


def noisy_classifier_from_params(section: Mapping[str, Any], *, unet: UNetConfig, where: str = "noisy_classifier"
                                 ) -> tuple[NoisyClassifierConfig, NoisyClassifierTraining]:
    """Split params.yaml's ``diffusion.noisy_classifier`` into the model config and the training recipe.

    Resolution, classes and noise schedule come from the UNet the classifier guides. Unknown keys raise
    ``ValueError`` naming ``where`` and the expected keys.
    """
    section = dict(section)
    model = {k: section.pop(k) for k in MODEL_KEYS if k in section}
    recipe = {f.name for f in fields(NoisyClassifierTraining)}
    unknown = sorted(set(section) - recipe)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected {sorted((*MODEL_KEYS, *recipe))}")
    required = {f.name for f in fields(NoisyClassifierTraining) if f.default is MISSING}
    missing = sorted(required - set(section))
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    config = NoisyClassifierConfig(sample_size=unet.sample_size, num_classes=unet.num_classes,
                                   num_train_timesteps=unet.num_train_timesteps, beta_schedule=unet.beta_schedule,
                                   **model)
    return config, NoisyClassifierTraining(**section)


def training_noise(shape: torch.Size, scale: int, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn at ``1/scale`` the side and upsampled (nearest): the noise
    of an ``x_t`` at the model's resolution, seen at the classifier's."""
    b, c, h, w = shape
    eps = torch.randn((b, c, h // scale, w // scale), generator=generator, device=generator.device)
    return F.interpolate(eps, scale_factor=scale, mode="nearest") if scale > 1 else eps


def _scheduler(config: NoisyClassifierConfig):
    return training_scheduler(UNetConfig(num_train_timesteps=config.num_train_timesteps,
                                         beta_schedule=config.beta_schedule))


def pos_weight_from_labels(labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE ``pos_weight`` (K,) = #negatives / #positives per class over known (non-NaN)
    entries of ``labels`` (N,K); 1 for a class with no positives or no negatives."""
    labels = labels.float()
    known = ~torch.isnan(labels)
    pos = ((labels == 1) & known).sum(0).float()
    neg = ((labels == 0) & known).sum(0).float()
    return torch.where((pos > 0) & (neg > 0), neg / pos.clamp(min=1), torch.ones_like(pos))


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE-with-logits over the known (non-NaN) entries of ``labels`` (B,K)."""
    known = ~torch.isnan(labels)
    loss = F.binary_cross_entropy_with_logits(logits.float(), torch.nan_to_num(labels.float()),
                                              pos_weight=pos_weight, reduction="none")
    return (loss * known).sum() / known.sum().clamp(min=1)


LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, step: int, steps: int, schedule: str) -> float:
    """Learning rate of (0-based) ``step`` of ``steps``; see :func:`train_noisy_classifier`."""
    if schedule == "constant":
        return lr
    warmup = max(1, round(0.05 * steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_noisy_classifier(model: NoisyClassifier, dataset_batches: Iterable[DiffusionBatch], *, steps: int,
                           lr: float, device: torch.device | str, checkpoint_dir: Path | None = None,
                           seed: int = 0, progress: bool = True, pos_weight: torch.Tensor | None = None,
                           checkpoint_every: int = 500, amp: bool = True,
                           on_log: Callable[[int, dict[str, float]], None] | None = None,
                           log_every: int = 10, max_timestep: int | None = None,
                           augment: bool = False, model_view_fraction: float = 0.5,
                           t_zero_fraction: float = 0.0, lr_schedule: str = "constant") -> NoisyClassifier:
    """Train on ``x_t = add_noise(x0, eps, t)``, ``t ~ U{0..T-1}``, masked multi-label BCE; return it in eval.

    ``max_timestep`` limits ``t`` to ``U{0..max_timestep-1}`` (guidance only queries ``t`` below the
    detection noise level L, so capacity spent above it is wasted); None = all T (Wolleb et al.).
    ``augment`` turns or mirrors each clean image by a random D4 element before noising
    (:mod:`dermclean.diffusion.augment`): artifact labels do not depend on orientation.
    With ``model.config.input_scale > 1`` the batches hold images at ``input_size``; the noise is drawn at
    the model's resolution and upsampled, and a ``model_view_fraction`` of the clean images is shown as
    the model resolution sees it (:func:`model_view`), as guidance will.
    ``t_zero_fraction`` of the samples are shown clean (``t = 0``, at full ``input_size``): the image-level
    detector asks the classifier at ``t = 0`` only, so a share of the batch is spent where it is used.
    ``lr_schedule``: ``constant``, or ``cosine`` (linear warm-up over the first 5 % of ``steps``, then
    cosine decay to 0 at ``steps``; a function of the step, so a resumed run follows it exactly).

    ``pos_weight`` (K,) defaults to :func:`pos_weight_from_labels` over one pass of ``dataset_batches``
    (pass it to skip that pass). With ``checkpoint_dir`` the run checkpoints every ``checkpoint_every``
    steps and resumes from ``checkpoint_dir/checkpoint.pt``. ``on_log(step, {"loss"})``.
    Over 60 lines with this docstring; the code is the setup and one step loop, kept whole so the order of
    the RNG draws and the checkpoint, on which exact resume depends, reads in one place.
    """
    device = torch.device(device)
    if pos_weight is None:
        pos_weight = pos_weight_from_labels(torch.cat([b.labels for b in dataset_batches]))
    pos_weight = pos_weight.float().to(device)
    scheduler = _scheduler(model.config)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator(device=device).manual_seed(seed)
    t_high = _check_options(scheduler.config.num_train_timesteps, max_timestep=max_timestep, lr_schedule=lr_schedule,
                            model_view_fraction=model_view_fraction, t_zero_fraction=t_zero_fraction)
    scale = model.config.input_scale
    fp = fingerprint(model.config, {"lr": lr, "seed": seed, "pos_weight": pos_weight.tolist(), "t_high": t_high,
                                    **({"augment": True} if augment else {}),
                                    **({"model_view_fraction": model_view_fraction} if scale > 1 else {}),
                                    **({"t_zero_fraction": t_zero_fraction} if t_zero_fraction else {}),
                                    **({"lr_schedule": lr_schedule} if lr_schedule != "constant" else {})})
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir is not None else None
    start, recent = restore_checkpoint(ckpt, fp, generator, model=model, optimizer=optimizer)
    start = start or 0

    stream = endless(dataset_batches, start)
    bar = progress_bar(steps, start, enabled=progress, desc="train noisy classifier")
    step = start
    try:
        while step < steps:
            batch = next(stream)
            x0, t, eps = _noised_batch(model, batch.target.to(device), generator, t_high=t_high, augment=augment,
                                       t_zero_fraction=t_zero_fraction, model_view_fraction=model_view_fraction)
            with autocast(device, amp):
                logits = model(scheduler.add_noise(x0, eps, t), t)
            loss = masked_bce(logits, batch.labels.to(device), pos_weight)
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(lr, step, steps, lr_schedule)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            recent = (recent + [loss.item()])[-log_every:]
            bar.update(1)
            bar.set_postfix(loss=f"{recent[-1]:.4f}")
            if on_log is not None and (step % log_every == 0 or step == steps):
                on_log(step, {"loss": sum(recent) / len(recent)})
            if ckpt is not None and (step % checkpoint_every == 0 or step == steps):
                save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                       "step": step, "rng": rng_state(generator), "fingerprint": fp,
                                       "recent_losses": list(recent)})
    finally:
        bar.close()
    return model.eval()


def _check_options(num_t: int, *, max_timestep: int | None, lr_schedule: str, model_view_fraction: float,
                   t_zero_fraction: float) -> int:
    """Refuse out-of-range options of :func:`train_noisy_classifier`; returns the timestep bound ``t_high``."""
    t_high = num_t if max_timestep is None else int(max_timestep)
    if not 1 <= t_high <= num_t:
        raise ValueError(f"train_noisy_classifier: max_timestep={max_timestep}; expected 1..{num_t} or None")
    if not 0.0 <= model_view_fraction <= 1.0:
        raise ValueError(f"train_noisy_classifier: model_view_fraction={model_view_fraction}; expected in [0, 1]")
    if not 0.0 <= t_zero_fraction <= 1.0:
        raise ValueError(f"train_noisy_classifier: t_zero_fraction={t_zero_fraction}; expected in [0, 1]")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train_noisy_classifier: lr_schedule={lr_schedule!r}; expected one of {LR_SCHEDULES}")
    return t_high


def _noised_batch(model: NoisyClassifier, x0: torch.Tensor, generator: torch.Generator, *, t_high: int, augment: bool,
                  t_zero_fraction: float, model_view_fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's clean images (augmented; a share at the model's view), timesteps (a share at 0) and noise,
    drawn from ``generator`` in that order: ``(x0, t, eps)``."""
    device, scale = x0.device, model.config.input_scale
    if x0.shape[-1] != model.config.input_size:
        raise ValueError(f"train_noisy_classifier: batch images are {x0.shape[-1]} px; the classifier "
                         f"takes {model.config.input_size} px (sample_size x input_scale)")
    if augment:
        x0 = random_dihedral(x0, generator)
    clean = torch.rand(x0.shape[0], generator=generator, device=device) < t_zero_fraction
    if scale > 1:
        low = torch.rand(x0.shape[0], generator=generator, device=device) < model_view_fraction
        x0 = torch.where((low & ~clean)[:, None, None, None], model_view(x0, scale), x0)
    eps = training_noise(x0.shape, scale, generator)
    t = torch.randint(0, t_high, (x0.shape[0],), generator=generator, device=device)
    return x0, torch.where(clean, torch.zeros_like(t), t), eps



@torch.no_grad()
def predict_proba(model: NoisyClassifier, batches: Iterable[DiffusionBatch], *, device: torch.device | str,
                  t: int = 0, tta: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid probabilities (N,K) at timestep ``t`` on the clean images of one pass, and labels (N,K).
    ``tta`` averages the probabilities over the 8 D4 images (:func:`class_probabilities`)."""
    device = torch.device(device)
    model.to(device).eval()
    probs, labels = [], []
    for batch in batches:
        probs.append(class_probabilities(model, batch.target.to(device), t=t, tta=tta).cpu())
        labels.append(batch.labels.float().cpu())
    return torch.cat(probs), torch.cat(labels)


def auroc_per_class(probs: torch.Tensor, labels: torch.Tensor,
                    names: tuple[str, ...] = OUTLIER_CLASSES) -> dict[str, float]:
    """torchmetrics binary AUROC per class over known labels; classes lacking positives or negatives
    among the known labels are left out."""
    from torchmetrics.functional.classification import binary_auroc

    out = {}
    for k, name in enumerate(names):
        known = ~torch.isnan(labels[:, k])
        y = labels[known, k].long()
        if y.numel() and 0 < int(y.sum()) < y.numel():
            out[name] = float(binary_auroc(probs[known, k], y))
    return out
