"""Checkpoints of the training loops: the folder key of a stage's params, atomic save / safe load, the config
fingerprint that refuses a mismatched resume, the RNG state, and the progress bar."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from dermclean.io import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_key(stage_params: dict[str, Any], manifest: Path) -> str:
    """Folder name for a stage's checkpoints: a hash of its params and the manifest's bytes.

    A changed config or dataset starts fresh; a rerun with the same ones resumes (or finds the
    final checkpoint and trains nothing).
    """
    blob = json.dumps(stage_params, sort_keys=True).encode() + hashlib.md5(Path(manifest).read_bytes()).digest()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict (tensors, numbers, strings only) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (loaded with ``weights_only=True``), or None when absent."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def fingerprint(*configs: Any) -> str:
    """A stable JSON string of dataclass configs, stored in checkpoints to refuse a mismatched resume."""
    parts = [dataclasses.asdict(c) if dataclasses.is_dataclass(c) else c for c in configs]
    return json.dumps(parts, sort_keys=True, default=str)


def check_fingerprint(state: dict[str, Any], expected: str, path: Path) -> None:
    if state.get("fingerprint") != expected:
        raise ValueError(f"checkpoint {path} was written for a different model or training config "
                         f"({state.get('fingerprint')}); expected {expected}. Delete it or use another "
                         "checkpoint directory")


def restore_checkpoint(path: Path | None, fp: str, generator: torch.Generator, **parts: Any
                       ) -> tuple[int | None, list[float]]:
    """Load the checkpoint at ``path`` (when there is one) into ``parts`` (checkpoint key -> object with
    ``load_state_dict``, in that order) and ``generator``; returns the step it was written at (None when there is
    none) and its recent losses. Refuses a checkpoint of another config (:func:`check_fingerprint`)."""
    state = load_checkpoint(path) if path is not None else None
    if state is None:
        return None, []
    check_fingerprint(state, fp, path)
    for key, part in parts.items():
        part.load_state_dict(state[key])
    set_rng_state(generator, state["rng"])
    return int(state["step"]), [float(x) for x in state["recent_losses"]]


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(generator: torch.Generator, state: dict[str, torch.Tensor]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def progress_bar(total: int, initial: int, *, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)
