"""The prepare stage: build ``<out_dir>/manifest.csv`` from the source that params.yaml chooses.

``data.source``:

* ``synthetic`` — the procedural set (``data.synthetic``) is generated into ``out_dir`` (images/,
  masks/); ``image_path`` is relative to ``out_dir``.
* ``folder`` — ``data.folder`` (relative to the repository root, e.g.
  ``../shared/data/isic2017-train-256``) is read with :func:`~dermclean.data.readers.read_folder`.
  Raw data is never copied or modified: ``image_path`` points at the external images, relative to
  the manifest (so a DVC workspace and a copy of it beside the data both work).
* ``isic`` — ``data.download.out_dir``/metadata.csv from an ``isic-cli`` download (run first when
  ``data.download.enabled`` and the metadata is absent; see :mod:`dermclean.data.download`).

Splits come from :func:`~dermclean.data.splits.assign_splits` with ``data.splits`` and ``seed``.
Everything is built in a temporary folder and renamed over ``out_dir`` (replaced if it exists),
so a failure leaves no partial output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dermclean.config import from_dict, params_seed
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.download import DownloadConfig, download_isic
from dermclean.data.manifest import coerce, relative_to_manifest, write_manifest
from dermclean.data.readers import read_folder, read_isic_metadata
from dermclean.data.splits import assign_splits, split_counts
from dermclean.data.synthetic import SyntheticConfig, generate_dataset
from dermclean.io import atomic_path

SOURCES: tuple[str, ...] = ("synthetic", "folder", "isic")


def _relative(df: pd.DataFrame, *, built_in: Path, manifest_path: Path) -> pd.DataFrame:
    """Rewrite ``image_path`` relative to ``manifest_path``; paths inside ``built_in`` (the temporary
    build folder) become relative to it, so they stay valid once it is renamed."""
    built_in = built_in.resolve()
    paths = []
    for raw in df["image_path"]:
        path = Path(str(raw))
        if not path.is_absolute():
            path = built_in / path
        path = path.resolve()
        if path.is_relative_to(built_in):
            paths.append(path.relative_to(built_in).as_posix())
        else:
            paths.append(Path(relative_to_manifest(path, manifest_path)).as_posix())
    out = df.copy()
    out["image_path"] = paths
    return out


def _read_source(params: dict[str, Any], *, repo_root: Path, build: Path) -> pd.DataFrame:
    data = params["data"]
    source = data.get("source")
    if source == "synthetic":
        config = from_dict(SyntheticConfig, {"seed": params_seed(params), **(data.get("synthetic") or {})},
                           where="data.synthetic")
        return generate_dataset(build, config)
    if source == "folder":
        return read_folder(repo_root / str(data.get("folder", "")))
    if source == "isic":
        config = from_dict(DownloadConfig, data.get("download"), where="data.download")
        out_dir = repo_root / config.out_dir
        metadata = out_dir / "metadata.csv"
        if not metadata.is_file():
            if not config.enabled:
                raise FileNotFoundError(f"{metadata} not found; download it first (data.download.enabled: true "
                                        f"needs internet and isic-cli) or use data.source: folder")
            metadata = download_isic(config, out_dir)
        return read_isic_metadata(metadata)
    raise ValueError(f"params data.source={source!r}; expected one of {list(SOURCES)}")


def prepare_dataset(params: dict[str, Any], *, repo_root: Path, out_dir: Path) -> pd.DataFrame:
    """Build ``out_dir`` (``manifest.csv`` and, for synthetic data, ``images/`` and ``masks/``).

    Returns the manifest as written (``image_path`` relative to ``out_dir``).
    """
    data = params.get("data") or {}
    if data.get("source") not in SOURCES:
        raise ValueError(f"params data.source={data.get('source')!r}; expected one of {list(SOURCES)}")
    splits = data.get("splits") or {}
    out_dir, repo_root = Path(out_dir), Path(repo_root)
    with atomic_path(out_dir) as build:
        build.mkdir(parents=True)
        df = _read_source(params, repo_root=repo_root, build=build)
        df = _relative(coerce(df, where=f"data.source={data['source']}"), built_in=build,
                       manifest_path=out_dir / "manifest.csv")
        df = assign_splits(df, val=float(splits.get("val", 0.2)), test=float(splits.get("test", 0.2)),
                           seed=params_seed(params))
        write_manifest(df, build / "manifest.csv")
    return coerce(df)


def summarize_manifest(df: pd.DataFrame) -> dict[str, Any]:
    """Counts for ``metrics/prepare.json``: images, per split, melanoma, and per flag (positive / labelled)."""
    return {
        "n_images": int(len(df)),
        "splits": split_counts(df),
        "melanoma": int(df["melanoma"].fillna(0).sum()),
        "melanoma_by_split": {k: int(v) for k, v in df.groupby("split")["melanoma"].sum().items()},
        "flags": {flag: {"positive": int(df[flag].fillna(0).sum()), "labelled": int(df[flag].notna().sum())}
                  for flag in ARTIFACT_FLAGS},
        "sources": {str(k): int(v) for k, v in df["source"].value_counts().items()},
    }

