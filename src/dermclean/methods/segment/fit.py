"""Training of the artifact segmenter from the effective params (what ``train_segmenter`` and
``benchmarks/lofo_segment.py`` run).

The ``segment`` section: ``model`` (:class:`~dermclean.methods.segment.model.SegmenterConfig`),
``data`` (:class:`~dermclean.methods.segment.batches.SegmentDataConfig`) and ``train``
(:class:`~dermclean.methods.segment.train.SegmentTrainConfig`), with the top-level ``seed``. With
``segment.model.members`` N > 1, N networks are trained one after the other, network ``i`` with seed
``seed + i`` (the first is the single model of the same section), and saved as one ensemble.
Checkpoints: ``checkpoints/<key>/`` per network, ``key`` hashing the section (``members`` aside), the
network's seed and the manifest.
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
from dermclean.methods.segment.model import SEGMENTER_KIND, SegmenterConfig, join_segmenters, network_fields
from dermclean.methods.segment.train import SegmentTrainConfig, train_segmenter
from dermclean.modelio import load_model_dir, save_model_dir
from dermclean.proof.real_artifacts import ArtifactBank

SECTION_KEYS = ("model", "data", "train")


@dataclass
class SegmentFit:
    """The trained segmenter (eval mode; an ensemble with ``members`` > 1), its configs and the figures of
    the run."""

    model: torch.nn.Module
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
    (:func:`~dermclean.methods.segment.real_bank.confident_bank`). ``on_log(step, metrics)`` hears every
    network's training, the second's and later ones' metrics named ``member<i>_<name>``."""
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
                                                      weak=data_cfg.weak_fraction > 0
                                                      or data_cfg.labelled_background_fraction > 0)
    bank_key = [[b.artifact, [[c.source_id, int(c.mask.sum())] for c in b.cutouts]] for b in pasted]
    losses: list[list[float]] = []

    def log(step: int, m: dict[str, float]) -> None:
        losses[-1].append(m["loss"])
        member = len(losses) - 1
        if on_log is not None:
            on_log(step, {(f"member{member}_{k}" if member else k): v for k, v in m.items()})

    networks = []
    for member in range(model_cfg.members):
        member_seed = seed + member
        batches = SegmentBatches(clean, weak_images, labels, batch_size=train_cfg.batch_size, seed=member_seed,
                                 config=data_cfg, banks=pasted)
        key = checkpoint_key({"segment": {"model": network_fields(model_cfg), "data": dataclasses.asdict(data_cfg),
                                          "train": dataclasses.asdict(train_cfg)}, "seed": member_seed,
                              **({"banks": bank_key} if bank_key else {})}, manifest)
        which = f" (network {member + 1} of {model_cfg.members}, seed {member_seed})" if model_cfg.members > 1 else ""
        print(f"train_segmenter: {len(clean)} clean and {len(weak_images)} labelled train images at "
              f"{model_cfg.image_size} px on {device}{which}; checkpoints in {checkpoints / key}")
        losses.append([])
        networks.append(train_segmenter(batches, model_cfg, train_cfg, checkpoint_dir=checkpoints / key,
                                        device=device, seed=member_seed, on_log=log, progress=progress))
    model = join_segmenters(networks)
    finals = [run[-1] for run in losses if run]
    metrics = {"final_loss": float(sum(finals) / len(finals)) if finals else None, "steps": train_cfg.steps,
               "members": model_cfg.members, "train_images_clean": len(clean),
               "train_images_labelled": len(weak_images),
               "parameters": sum(p.numel() for p in model.parameters()), "device": str(device)}
    return SegmentFit(model=model, model_config=model_cfg, data_config=data_cfg, train_config=train_cfg,
                      metrics=metrics)


def join_segmenter_folders(folders: Sequence[Path], out: Path) -> Path:
    """Save the segmenters in ``folders`` (single networks of one shape, trained apart) as one ensemble
    model folder ``out`` (created; refused when it exists); ``meta.joined_from`` lists the folders."""
    if out.exists():
        raise FileExistsError(f"{out} exists; join_segmenter_folders writes a new folder")
    networks, metas = [], []
    for folder in folders:
        module, _, meta = load_model_dir(folder, expect_kind=SEGMENTER_KIND)
        networks.append(module)
        metas.append(meta)
    joined = join_segmenters(networks)
    meta = {"model": "segmenter", "joined_from": [str(f) for f in folders], "member_meta": metas}
    save_model_dir(out, kind=SEGMENTER_KIND, config=joined.config, module=joined, meta=meta)
    return out
