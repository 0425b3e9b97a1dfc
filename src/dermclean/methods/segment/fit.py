"""Training of the artifact segmenter from the effective params (what ``train_segmenter`` and
``benchmarks/lofo_segment.py`` run).

The ``segment`` section: ``model`` (:class:`~dermclean.methods.segment.model.SegmenterConfig`),
``data`` (:class:`~dermclean.methods.segment.batches.SegmentDataConfig`) and ``train``
(:class:`~dermclean.methods.segment.train.SegmentTrainConfig`), with the top-level ``seed``.
Checkpoints: ``checkpoints/<key>/`` with ``key`` hashing the section, the seed and the manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dermclean.config import from_dict, params_seed
from dermclean.diffusion.checkpoints import checkpoint_key
from dermclean.errors import ConfigError
from dermclean.methods.segment.batches import SegmentBatches, SegmentDataConfig
from dermclean.methods.segment.data import load_training_images
from dermclean.methods.segment.model import SEGMENTER_KIND, Segmenter, SegmenterConfig
from dermclean.methods.segment.train import SegmentTrainConfig, train_segmenter
from dermclean.modelio import save_model_dir
from dermclean.proof.real_artifacts import ArtifactBank

SECTION_KEYS = ("model", "data", "train")


@dataclass
class SegmentFit:
    """The trained segmenter (eval mode), its configs and the figures of the run."""

    model: Segmenter
    model_config: SegmenterConfig
    data_config: SegmentDataConfig
    train_config: SegmentTrainConfig
    metrics: dict[str, Any]

    def save(self, folder: Path, *, meta: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write the model folder (kind ``segmenter``) to ``folder``; returns ``{"segmenter": folder}``."""
        meta = {"model": "segmenter", "data_config": dataclasses.asdict(self.data_config),
                "train_config": dataclasses.asdict(self.train_config), **(meta or {})}
        save_model_dir(folder, kind=SEGMENTER_KIND, config=self.model_config, module=self.model, meta=meta)
        return {"segmenter": folder}


def segment_section(params: dict[str, Any], *, where: str = "params") -> dict[str, Any]:
    """``params["segment"]``; unknown subsections refused."""
    section = params.get("segment")
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: no segment section; expected segment: {{model, data, train}}")
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"{where}: segment: unknown keys {unknown}; expected a subset of {list(SECTION_KEYS)}")
    return section


def fit_segmenter(params: dict[str, Any], manifest: Path, *, checkpoints: Path, device: torch.device | str,
                  exclude_families: Sequence[str] | None = None, weak: bool = True, steps: int | None = None,
                  banks: Sequence[ArtifactBank] = (), progress: bool = True,
                  on_log: Callable[[int, dict[str, float]], None] | None = None, where: str = "params") -> SegmentFit:
    """Train the segmenter on the ``train`` images of ``manifest``, resuming from ``checkpoints`` when the
    params match. ``exclude_families`` (a held-out fold), ``weak=False`` (no weakly labelled images) and
    ``steps`` override the section for studies; ``banks``: real cut-outs for ``data.real_paste_fraction``
    (:func:`~dermclean.methods.segment.real_bank.confident_bank`)."""
    section, seed = segment_section(params, where=where), params_seed(params)
    model_cfg = from_dict(SegmenterConfig, section.get("model", {}), where=f"{where}: segment.model")
    data = {**section.get("data", {}), **({"exclude_families": list(exclude_families)} if exclude_families else {}),
            **({} if weak else {"weak_fraction": 0.0})}
    data_cfg = from_dict(SegmentDataConfig, data, where=f"{where}: segment.data")
    train = {**section.get("train", {}), **({"steps": steps} if steps else {})}
    train_cfg = from_dict(SegmentTrainConfig, train, where=f"{where}: segment.train")
    pasted = [b for b in banks if b.cutouts] if data_cfg.real_paste_fraction > 0 else []
    if data_cfg.real_paste_fraction > 0 and not pasted:
        raise ConfigError(f"{where}: segment.data.real_paste_fraction is {data_cfg.real_paste_fraction} but no real "
                          f"cut-outs were given (a trained segmenter cuts them: benchmarks/lofo_segment.py "
                          f"--paste-from); expected 0 here")
    clean, weak_images, labels = load_training_images(manifest, size=model_cfg.image_size,
                                                      weak=data_cfg.weak_fraction > 0)
    batches = SegmentBatches(clean, weak_images, labels, batch_size=train_cfg.batch_size, seed=seed, config=data_cfg,
                             banks=pasted)
    bank_key = [[b.artifact, [[c.source_id, int(c.mask.sum())] for c in b.cutouts]] for b in pasted]
    key = checkpoint_key({"segment": {"model": dataclasses.asdict(model_cfg), "data": dataclasses.asdict(data_cfg),
                                      "train": dataclasses.asdict(train_cfg)}, "seed": seed,
                          **({"banks": bank_key} if bank_key else {})}, manifest)
    print(f"train_segmenter: {len(clean)} clean and {len(weak_images)} labelled train images at "
          f"{model_cfg.image_size} px on {device}; checkpoints in {checkpoints / key}")
    losses: list[float] = []

    def log(step: int, m: dict[str, float]) -> None:
        losses.append(m["loss"])
        if on_log is not None:
            on_log(step, m)

    model = train_segmenter(batches, model_cfg, train_cfg, checkpoint_dir=checkpoints / key, device=device,
                            seed=seed, on_log=log, progress=progress)
    metrics = {"final_loss": losses[-1] if losses else None, "steps": train_cfg.steps,
               "train_images_clean": len(clean), "train_images_labelled": len(weak_images),
               "parameters": sum(p.numel() for p in model.parameters()), "device": str(device)}
    return SegmentFit(model=model, model_config=model_cfg, data_config=data_cfg, train_config=train_cfg,
                      metrics=metrics)
