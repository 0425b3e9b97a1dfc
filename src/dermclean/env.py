"""Process-level settings: telemetry off (no network here) and device selection."""

from __future__ import annotations

import os

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_OFFLINE": "1",
}


def disable_telemetry() -> None:
    """Turn every library's telemetry off, keeping any value the user set explicitly."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def pick_device(requested: str | None = None) -> "torch.device":  # noqa: F821
    """Return ``requested`` (e.g. ``"cpu"``, ``"cuda:0"``) or CUDA when available, else CPU."""
    import torch

    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {requested!r} asked for CUDA, but no CUDA device is available; use --device cpu")
    return device


def autocast(device: "torch.device", enabled: bool = True):  # noqa: F821
    """bf16 autocast on CUDA; a no-op context on CPU (CPU bf16 is slower on most hosts)."""
    import contextlib

    import torch

    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
