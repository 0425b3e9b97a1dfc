"""params.yaml loading: a base configuration plus a named size profile merged on top.

``params.yaml`` holds every section (``data``, ``diffusion``, ``detection`` ...) at the size of
the ``tiny`` profile, and ``profiles.<name>`` holds overrides for ``cpu`` and ``gpu``. The
selected profile is ``profile:`` in params.yaml (``dvc exp run -S profile=cpu``). A
``sweep_best.yaml`` written by ``dermclean sweep`` overrides ``detection`` last (docs/method.md,
"Precedence of detection parameters").
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dermclean.errors import ConfigError, PathNotFound

T = TypeVar("T")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in recursively (override wins on leaves)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_params(path: str | os.PathLike[str] = "params.yaml", *, profile: str | None = None,
                overrides: list[str | os.PathLike[str]] | None = None) -> dict[str, Any]:
    """Load ``params.yaml``, apply ``profiles[profile]`` and then each existing override file.

    Returns the effective parameters with ``profile`` set to the one applied. Raises ``ConfigError``
    naming the file when the profile does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise PathNotFound(f"params file {path} not found; run from the repository root or pass --params")
    raw = yaml.safe_load(path.read_text()) or {}
    profiles = raw.pop("profiles", {}) or {}
    name = profile or raw.get("profile", "tiny")
    if name not in profiles and name != "base":
        raise ConfigError(f"{path}: profile {name!r} not found; expected one of {sorted(profiles)}")
    params = deep_merge(raw, profiles.get(name, {}))
    params["profile"] = name
    for extra in overrides or []:
        extra = Path(extra)
        if extra.is_file():
            params = deep_merge(params, yaml.safe_load(extra.read_text()) or {})
    return params


def params_seed(params: dict[str, Any]) -> int:
    """The top-level ``seed`` of the effective params (0 when absent): the one seed every stage reads."""
    return int(params.get("seed", 0))


def from_dict(cls: type[T], data: dict[str, Any] | None, *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys with a message naming them, and a value
    the dataclass refuses as a :class:`ConfigError` naming ``where``."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown keys {unknown}; expected a subset of {sorted(names)}")
    try:
        return cls(**data)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def params_parser(description: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with ``--params``, ``--profile`` and ``--manifest`` (the prepared
    manifest), which every benchmark reading the pipeline's data and params takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default=None, help="params profile (default: params.yaml's `profile`)")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    return parser
