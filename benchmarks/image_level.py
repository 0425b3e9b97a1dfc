"""Benchmark: the image-level artifact detector against the supervised reference, on human labels.

Trains, on the prepared manifest's ``train`` split (``dvc repro prepare`` with ``data.source: folder``
on the real set), either

* ``--model noisy``: the noise-aware classifier exactly as the ``train_diffusion`` stage trains it
  (:func:`~dermclean.diffusion.noisy_classifier.train_noisy_classifier`: D4 augmentation, half of each
  batch at t = 0, the rest at t < 400, cosine learning rate), with the layout given by ``--arch``; or
* ``--model supervised``: the reference of ``../shared/RESEARCH.md``, torchvision's ResNet-18 from
  scratch (:class:`~dermclean.classifier.model.DiagnosisResNet`, width 64) on clean images only, with the
  same D4 augmentation, loss, optimiser and schedule;

and prints, every ``--eval-every`` steps, the validation image AUROC that the ``detect`` stage reports
(any of ruler / ink / patches, score ``1 - prod(1 - p_k)``, against images with none; each type
against the same clean images), and at the end the same on the test split. Choices are made on
validation; the test figure is reported, never tuned on. Run from the repository root:

    python benchmarks/image_level.py --model noisy --arch resnet --width 64 --input-size 128 --steps 1200
    python benchmarks/image_level.py --model supervised --input-size 128 --steps 1500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from dermclean.classifier.model import ClassifierConfig, DiagnosisResNet
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.dataset import load_split
from dermclean.detection.metrics import image_auroc
from dermclean.diffusion.augment import random_dihedral
from dermclean.diffusion.noisy_classifier import (
    NoisyClassifier, NoisyClassifierConfig, masked_bce, pos_weight_from_labels, predict_proba, scheduled_lr,
    train_noisy_classifier,
)
from dermclean.diffusion.train import DiffusionBatch, batches_from_dataset, endless, ordered_batches
from dermclean.env import disable_telemetry

SAMPLE_SIZE = 64  # the diffusion model's resolution (data.image_size); the classifier sees input_size


def aurocs(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Image AUROC over fully labelled images: any type vs none, and each type vs none."""
    known = ~torch.isnan(labels).any(dim=1)
    p, y = probs[known], labels[known]
    clean = y.sum(dim=1) == 0
    out = {"images": int(known.sum()),
           "any": image_auroc((1 - torch.prod(1 - p, dim=1)).tolist(), (~clean).long().tolist())}
    for k, name in enumerate(OUTLIER_CLASSES):
        sel = clean | (y[:, k] == 1)
        out[name] = image_auroc(p[sel, k].tolist(), y[sel, k].long().tolist())
    return out


def supervised_probs(model: torch.nn.Module, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    probs, labels = [], []
    with torch.no_grad():
        for batch in ordered_batches(dataset, batch_size=64):
            probs.append(torch.sigmoid(model(batch.target)))
            labels.append(batch.labels.float())
    return torch.cat(probs), torch.cat(labels)


def train_supervised(model: torch.nn.Module, batches, *, steps: int, lr: float, pos_weight: torch.Tensor,
                     on_log) -> None:
    """The reference: BCE on clean D4-augmented images, AdamW, the noisy classifier's cosine schedule."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    stream = endless(batches)
    model.train()
    for step in range(steps):
        batch: DiffusionBatch = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(lr, step, steps, "cosine")
        loss = masked_bce(model(random_dihedral(batch.target, generator)), batch.labels, pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        on_log(step + 1, {"loss": loss.item()})


def main(argv: list[str] | None = None) -> int:
    disable_telemetry()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--model", choices=("noisy", "supervised"), default="noisy")
    parser.add_argument("--arch", choices=("preact", "resnet"), default="resnet", help="noisy classifier layout")
    parser.add_argument("--width", type=int, default=64, help="noisy classifier base width (supervised: 64)")
    parser.add_argument("--input-size", type=int, default=128, help="classifier input, a multiple of 64 px")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.input_size % SAMPLE_SIZE:
        parser.error(f"--input-size {args.input_size} is not a multiple of {SAMPLE_SIZE}")
    torch.set_num_threads(args.threads)
    train = load_split(args.manifest, "train", args.input_size)
    val = load_split(args.manifest, "val", args.input_size)
    test = load_split(args.manifest, "test", args.input_size)
    pos_weight = pos_weight_from_labels(train.labels)
    batches = batches_from_dataset(train, batch_size=32, seed=1)
    torch.manual_seed(0)
    if args.model == "noisy":
        model = NoisyClassifier(NoisyClassifierConfig(
            sample_size=SAMPLE_SIZE, width=args.width, depth=4, blocks=2, norm="batch", arch=args.arch,
            input_scale=args.input_size // SAMPLE_SIZE, num_classes=len(OUTLIER_CLASSES)))

        def probs(dataset):
            return predict_proba(model, ordered_batches(dataset, batch_size=32), device="cpu", t=0)
    else:
        model = DiagnosisResNet(ClassifierConfig(arch="resnet18", width=64, image_size=args.input_size,
                                                 num_classes=len(OUTLIER_CLASSES)))

        def probs(dataset):
            return supervised_probs(model, dataset)

    curve: list[dict] = []
    began = time.perf_counter()

    def on_log(step: int, metrics: dict[str, float]) -> None:
        if step % args.eval_every == 0 and step < args.steps:
            row = {"step": step, "seconds": round(time.perf_counter() - began), **aurocs(*probs(val))}
            model.train()
            curve.append(row)
            print(json.dumps(row), flush=True)

    if args.model == "noisy":
        train_noisy_classifier(model, batches, steps=args.steps, lr=args.lr, device="cpu", seed=0, progress=False,
                               pos_weight=pos_weight, on_log=on_log, log_every=1, max_timestep=400, augment=True,
                               model_view_fraction=0.5, t_zero_fraction=0.5, lr_schedule="cosine")
    else:
        train_supervised(model, batches, steps=args.steps, lr=args.lr, pos_weight=pos_weight, on_log=on_log)
    seconds = time.perf_counter() - began
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "train_seconds": round(seconds),
              "parameters": sum(p.numel() for p in model.parameters()), "curve": curve,
              "val": aurocs(*probs(val)), "test": aurocs(*probs(test))}
    print(json.dumps({k: result[k] for k in ("train_seconds", "parameters", "val", "test")}, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
