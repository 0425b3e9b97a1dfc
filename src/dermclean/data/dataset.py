"""A torch ``Dataset`` over manifest rows, yielding named :class:`Sample` records.

Images are loaded with :func:`dermclean.data.images.load_rgb` (EXIF, mode checks), resized to
``size x size`` and cached in memory as float tensors (the data sets here are small: 2,000 images at
128 px are ~400 MB in float32; at 64 px ~100 MB).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from dermclean.constants import OUTLIER_CLASSES, SPLITS
from dermclean.data.images import load_rgb, to_tensor
from dermclean.data.manifest import image_paths, read_manifest


@dataclass(kw_only=True)
class Sample:
    """One row: ``image`` (3,S,S) in [-1,1]; ``labels`` (3,) float for ``OUTLIER_CLASSES``, NaN = unknown;
    ``melanoma`` 0/1 (-1 when unknown); ``index`` the row's index label in the manifest frame."""

    image: torch.Tensor
    labels: torch.Tensor
    melanoma: int
    image_id: str
    index: int


@dataclass(kw_only=True)
class SampleBatch:
    """Stacked samples: ``image`` (B,3,S,S), ``labels`` (B,3) with NaN, ``melanoma`` (B,) long, ``index`` (B,) long."""

    image: torch.Tensor
    labels: torch.Tensor
    melanoma: torch.Tensor
    image_id: list[str]
    index: torch.Tensor

    def to(self, device: torch.device | str) -> "SampleBatch":
        return SampleBatch(image=self.image.to(device), labels=self.labels.to(device),
                           melanoma=self.melanoma.to(device), image_id=self.image_id, index=self.index.to(device))


def collate_samples(samples: list[Sample]) -> SampleBatch:
    """``DataLoader(collate_fn=collate_samples)``: stack a list of :class:`Sample` into a batch."""
    return SampleBatch(image=torch.stack([s.image for s in samples]),
                       labels=torch.stack([s.labels for s in samples]),
                       melanoma=torch.tensor([s.melanoma for s in samples], dtype=torch.long),
                       image_id=[s.image_id for s in samples],
                       index=torch.tensor([s.index for s in samples], dtype=torch.long))


class ManifestDataset(Dataset):
    """Rows of ``df`` (a manifest living at ``manifest_path``) as :class:`Sample` of side ``size``."""

    def __init__(self, df: pd.DataFrame, manifest_path: str | os.PathLike[str], *, size: int,
                 min_size: int = 1, max_size: int = 8192) -> None:
        if size < 1:
            raise ValueError(f"ManifestDataset: size={size}; expected a positive side length")
        self.df = df
        self.manifest_path = Path(manifest_path)
        self.size = int(size)
        self.min_size, self.max_size = min_size, max_size
        self.paths = image_paths(df, manifest_path)
        labels = df[list(OUTLIER_CLASSES)].astype("Float32").to_numpy(dtype="float32", na_value=math.nan)
        self.labels = torch.from_numpy(labels)
        self.melanoma = [-1 if pd.isna(v) else int(v) for v in df["melanoma"]]
        self.ids = [str(v) for v in df["image_id"]]
        self.indices = [int(i) for i in df.index]
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> torch.Tensor:
        """The (3, size, size) tensor of row ``i`` (position), decoded once then cached."""
        if i not in self._cache:
            rgb = load_rgb(self.paths[i], min_size=self.min_size, max_size=self.max_size)
            self._cache[i] = to_tensor(rgb, self.size)
        return self._cache[i]

    def __getitem__(self, i: int) -> Sample:
        return Sample(image=self.image(i), labels=self.labels[i].clone(), melanoma=self.melanoma[i],
                      image_id=self.ids[i], index=self.indices[i])


def load_split(manifest_path: str | os.PathLike[str], split: str, size: int) -> ManifestDataset:
    """The rows of the manifest at ``manifest_path`` whose ``split`` is ``split`` (index = manifest row)."""
    if split not in SPLITS:
        raise ValueError(f"load_split: split {split!r}; expected one of {list(SPLITS)}")
    df = read_manifest(manifest_path)
    rows = df[df["split"].eq(split).fillna(False).astype(bool)]
    if rows.empty:
        raise ValueError(f"{manifest_path}: no rows in split {split!r}; run the prepare stage (data.splits)")
    return ManifestDataset(rows, manifest_path, size=size)
