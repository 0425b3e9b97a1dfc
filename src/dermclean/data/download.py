"""Optional download of ISIC Archive images with the official ``isic-cli`` (needs internet).

Off by default (``data.download.enabled: false`` in params.yaml) and never run by the tests. With
``data.source: isic`` the prepare stage reads ``<data.download.out_dir>/metadata.csv`` (what
``isic image download`` writes beside the images) and, when that is absent and the download is
enabled, first runs::

    isic image download --search '<search>' --collections '<ids>' --limit <n> <out_dir>

Install the tool with ``pip install 'dermclean[isic]'``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class DownloadConfig:
    """``data.download`` in params.yaml; ``search`` uses the ISIC Archive query syntax
    (e.g. ``'diagnosis_3:"Melanoma Invasive"'``), ``collections`` comma-separated ids, ``limit`` 0 = all."""

    enabled: bool = False
    search: str = ""
    collections: str = ""
    limit: int = 0
    out_dir: str = "data/raw/isic"


def isic_download_command(config: DownloadConfig, out_dir: str | os.PathLike[str]) -> list[str]:
    """The ``isic image download`` argument list for ``config`` (no shell quoting needed)."""
    if config.limit < 0:
        raise ValueError(f"data.download.limit={config.limit}; expected 0 (all) or a positive count")
    command = ["isic", "image", "download"]
    if config.search:
        command += ["--search", config.search]
    if config.collections:
        command += ["--collections", str(config.collections)]
    if config.limit:
        command += ["--limit", str(config.limit)]
    return command + [str(out_dir)]


def download_isic(config: DownloadConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Run the download into ``out_dir``; returns ``out_dir/metadata.csv``.

    Raises ``RuntimeError`` when disabled, when ``isic`` is not installed, or when it fails.
    """
    if not config.enabled:
        raise RuntimeError("ISIC download is disabled; set data.download.enabled: true in params.yaml "
                           "(needs internet)")
    if shutil.which("isic") is None:
        raise RuntimeError("isic-cli is not installed; run: pip install 'dermclean[isic]'")
    out_dir = Path(out_dir)
    command = isic_download_command(config, out_dir)
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed with exit status {proc.returncode}")
    metadata = out_dir / "metadata.csv"
    if not metadata.is_file():
        raise RuntimeError(f"{' '.join(command)} wrote no {metadata}")
    return metadata
