"""Benchmark: the image-level artifact detector against the supervised reference, on human labels.

Trains, on the prepared manifest's ``train`` split (``dvc repro prepare`` with ``data.source: folder``
on the real set), either

* ``--model noisy``: the noise-aware classifier exactly as the ``train_diffusion`` stage trains it, from
  params.yaml's ``diffusion.noisy_classifier`` of the selected profile
  (:func:`~dermclean.methods.guided.noisy_classifier_train.noisy_classifier_from_params`, then
  :func:`~dermclean.methods.guided.noisy_classifier_train.train_noisy_classifier`); or
* ``--model supervised``: the reference of ``../shared/RESEARCH.md``, torchvision's ResNet-18 from
  scratch (:class:`~dermclean.classifier.model.DiagnosisResNet`, width 64, 128 px unless ``--input-size``)
  on clean images only, with the same profile's steps, batch size, learning rate and schedule, and the
  same D4 augmentation and loss;

``--arch``, ``--width``, ``--input-size``, ``--steps`` and ``--lr`` override the profile. It prints, every
``--eval-every`` steps, the validation image AUROC that the ``detect`` stage reports
(:func:`~dermclean.detection.metrics.labelled_image_aurocs`: any of ruler / ink / patches, score
``1 - prod(1 - p_k)``, against images with none; each type against the same clean images), and at the
end the same on the test split. Choices are made on validation; the test figure is reported, never
tuned on. Run from the repository root:

    python benchmarks/image_level.py --profile quick --arch resnet --width 64 --input-size 128
    python benchmarks/image_level.py --profile cpu                  # the cpu profile's classifier, alone
    python benchmarks/image_level.py --profile quick --model supervised --steps 1500
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from dermclean.classifier.model import ClassifierConfig, DiagnosisResNet
from dermclean.config import from_dict, load_params, params_parser, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.dataset import load_split
from dermclean.detection.image_score import any_artifact_probability
from dermclean.detection.metrics import labelled_image_aurocs
from dermclean.diffusion.augment import random_dihedral
from dermclean.diffusion.train import DiffusionBatch, batches_from_dataset, endless, ordered_batches
from dermclean.diffusion.unet import UNetConfig
from dermclean.env import disable_telemetry, pick_device
from dermclean.io import atomic_path, write_json
from dermclean.methods.guided.noisy_classifier import ARCHS, NoisyClassifier, NoisyClassifierConfig
from dermclean.methods.guided.noisy_classifier_train import (
    NoisyClassifierTraining, masked_bce, noisy_classifier_from_params, pos_weight_from_labels, predict_proba,
    scheduled_lr, train_noisy_classifier,
)

SUPERVISED_SIZE = 128  # the reference's resolution in RESEARCH.md


def aurocs(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float | int]:
    """The ``detect`` stage's figures from per-type probabilities (N, K) and labels (N, K, NaN unknown)."""
    any_score = any_artifact_probability(probs)
    return labelled_image_aurocs(any_score.numpy(), probs.numpy(), labels.numpy())


def supervised_probs(model: torch.nn.Module, dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    probs, labels = [], []
    with torch.no_grad():
        for batch in ordered_batches(dataset, batch_size=64):
            probs.append(torch.sigmoid(model(batch.target.to(device))).float().cpu())
            labels.append(batch.labels.float())
    return torch.cat(probs), torch.cat(labels)


def train_supervised(model: torch.nn.Module, batches, *, recipe: NoisyClassifierTraining, pos_weight: torch.Tensor,
                     device: torch.device, on_log) -> None:
    """The reference: BCE on clean D4-augmented images, AdamW, the recipe's steps and learning-rate schedule."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    stream = endless(batches)
    pos_weight = pos_weight.to(device)
    model.train()
    for step in range(recipe.steps):
        batch: DiffusionBatch = next(stream)
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(recipe.lr, step, recipe.steps, recipe.lr_schedule)
        images = random_dihedral(batch.target, generator).to(device)
        loss = masked_bce(model(images), batch.labels.to(device), pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        on_log(step + 1, {"loss": loss.item()})


def _setup(args: argparse.Namespace) -> tuple[dict, NoisyClassifierConfig, NoisyClassifierTraining]:
    """The selected profile's noisy classifier and recipe, with the command line's overrides."""
    params = load_params(args.params, profile=args.profile)
    size = int(params["data"]["image_size"])
    section = dict(params["diffusion"]["noisy_classifier"])
    for key in ("arch", "width", "steps", "lr"):
        if getattr(args, key) is not None:
            section[key] = getattr(args, key)
    if args.input_size is not None:
        if args.input_size % size:
            raise ValueError(f"--input-size {args.input_size} is not a multiple of data.image_size {size} "
                             f"({args.params}, profile {params['profile']})")
        section["input_scale"] = args.input_size // size
    unet = from_dict(UNetConfig, {**params["diffusion"]["unet"], "sample_size": size,
                                  "num_classes": len(OUTLIER_CLASSES)}, where=f"{args.params}: diffusion.unet")
    config, recipe = noisy_classifier_from_params(section, unet=unet,
                                                  where=f"{args.params}: profile {params['profile']}: "
                                                        "diffusion.noisy_classifier")
    return params, config, recipe


def main(argv: list[str] | None = None) -> int:
    """The benchmark as one script (see the module docstring): options, the measurement, its report; over 60
    lines for its options and printed table only."""
    disable_telemetry()
    parser = params_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("noisy", "supervised"), default="noisy")
    parser.add_argument("--arch", choices=ARCHS, default=None, help="noisy classifier layout (default: profile's)")
    parser.add_argument("--width", type=int, default=None, help="noisy classifier base width (supervised: 64)")
    parser.add_argument("--input-size", type=int, default=None,
                        help="classifier input, a multiple of data.image_size (default: profile's; supervised 128)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: CUDA when available)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--probs-out", type=Path, default=None,
                        help="write each validation and test image's per-type probabilities here (CSV)")
    args = parser.parse_args(argv)
    if args.model == "supervised" and args.input_size is None:
        args.input_size = SUPERVISED_SIZE
    try:
        params, config, recipe = _setup(args)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    seed = params_seed(params)
    train = load_split(args.manifest, "train", config.input_size)
    val = load_split(args.manifest, "val", config.input_size)
    test = load_split(args.manifest, "test", config.input_size)
    pos_weight = pos_weight_from_labels(train.labels)
    batches = batches_from_dataset(train, batch_size=recipe.batch_size, seed=seed + 1)  # as train_diffusion
    torch.manual_seed(seed)
    if args.model == "noisy":
        model = NoisyClassifier(config)

        def probs(dataset):
            return predict_proba(model, ordered_batches(dataset, batch_size=recipe.batch_size), device=device, t=0)
    else:
        model = DiagnosisResNet(ClassifierConfig(arch="resnet18", width=64, image_size=config.input_size,
                                                 num_classes=len(OUTLIER_CLASSES))).to(device)

        def probs(dataset):
            return supervised_probs(model, dataset, device)

    curve: list[dict] = []
    began = time.perf_counter()

    def on_log(step: int, metrics: dict[str, float]) -> None:
        if step % args.eval_every == 0 and step < recipe.steps:
            row = {"step": step, "seconds": round(time.perf_counter() - began), **aurocs(*probs(val))}
            model.train()
            curve.append(row)
            print(json.dumps(row), flush=True)

    if args.model == "noisy":
        model = train_noisy_classifier(model, batches, device=device, seed=seed, progress=False, pos_weight=pos_weight,
                                       on_log=on_log, log_every=1, **recipe.train_kwargs())
    else:
        train_supervised(model, batches, recipe=recipe, pos_weight=pos_weight, device=device, on_log=on_log)
    seconds = time.perf_counter() - began
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "profile": params["profile"],
              "classifier": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe),
              "train_seconds": round(seconds), "parameters": sum(p.numel() for p in model.parameters()),
              "curve": curve}
    rows = []
    for name, dataset in (("val", val), ("test", test)):
        p, labels = probs(dataset)
        result[name] = aurocs(p, labels)
        rows += [{"image_id": i, "split": name, **dict(zip(OUTLIER_CLASSES, map(float, row)))}
                 for i, row in zip(dataset.ids, p)]
    print(json.dumps({k: result[k] for k in ("train_seconds", "parameters", "val", "test")}, indent=1))
    if args.out is not None:
        write_json(args.out, result)
    if args.probs_out is not None:
        with atomic_path(args.probs_out) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
