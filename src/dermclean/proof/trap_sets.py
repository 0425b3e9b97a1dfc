"""The trap set's three passes, one DVC stage each: paint, detect, clean.

1. :func:`paint_trap_set`: the controlled shortcut of :mod:`dermclean.proof.trap` painted once from
   the raw manifest (``proof.trap_*``; the renderer style is held out of removal training).
2. :func:`detect_trap_set`: one detection pass over its train+val images (the ``detect`` contract)
   with the bundle ``detection.pipeline_detector`` names, the one whose masks the ``clean`` stage
   uses, so every removal method fills the same masks.
3. :func:`clean_trap_sets`: the painted train+val images cleaned inside those masks by every method
   of ``removal.methods`` (the ``clean`` contract) into ``<out>/<method>/images`` with a manifest
   beside them: the trap training set is painted first and then cleaned, as a cleaning method
   meets a shortcut in practice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dermclean.clean import run_clean_dir
from dermclean.config import params_seed
from dermclean.data.manifest import read_manifest, write_manifest
from dermclean.detection.contract import run_detect_dir
from dermclean.errors import ConfigError
from dermclean.io import atomic_path
from dermclean.proof.trap import MANIFEST, TRAIN_IMAGES, TrapSet, make_trap_split
from dermclean.removal.engine import removal_config

PIPELINE_DETECTORS = ("guided", "imagecond", "segment", "fused")


def paint_trap_set(params: dict[str, Any], manifest: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> TrapSet:
    """Paint ``params["proof"]``'s trap set from ``manifest`` into ``out_dir`` (see :mod:`dermclean.proof.trap`)."""
    proof = params["proof"]
    manifest = Path(manifest)
    return make_trap_split(read_manifest(manifest), manifest_path=manifest, out_dir=Path(out_dir),
                           artifact=proof["trap_artifact"], strength=float(proof["trap_strength"]),
                           seed=params_seed(params), heldout_style=proof.get("trap_style"),
                           artifact_with=proof.get("trap_with", "melanoma"), size=proof.get("trap_size"))


def pipeline_detector(params: dict[str, Any], *, guided: Path, imagecond: Path, segment: Path | None = None,
                      fused: Path | None = None) -> Path:
    """The detector bundle ``detection.pipeline_detector`` names (``guided``, ``imagecond``, ``segment`` or
    ``fused``)."""
    chosen = (params.get("detection") or {}).get("pipeline_detector", "guided")
    if chosen not in PIPELINE_DETECTORS:
        raise ConfigError(f"detection.pipeline_detector is {chosen!r}; expected one of {PIPELINE_DETECTORS}")
    found = {"guided": guided, "imagecond": imagecond, "segment": segment, "fused": fused}[chosen]
    if found is None:
        raise ConfigError(f"detection.pipeline_detector is {chosen!r} but no {chosen} bundle was given")
    return found


def has_trap_set(trap_dir: str | os.PathLike[str]) -> bool:
    """False for the folder ``trap_paint`` writes with ``proof.trap_artifact: null`` (no manifest)."""
    return (Path(trap_dir) / MANIFEST).is_file()


def _nothing(out_dir: Path, owner: str) -> None:
    """An empty output folder, for the stages after a ``trap_paint`` that painted nothing."""
    with atomic_path(out_dir, owner=owner) as tmp:
        tmp.mkdir()


def detect_trap_set(trap_dir: str | os.PathLike[str], detector: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    *, device: str | None = None) -> Path:
    """Detect on the painted train+val images of ``trap_dir``; the ``detect`` contract in ``out_dir``
    (an empty folder when there is no trap set)."""
    if not has_trap_set(trap_dir):
        _nothing(Path(out_dir), "detect")
        return Path(out_dir)
    out, _ = run_detect_dir(Path(trap_dir) / TRAIN_IMAGES, out_dir, model=str(detector), device=device, overwrite=True)
    return out


def clean_trap_sets(params: dict[str, Any], trap_dir: str | os.PathLike[str], detections: str | os.PathLike[str],
                    out_dir: str | os.PathLike[str], *, models: dict[str, Path | None],
                    device: str | None = None) -> dict[str, Path]:
    """Clean the painted train+val images of ``trap_dir`` inside ``detections/masks`` with every method of
    ``removal.methods`` (``models[method]``: its model folder, ``None`` for Telea). Writes
    ``out_dir/<method>/images/`` (the ``clean`` contract) and ``out_dir/<method>/manifest.csv``, all
    built in one temporary folder (empty without a trap set); returns method -> manifest path."""
    if not has_trap_set(trap_dir):
        _nothing(Path(out_dir), "trap_clean")
        return {}
    removal = removal_config(params)
    trap_dir, out_dir = Path(trap_dir), Path(out_dir)
    biased = read_manifest(trap_dir / MANIFEST)
    train_val = biased[biased["split"].isin(["train", "val"])].copy()
    manifests = {}
    with atomic_path(out_dir, owner="trap_clean") as tmp:
        tmp.mkdir()
        for method in removal.methods:
            model = models.get(method)
            print(f"trap set: cleaning {len(train_val)} painted train/val images with {method}", flush=True)
            run_clean_dir(trap_dir / TRAIN_IMAGES, tmp / method / "images", method=method,
                          masks_dir=Path(detections) / "masks", model=str(model) if model is not None else None,
                          device=device, config=removal, progress=False)
            rows = train_val.copy()
            rows["image_path"] = [f"images/{i}.png" for i in rows["image_id"]]
            rows["source"] = rows["source"].astype(str) + f"+{method}"
            write_manifest(rows, tmp / method / MANIFEST)
            manifests[method] = out_dir / method / MANIFEST
    return manifests
