"""Training and inference of the diagnosis classifier (:mod:`dermclean.classifier.model`).

Datasets are anything indexable whose items have ``image`` ``(3, S, S)`` in ``[-1, 1]`` and
``melanoma`` (0/1) attributes (``dermclean.data.dataset.Sample``, :class:`LabelledImages`); they are
decoded once into one tensor (``(N, 3, S, S)`` float32, ~49 kB per 64 px image) so epochs cost
only the network. Augmentations: ``classifier.augment`` (:mod:`dermclean.classifier.augment`).

Optimiser AdamW, at a constant learning rate or a one-cycle schedule (``classifier.lr_schedule``:
warm-up over the first 15 % of the steps, then cosine annealing); loss BCE-with-logits with
``pos_weight = n_benign / n_malignant`` of the training split; bf16 autocast on CUDA; the weights
kept are those of the epoch with the best validation AUROC (ties and single-class validation fall
back to the lowest validation loss).

Two optional regularisers, off by default: ``mixup`` (alpha > 0) trains on convex mixtures of each
batch with a shuffled copy of itself, the mixing weight drawn from Beta(alpha, alpha) per batch and
the BCE target mixed alike (Zhang et al. 2018); ``ema_decay`` (in (0, 1)) keeps an exponential
moving average of the weights and BatchNorm statistics (``torch.optim.swa_utils.AveragedModel``),
updated after every step, and the averaged network is the one evaluated and kept per epoch.

With ``config.auxiliary`` (other diagnoses as extra targets, :mod:`dermclean.classifier.model`) the
loss adds ``auxiliary_weight`` times a BCE-with-logits over the auxiliary logits, each with its own
``pos_weight`` (negatives over positives among the training rows whose diagnosis is known), rows of
unknown diagnosis (NaN targets) left out of that term; mixup mixes those targets as it mixes the
melanoma label. Epoch selection and every prediction read the melanoma logit alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dermclean.classifier.augment import augmenter
from dermclean.classifier.metrics import auroc
from dermclean.classifier.model import ClassifierConfig, build_classifier
from dermclean.env import autocast, pick_device


LR_SCHEDULES: tuple[str, ...] = ("constant", "onecycle")


@dataclass(frozen=True, kw_only=True)
class LabelledImage:
    """One item of :class:`LabelledImages`: ``image`` ``(3, S, S)`` in ``[-1, 1]``, ``melanoma`` 0/1."""

    image: torch.Tensor
    melanoma: int
    index: int


class LabelledImages(torch.utils.data.Dataset):
    """Images already in memory: ``images`` ``(N, 3, S, S)`` in ``[-1, 1]``, ``melanoma`` ``(N,)`` 0/1."""

    def __init__(self, *, images: torch.Tensor, melanoma: Sequence[int] | np.ndarray) -> None:
        labels = np.asarray(melanoma, dtype=np.int64)
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images {tuple(images.shape)} and melanoma {labels.shape}: expected (N, 3, S, S) and (N,)")
        self.images = images.float()
        self.melanoma = labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> LabelledImage:
        return LabelledImage(image=self.images[i], melanoma=int(self.melanoma[i]), index=int(i))


def materialize(dataset) -> LabelledImages:
    """Decode every item of ``dataset`` once; returns the same data as :class:`LabelledImages`."""
    if isinstance(dataset, LabelledImages):
        return dataset
    if len(dataset) == 0:
        raise ValueError("cannot train or predict on an empty dataset")
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        images.append(torch.as_tensor(item.image, dtype=torch.float32))
        labels.append(int(item.melanoma))
    return LabelledImages(images=torch.stack(images), melanoma=labels)


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    val_auroc: float


@dataclass(kw_only=True)
class TrainHistory:
    """Per-epoch records, the epoch whose weights were kept (1-based) and its validation AUROC."""

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_auroc: float = float("nan")


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, *, batch_size: int, device: torch.device) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start:start + batch_size].to(device)
        with autocast(device):
            out.append(model(batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def predict_proba(model: nn.Module, data, *, batch_size: int = 64, device: str | torch.device | None = None) -> np.ndarray:
    """``p_malignant`` ``(N,)`` float64 for ``data``: a tensor ``(N, 3, S, S)`` in ``[-1, 1]`` or a dataset."""
    device = pick_device(device) if not isinstance(device, torch.device) else device
    images = data if isinstance(data, torch.Tensor) else materialize(data).images
    model = model.to(device)
    return torch.sigmoid(_logits(model, images, batch_size=batch_size, device=device)).double().numpy()


def train_classifier(train_ds, val_ds, config: ClassifierConfig, *, epochs: int, batch_size: int, lr: float,
                     seed: int, device: str | torch.device | None = None, weight_decay: float = 0.01,
                     augment: str = "geometric", lr_schedule: str = "constant", mixup: float = 0.0,
                     ema_decay: float | None = None, auxiliary: np.ndarray | None = None,
                     auxiliary_weight: float = 1.0, progress: bool = True) -> tuple[nn.Module, TrainHistory]:
    """Train a :class:`~dermclean.classifier.model.DiagnosisResNet` from scratch (or ``init_weights``).

    ``auxiliary`` ``(N_train, len(config.auxiliary))``: 0/1 targets of the auxiliary diagnoses per
    training row, NaN where unknown (required when ``config.auxiliary`` is set). Returns ``(model in
    eval mode with the best epoch's weights, history)``. See the module docstring for augmentations,
    loss and epoch selection. Deterministic for a given ``seed`` on CPU.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}: expected positive values")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"classifier.lr_schedule {lr_schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")
    if mixup < 0 or (ema_decay is not None and not 0 < ema_decay < 1):
        raise ValueError(f"classifier.mixup={mixup}, classifier.ema_decay={ema_decay}: expected mixup >= 0 "
                         "and ema_decay null or in (0, 1)")
    transform = augmenter(augment)
    device = pick_device(device) if not isinstance(device, torch.device) else device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train, val = materialize(train_ds), materialize(val_ds)
    size = config.image_size
    for name, ds in (("train", train), ("val", val)):
        if tuple(ds.images.shape[-2:]) != (size, size):
            raise ValueError(f"{name} images are {tuple(ds.images.shape[-2:])}; classifier.image_size is {size}")
    y_train = torch.as_tensor(train.melanoma, dtype=torch.float32)
    aux_train, aux_pos_weight = _auxiliary_targets(auxiliary, config, len(train), device)
    n_pos = float(y_train.sum())
    pos_weight = torch.tensor((len(y_train) - n_pos) / max(n_pos, 1.0), device=device)
    model = build_classifier(config, load_init=True).to(device)
    averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
                if ema_decay is not None else None)
    kept = model if averaged is None else averaged.module
    mix_rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    y_val = torch.as_tensor(val.melanoma, dtype=torch.float32)
    history, best_key, best_state = TrainHistory(), None, None
    steps_per_epoch = math.ceil(len(train) / batch_size)
    schedule = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.15) if lr_schedule == "onecycle" else None)
    bar = _progress(progress, epochs * steps_per_epoch, f"classifier seed {seed}")
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total, seen = 0.0, 0
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            x = transform(train.images[idx], gen).to(device)
            y = y_train[idx].to(device)
            a = aux_train[idx].to(device) if aux_train is not None else None
            if mixup > 0:
                lam = float(mix_rng.beta(mixup, mixup))
                partner = torch.randperm(len(idx), generator=gen).to(device)
                x, y = lam * x + (1 - lam) * x[partner], lam * y + (1 - lam) * y[partner]
                a = lam * a + (1 - lam) * a[partner] if a is not None else None
            if a is None:
                with autocast(device):
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
            else:
                with autocast(device):
                    outputs = model.all_logits(x).float()
                loss = loss_fn(outputs[:, 0], y) + auxiliary_weight * _masked_bce(outputs[:, 1:], a, aux_pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            if averaged is not None:
                averaged.update_parameters(model)
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            bar.advance()
        val_logits = _logits(kept, val.images, batch_size=batch_size, device=device)
        val_loss = float(nn.functional.binary_cross_entropy_with_logits(val_logits, y_val, pos_weight=pos_weight.cpu()))
        val_auc = auroc(val.melanoma, val_logits.numpy())
        history.epochs.append(EpochRecord(epoch=epoch, train_loss=total / seen, val_loss=val_loss, val_auroc=val_auc))
        key = (val_auc if math.isfinite(val_auc) else -math.inf, -val_loss)
        if best_key is None or key > best_key:
            best_key, history.best_epoch, history.best_val_auroc = key, epoch, val_auc
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in kept.state_dict().items()})
    bar.close()
    model.load_state_dict(best_state)
    return model.eval(), history


def _auxiliary_targets(targets: np.ndarray | None, config: ClassifierConfig, n: int,
                       device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The auxiliary targets as a float tensor and their per-column ``pos_weight``; ``(None, None)`` without."""
    k = len(config.auxiliary)
    if k == 0:
        if targets is not None:
            raise ValueError("auxiliary targets given but classifier.auxiliary is empty")
        return None, None
    if targets is None or np.shape(targets) != (n, k):
        raise ValueError(f"classifier.auxiliary {config.auxiliary}: expected targets of shape ({n}, {k}), "
                         f"got {None if targets is None else np.shape(targets)}")
    pos, neg = auxiliary_counts(targets)
    if (pos == 0).any() or (neg == 0).any():
        raise ValueError(f"classifier.auxiliary {config.auxiliary}: positives per column {pos.tolist()}, negatives "
                         f"{neg.tolist()} among the training rows; expected both in every column")
    return (torch.as_tensor(np.asarray(targets, dtype=np.float32)),
            torch.as_tensor(neg / pos, dtype=torch.float32, device=device))


def auxiliary_counts(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per column of auxiliary ``targets`` ``(N, K)`` (NaN = unknown, not counted)."""
    t = np.asarray(targets, dtype=np.float64)
    return (t == 1).sum(axis=0), (t == 0).sum(axis=0)


def _masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits over the entries whose target is known (not NaN); 0 when none is."""
    known = ~torch.isnan(targets)
    if not bool(known.any()):
        return logits.sum() * 0.0
    weights = pos_weight.expand_as(logits)[known]
    return nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known], pos_weight=weights)


class _progress:
    """A rich progress bar over training steps, or nothing when ``enabled`` is false."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._bar = None
        if enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
