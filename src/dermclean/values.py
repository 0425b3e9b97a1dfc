"""Plain values for JSON files and MLflow: finite numbers, NaN as ``None``, nested dicts flattened.

- :func:`is_finite`: is a value a finite number (``None``, NaN, infinities and text that is no
  number are not);
- :func:`finite_or_none` / :func:`json_ready`: NaN and infinities become ``None`` and NumPy scalars
  Python numbers, so ``json.dumps`` writes strict JSON (one value / a nested record);
- :func:`flatten`: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, which MLflow params
  (:func:`dermclean.tracking.flatten_params`) and metrics (:func:`flat_metrics`) are made of.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def is_finite(value: Any) -> bool:
    """True when ``float(value)`` is a finite number; False for ``None``, NaN, infinities and non-numbers."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python ``bool`` / ``int`` / ``float`` it holds; anything else unchanged."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def finite_or_none(value: Any) -> Any:
    """``None`` for a NaN or infinite float; any other value unchanged."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def json_ready(value: Any) -> Any:
    """A copy of ``value`` with :func:`plain` numbers, non-finite floats as ``None`` and string keys,
    through nested dicts, lists and tuples (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return finite_or_none(plain(value))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> ``{"<prefix>a.b.c": leaf}``; the leaves are left as they are."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def flat_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested results -> ``{"<prefix>a.b.c": float}`` keeping the finite numbers (``bool`` as 0 / 1),
    for ``mlflow.log_metrics``."""
    return {k: float(v) for k, v in flatten(data, prefix).items() if isinstance(v, (int, float)) and is_finite(v)}
