"""Model folders: ``config.json`` + ``weights.pt`` (a state_dict) + optional side artifacts.

Nothing is ever unpickled: weights load with ``torch.load(..., weights_only=True)`` and the module
is rebuilt from its JSON config by the builder registered for its ``kind``. The same folder is what
DVC stages pass to each other, what MLflow logs as a pyfunc model's artifacts, and what
``--model PATH`` accepts on the command line.

Layout::

    model_dir/
      config.json    {"kind": "<registered kind>", "config": {...typed config...}, "meta": {...}}
      weights.pt     state_dict (EMA weights for diffusion models)
      <extra>.json   side artifacts such as threshold.json
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dermclean.errors import UsageError
from dermclean.io import atomic_path, read_json, write_json

_BUILDERS: dict[str, tuple[type, Callable[[Any], torch.nn.Module]]] = {}


def register(kind: str, config_cls: type, builder: Callable[[Any], torch.nn.Module]) -> None:
    """Register how to rebuild a module of ``kind`` from its typed config."""
    _BUILDERS[kind] = (config_cls, builder)


def save_model_dir(path: str | os.PathLike[str], *, kind: str, config: Any, module: torch.nn.Module,
                   meta: dict[str, Any] | None = None, extras: dict[str, Any] | None = None) -> Path:
    """Write a model folder atomically (replacing an existing one). ``extras`` become ``<name>.json``."""
    path = Path(path)
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        write_json(tmp / "config.json", {"kind": kind, "config": cfg, "meta": meta or {}})
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        torch.save(state, tmp / "weights.pt")
        for name, data in (extras or {}).items():
            write_json(tmp / f"{name}.json", data)
    return path


class NotAModel(UsageError, FileNotFoundError):
    """A folder that is not a dermclean model folder (no ``config.json``)."""


class WrongModelKind(UsageError, ValueError):
    """A model folder of another kind than the one the command needs."""


def read_model_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise NotAModel(f"{path} is not a dermclean model folder: {cfg_file} is missing")
    return read_json(cfg_file)


def load_model_dir(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                   expect_kind: str | None = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Rebuild the module in ``path``; return ``(module in eval mode, typed config, meta)``."""
    _ensure_registered()
    path = Path(path)
    record = read_model_config(path)
    kind = record.get("kind")
    if expect_kind is not None and kind != expect_kind:
        raise WrongModelKind(f"{path}: model kind is {kind!r}; expected {expect_kind!r}")
    if kind not in _BUILDERS:
        raise WrongModelKind(f"{path}: unknown model kind {kind!r}; known kinds: {sorted(_BUILDERS)}")
    config_cls, builder = _BUILDERS[kind]
    config = config_cls(**record["config"])
    module = builder(config)
    state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return module.to(device).eval(), config, record.get("meta", {})


def read_extra(path: str | os.PathLike[str], name: str) -> Any | None:
    file = Path(path) / f"{name}.json"
    return read_json(file) if file.is_file() else None


def _ensure_registered() -> None:
    """Import the modules that register builders (kept lazy so importing modelio stays cheap)."""
    for module in ("dermclean.diffusion.unet", "dermclean.methods.guided.noisy_classifier",
                   "dermclean.classifier.model", "dermclean.methods.segment.model"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
