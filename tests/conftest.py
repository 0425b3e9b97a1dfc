"""Shared test fixtures: repository paths, the real ISIC set (read in place), telemetry off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dermclean.env import disable_telemetry

disable_telemetry()
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO_ROOT.parent / "shared" / "data" / "isic2017-train-256").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real ISIC 2017 set beside the repository, read in place; skip when absent."""
    if not (REAL_DATA / "labels.csv").is_file():
        pytest.skip(f"real data not found at {REAL_DATA} (expected ../shared/data/isic2017-train-256 beside the repo)")
    return REAL_DATA
