"""Noise-aware multi-label classifier p(y | x_t, t) for classifier guidance (Wolleb et al. 2022).

The model, its guidance gradient and its probabilities; training is
:mod:`~dermclean.methods.guided.noisy_classifier_train`.

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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from dermclean.classifier.model import ClassifierConfig, DiagnosisResNet
from dermclean.diffusion.augment import dihedral_mean
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


register("noisy_classifier", NoisyClassifierConfig, NoisyClassifier)


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
def class_probabilities(model: NoisyClassifier, x: torch.Tensor, *, t: int = 0, tta: bool = False) -> torch.Tensor:
    """Sigmoid probabilities (B,K) float32 of ``x`` (B,3,S,S) at timestep ``t``, on ``x``'s device;
    ``tta`` averages them over the 8 turned / mirrored images (test-time augmentation)."""
    steps = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)

    def probs(images: torch.Tensor) -> torch.Tensor:
        with autocast(x.device):
            return torch.sigmoid(model(images, steps).float())

    return dihedral_mean(probs, x) if tta else probs(x)
