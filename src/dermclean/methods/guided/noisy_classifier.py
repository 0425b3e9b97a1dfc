"""Noise-aware multi-label classifier p(y | x_t, t) for classifier guidance (Wolleb et al. 2022).

Wolleb et al. train a classifier on noised images ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``
(uniform ``t``, the same forward process as the diffusion model) and guide DDIM decoding towards the
healthy class with ``eps <- eps - sqrt(1 - abar_t) * s * grad_{x_t} log p(y = healthy | x_t)``. Here
``y`` is multi-label over the outlier classes (ruler, ink, patches: ``constants.OUTLIER_CLASSES``), each
an independent sigmoid, and "clean" is the target ``y = (0, 0, 0)``. At ``t = 0`` the classifier is an
image-level artifact detector on its own.

Thin rulers vanish at the diffusion model's 64 px, so the classifier may see more pixels than the
model it guides: with ``input_scale = k`` it classifies ``k * sample_size`` px images through a
``k x k``-patch stem (no information lost, same cost after the stem). Guidance hands it ``x_t`` at
the model's resolution, which it upsamples (nearest) itself, so it is trained on what it will be
asked: noise drawn at the model's resolution and upsampled, and half of the clean images (by default)
shown at the model's resolution too (``model_view_fraction``). At ``t = 0`` the detector gives it the
image at its full ``input_size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from dermclean.classifier.model import ClassifierConfig, DiagnosisResNet
from dermclean.constants import OUTLIER_CLASSES
from dermclean.diffusion.augment import dihedral_mean, random_dihedral
from dermclean.diffusion.schedulers import training_scheduler
from dermclean.diffusion.train import (
    DiffusionBatch, check_fingerprint, endless, fingerprint, load_checkpoint, progress_bar, rng_state,
    save_checkpoint, set_rng_state,
)
from dermclean.diffusion.unet import UNetConfig
from dermclean.env import autocast
from dermclean.modelio import register


@dataclass(kw_only=True)
class NoisyClassifierConfig:
    """Typed configuration of :class:`NoisyClassifier` (saved as the model folder's ``config.json``)."""

    sample_size: int = 64
    width: int = 16
    depth: int = 3
    num_classes: int = 3
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    input_scale: int = 1
    blocks: int = 1
    norm: str = "group"
    arch: str = "preact"

    def __post_init__(self) -> None:
        if min(self.width, self.depth, self.num_classes, self.input_scale, self.blocks) < 1:
            raise ValueError(f"NoisyClassifierConfig: width, depth, num_classes, input_scale and blocks must be "
                             f">= 1; got {self}")
        if self.norm not in NORMS:
            raise ValueError(f"NoisyClassifierConfig.norm is {self.norm!r}; expected one of {NORMS}")
        if self.arch not in ARCHS:
            raise ValueError(f"NoisyClassifierConfig.arch is {self.arch!r}; expected one of {ARCHS}")
        if self.arch == "resnet" and (self.depth != 4 or self.blocks not in RESNET_LAYOUTS or self.norm != "batch"):
            raise ValueError(f"NoisyClassifierConfig: arch 'resnet' is torchvision's ResNet layout: depth 4, blocks "
                             f"in {sorted(RESNET_LAYOUTS)}, norm 'batch'; got depth {self.depth}, blocks "
                             f"{self.blocks}, norm {self.norm!r}")

    @property
    def input_size(self) -> int:
        """Side of the images it classifies natively: ``input_scale * sample_size``."""
        return self.input_scale * self.sample_size


NORMS = ("group", "batch")
ARCHS = ("preact", "resnet")
RESNET_LAYOUTS = {1: "resnet10", 2: "resnet18"}
"""``blocks`` per stage -> the :mod:`dermclean.classifier.model` layout that ``arch: resnet`` builds."""


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


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


def _norm(kind: str, channels: int) -> nn.Module:
    """GroupNorm (per sample, always) or BatchNorm (batch statistics in training, running ones in eval)."""
    return nn.GroupNorm(_groups(channels), channels) if kind == "group" else nn.BatchNorm2d(channels)


class _ResBlock(nn.Module):
    """Pre-activation residual block with the timestep embedding added between its two convolutions."""

    def __init__(self, cin: int, cout: int, emb_dim: int, norm: str = "group") -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(norm, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = _norm(norm, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class NoisyClassifier(nn.Module):
    """``forward(x_t (B,3,H,W) in noised [-1,1] space, t (B,) or scalar) -> logits (B, num_classes)``.

    ``arch="preact"``: ``depth`` stages of ``blocks`` pre-activation residual blocks at width
    ``width * 2**i``, average-pooled by 2 between stages (``depth=4, blocks=2`` is ResNet-18's stage
    layout), then a norm, SiLU, global average pooling and a linear head. Norms are GroupNorm or
    BatchNorm (``norm``); in eval mode both act on each sample alone, so each sample's guidance gradient
    depends on that sample only.

    ``arch="resnet"``: torchvision's ResNet (He et al. 2016; the diagnosis classifier's
    :class:`~dermclean.classifier.model.DiagnosisResNet`, base width ``width``, ``blocks`` BasicBlocks
    per stage: 2 is ResNet-18) with its 7x7 stride-2 stem and max-pool, post-activation blocks and
    strided downsampling; the timestep embedding is added, per channel, after the stem and after each
    stage, and its ``fc`` is replaced by a linear head on global average pooling. BatchNorm only. On
    the real set it scores higher than ``preact`` on validation at the same budget, not on the test
    split (docs/experiments.md, "Image-level detector against the supervised reference").
    """

    def __init__(self, config: NoisyClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w, emb_dim = config.width, config.width * 4
        self.time_proj = Timesteps(w, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(w, emb_dim)
        if config.arch == "resnet":
            net = DiagnosisResNet(ClassifierConfig(arch=RESNET_LAYOUTS[config.blocks], width=w,
                                                   image_size=config.input_size, num_classes=config.num_classes))
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
            self.stages = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
            self.time_bias = nn.ModuleList(nn.Linear(emb_dim, c) for c in (w, w, 2 * w, 4 * w, 8 * w))
            self.head = nn.Linear(8 * w, config.num_classes)
            return
        k = config.input_scale
        self.stem = nn.Conv2d(3, w, 3, padding=1) if k == 1 else nn.Conv2d(3, w, k, stride=k)
        chans = [w * 2**i for i in range(config.depth)]
        self.stages = nn.ModuleList(
            nn.ModuleList(_ResBlock(cin if j == 0 else cout, cout, emb_dim, config.norm) for j in range(config.blocks))
            for cin, cout in zip([w] + chans[:-1], chans))
        self.norm = _norm(config.norm, chans[-1])
        self.head = nn.Linear(chans[-1], config.num_classes)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_t.ndim != 4 or x_t.shape[1] != 3:
            raise ValueError(f"NoisyClassifier expects x_t of shape (B,3,H,W); got {tuple(x_t.shape)}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        emb = self.time_embed(self.time_proj(t).to(x_t.dtype))
        h = self.stem(self.at_input_size(x_t))
        if self.config.arch == "resnet":
            act = F.silu(emb)
            h = h + self.time_bias[0](act)[:, :, None, None]
            for stage, bias in zip(self.stages, self.time_bias[1:]):
                h = stage(h) + bias(act)[:, :, None, None]
            return self.head(h.mean(dim=(2, 3)))
        for i, stage in enumerate(self.stages):
            if i:
                h = F.avg_pool2d(h, 2)
            for block in stage:
                h = block(h, emb)
        return self.head(F.silu(self.norm(h)).mean(dim=(2, 3)))

    def at_input_size(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` at the model's ``sample_size`` is upsampled (nearest) to ``input_size``; any other size is
        taken as native."""
        k = self.config.input_scale
        if k > 1 and x.shape[-1] == self.config.sample_size and x.shape[-2] == self.config.sample_size:
            return F.interpolate(x, scale_factor=k, mode="nearest")
        return x


def model_view(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``x`` (B,C,H,W) as the model resolution shows it: ``scale x scale`` averages, upsampled back (nearest)."""
    return F.interpolate(F.avg_pool2d(x, scale), scale_factor=scale, mode="nearest") if scale > 1 else x


def training_noise(shape: torch.Size, scale: int, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn at ``1/scale`` the side and upsampled (nearest): the noise
    of an ``x_t`` at the model's resolution, seen at the classifier's."""
    b, c, h, w = shape
    eps = torch.randn((b, c, h // scale, w // scale), generator=generator, device=generator.device)
    return F.interpolate(eps, scale_factor=scale, mode="nearest") if scale > 1 else eps


register("noisy_classifier", NoisyClassifierConfig, NoisyClassifier)


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
    """
    device = torch.device(device)
    if pos_weight is None:
        pos_weight = pos_weight_from_labels(torch.cat([b.labels for b in dataset_batches]))
    pos_weight = pos_weight.float().to(device)
    scheduler = _scheduler(model.config)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator(device=device).manual_seed(seed)
    num_t = scheduler.config.num_train_timesteps
    t_high = num_t if max_timestep is None else int(max_timestep)
    if not 1 <= t_high <= num_t:
        raise ValueError(f"train_noisy_classifier: max_timestep={max_timestep}; expected 1..{num_t} or None")
    scale = model.config.input_scale
    if not 0.0 <= model_view_fraction <= 1.0:
        raise ValueError(f"train_noisy_classifier: model_view_fraction={model_view_fraction}; expected in [0, 1]")
    if not 0.0 <= t_zero_fraction <= 1.0:
        raise ValueError(f"train_noisy_classifier: t_zero_fraction={t_zero_fraction}; expected in [0, 1]")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"train_noisy_classifier: lr_schedule={lr_schedule!r}; expected one of {LR_SCHEDULES}")
    fp = fingerprint(model.config, {"lr": lr, "seed": seed, "pos_weight": pos_weight.tolist(), "t_high": t_high,
                                    **({"augment": True} if augment else {}),
                                    **({"model_view_fraction": model_view_fraction} if scale > 1 else {}),
                                    **({"t_zero_fraction": t_zero_fraction} if t_zero_fraction else {}),
                                    **({"lr_schedule": lr_schedule} if lr_schedule != "constant" else {})})
    ckpt = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir is not None else None
    start, recent = 0, []
    state = load_checkpoint(ckpt) if ckpt is not None else None
    if state is not None:
        check_fingerprint(state, fp, ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(generator, state["rng"])
        start, recent = int(state["step"]), [float(x) for x in state["recent_losses"]]

    stream = endless(dataset_batches, start)
    bar = progress_bar(steps, start, enabled=progress, desc="train noisy classifier")
    step = start
    try:
        while step < steps:
            batch = next(stream)
            x0, labels = batch.target.to(device), batch.labels.to(device)
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
            t = torch.where(clean, torch.zeros_like(t), t)
            with autocast(device, amp):
                logits = model(scheduler.add_noise(x0, eps, t), t)
            loss = masked_bce(logits, labels, pos_weight)
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


def classifier_log_prob_grad(model: NoisyClassifier, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
                             scale: float = 1.0) -> torch.Tensor:
    """``scale * grad_{x_t} log p(y = target | x_t, t)`` (B,3,H,W), detached, in the model's dtype.

    ``log p(y | x_t) = sum_k [ y_k log sigmoid(l_k) + (1 - y_k) log sigmoid(-l_k) ]`` over the classes
    ``k`` whose ``target[:, k]`` (B,K) is not NaN, with ``l = model(x_t, t)``; NaN entries are left out
    (guide on a subset of classes). ``target = 0`` everywhere is "clean": the gradient points to where
    every artifact class is less likely. Samples are independent (the model in eval mode), so each row is the
    gradient of its own log-probability. Wolleb et al. 2022 guidance with DDIM:
    ``eps_hat = eps - sqrt(1 - abar_t) * classifier_log_prob_grad(model, x_t, t, target, s)``.
    Runs with gradients enabled even inside ``torch.no_grad()``.
    """
    dtype = next(model.parameters()).dtype
    target = target.to(x_t.device, dtype)
    known = ~torch.isnan(target)
    y = torch.nan_to_num(target)
    with torch.enable_grad():
        x = x_t.detach().to(dtype).requires_grad_(True)
        logits = model(x, t).to(dtype)
        log_p = y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)
        (grad,) = torch.autograd.grad((log_p * known).sum(), x)
    return scale * grad.detach()


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


@torch.no_grad()
def class_probabilities(model: NoisyClassifier, x: torch.Tensor, *, t: int = 0, tta: bool = False) -> torch.Tensor:
    """Sigmoid probabilities (B,K) float32 of ``x`` (B,3,S,S) at timestep ``t``, on ``x``'s device;
    ``tta`` averages them over the 8 turned / mirrored images (test-time augmentation)."""
    steps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)

    def probs(images: torch.Tensor) -> torch.Tensor:
        with autocast(x.device):
            return torch.sigmoid(model(images, steps).float())

    return dihedral_mean(probs, x) if tta else probs(x)


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
