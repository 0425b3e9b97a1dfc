"""Batch sources of the diffusion training loop: :class:`DiffusionBatch` and seeded, resumable batches over a
``ManifestDataset`` (:func:`batches_from_dataset`), one ordered pass for evaluation, and :func:`endless`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from dermclean.data.dataset import collate_samples


@dataclass(kw_only=True)
class DiffusionBatch:
    """One training batch: ``target`` (B,C,H,W) in [-1, 1]; ``labels`` (B,K) multi-hot, NaN = unknown;
    ``cond_image`` (B,C',H,W) in [-1, 1] for image-conditioned models; ``weight`` (B,1,H,W) >= 0,
    per-pixel loss weights (None: every pixel alike)."""

    target: torch.Tensor
    labels: torch.Tensor | None = None
    cond_image: torch.Tensor | None = None
    weight: torch.Tensor | None = None


class DatasetBatches:
    """Shuffled batches of a map-style dataset of ``Sample`` records, as :class:`DiffusionBatch`.

    Epoch ``e`` uses the permutation drawn from ``seed`` and ``e``, so ``iter_from(step)`` restarts at
    any global batch index without loading the skipped images (exact resume). Full batches only,
    unless the dataset is smaller than one batch.
    """

    def __init__(self, dataset: Any, *, batch_size: int, seed: int, labels: bool = True,
                 num_workers: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("batches_from_dataset: the dataset is empty; expected at least one sample")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.labels, self.num_workers = labels, num_workers
        self.drop_last = len(dataset) >= batch_size
        n = len(dataset)
        self.per_epoch = n // batch_size if self.drop_last else 1

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[DiffusionBatch]:
        return self._epoch(0, 0)

    def iter_from(self, step: int) -> Iterator[DiffusionBatch]:
        """Endless batches starting at global batch index ``step``."""
        epoch, offset = divmod(step, self.per_epoch)
        while True:
            yield from self._epoch(epoch, offset)
            epoch, offset = epoch + 1, 0

    def _epoch(self, epoch: int, offset: int) -> Iterator[DiffusionBatch]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.dataset), generator=gen)[offset * self.batch_size:].tolist()
        loader = DataLoader(Subset(self.dataset, order), batch_size=self.batch_size, shuffle=False,
                            drop_last=self.drop_last, num_workers=self.num_workers,
                            collate_fn=collate_samples)
        for batch in loader:
            yield DiffusionBatch(target=batch.image, labels=batch.labels if self.labels else None)


def batches_from_dataset(dataset: Any, *, batch_size: int, seed: int, labels: bool = True,
                         num_workers: int = 0) -> DatasetBatches:
    """Seeded, shuffled, resumable :class:`DiffusionBatch` source over a ``ManifestDataset``."""
    return DatasetBatches(dataset, batch_size=batch_size, seed=seed, labels=labels, num_workers=num_workers)


def ordered_batches(dataset: Any, *, batch_size: int, labels: bool = True,
                    num_workers: int = 0) -> Iterator[DiffusionBatch]:
    """One pass over every sample of ``dataset`` in order (for evaluation), as :class:`DiffusionBatch`."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_samples)
    for batch in loader:
        yield DiffusionBatch(target=batch.image, labels=batch.labels if labels else None)


def endless(batches: Iterable[DiffusionBatch], start: int = 0) -> Iterator[DiffusionBatch]:
    """Cycle ``batches`` forever from global batch index ``start``.

    Uses ``batches.iter_from(start)`` when the source has it; otherwise re-iterates the source each
    epoch and skips ``start`` batches (which loads them).
    """
    if hasattr(batches, "iter_from"):
        yield from batches.iter_from(start)
        return
    skipped = 0
    while True:
        empty = True
        for batch in batches:
            empty = False
            if skipped < start:
                skipped += 1
                continue
            yield batch
        if empty:
            raise ValueError("the batch source yielded no batches; expected at least one")
