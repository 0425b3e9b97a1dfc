"""Tracking errors, importable without importing MLflow (the CLI lists them as user errors)."""

from __future__ import annotations

from dermclean.errors import UsageError


class ModelNotFound(UsageError, FileNotFoundError):
    """No model at the given path or URI; the message says how to get one."""
