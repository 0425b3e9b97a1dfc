"""Resuming an interrupted sweep: a marker file per Tune experiment, and which experiment to resume.

Each sweep is the Tune experiment ``<storage_path>/sweep-<timestamp>`` holding ``dermclean_sweep.json``:
``{"fingerprint", "parent_run_id", "finished", "num_samples", "tracking_uri", "created"}``. The
fingerprint hashes what makes two sweeps the same (the sweep section, params' detection values, the
detector bundle's path and config, the manifest's path and modification time), so a sweep is only
ever continued with the inputs it started with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from dermclean.errors import UsageError
from dermclean.io import read_json
from dermclean.sweep.space import SweepConfig

MARKER = "dermclean_sweep.json"


class SweepError(UsageError, ValueError):
    """A sweep that cannot start, resume or finish; the message says what to do (the CLI prints it)."""


def find_resumable(storage: Path, fingerprint: str, resume: bool | None) -> str | None:
    """The newest unfinished sweep under ``storage`` to resume (see module doc), or ``None``."""
    if resume is False:
        return None
    from ray import tune

    unfinished = []
    for marker in sorted(storage.glob(f"*/{MARKER}"), key=lambda p: p.stat().st_mtime, reverse=True):
        record = read_json(marker)
        if not record.get("finished") and tune.Tuner.can_restore(str(marker.parent)):
            unfinished.append((marker.parent.name, record.get("fingerprint")))
    match = next((n for n, f in unfinished if f == fingerprint), None)
    if resume and match is None:
        if unfinished:
            raise SweepError(f"--resume: the unfinished sweeps under {storage} ({[n for n, _ in unfinished]}) were "
                             f"started with other params, detector or manifest; run without --resume for a new sweep")
        raise SweepError(f"--resume: no unfinished sweep under {storage}; run without --resume to start one")
    return match


def fingerprint_inputs(cfg: SweepConfig, default: dict[str, Any], detector_dir: Path, manifest_path: Path) -> str:
    """A short hash of the sweep's inputs (see module doc): equal fingerprints may resume each other."""
    record = {"space": dataclasses.asdict(cfg.space), "num_samples": cfg.num_samples, "metric": cfg.metric,
              "split": cfg.split, "max_images": cfg.max_images, "seed": cfg.seed,
              "include_default": cfg.include_default, "resources": cfg.resources, "default": default,
              "detector": str(detector_dir), "detector_config": read_json(detector_dir / "config.json"),
              "manifest": str(manifest_path), "manifest_mtime": manifest_path.stat().st_mtime}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]
