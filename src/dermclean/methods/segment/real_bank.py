"""Real artifacts as the segmenter's training signal (copy-paste).

:func:`confident_bank` cuts real artifacts of one type from the training images whose human label says
that type is present and the other types absent, along a trained segmenter's confident pixels of that
type's channel (probability at least ``threshold``; connected components in an area range, as
:func:`dermclean.proof.real_artifacts.cut_bank`). :class:`~dermclean.methods.segment.batches.SegmentBatches`
pastes them onto clean images with ``real_paste_fraction``, away from the lesion
(:func:`~dermclean.proof.real_artifacts.bank_painter`). The pasted pixels are the target, so the target
is exact for what is pasted whatever the cut's quality: a cut that misses part of an artifact pastes a
partial one, and one that takes skin with it pastes skin labelled as the artifact.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb, resize_map, to_tensor
from dermclean.data.manifest import image_paths, read_manifest
from dermclean.methods.segment.model import SEGMENTER_KIND
from dermclean.modelio import load_model_dir
from dermclean.proof.real_artifacts import ArtifactBank, cutouts_of, rows_of_type_alone


def confident_bank(model_dir: str | os.PathLike[str], manifest_path: str | os.PathLike[str], artifact: str, *,
                   split: str = "train", threshold: float = 0.5, min_area: float = 0.002, max_area: float = 0.25,
                   per_image: int = 1, device: str | torch.device = "cpu", batch_size: int = 16) -> ArtifactBank:
    """An :class:`ArtifactBank` of ``artifact`` cut from ``split`` along the segmenter in ``model_dir``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"confident_bank: threshold must be in (0, 1); got {threshold}")
    manifest_path = Path(manifest_path)
    rows = rows_of_type_alone(read_manifest(manifest_path), split, artifact)  # refuses an unknown artifact
    module, config, _ = load_model_dir(model_dir, device=device, expect_kind=SEGMENTER_KIND)
    channel = OUTLIER_CLASSES.index(artifact)
    cutouts = []
    paths = image_paths(rows, manifest_path)
    for start in range(0, len(rows), batch_size):
        images = [load_rgb(p, min_size=1) for p in paths[start:start + batch_size]]
        x = torch.stack([to_tensor(image, config.image_size) for image in images]).to(device)
        with torch.no_grad():
            probs = torch.sigmoid(module(x).float())[:, channel].cpu().numpy()
        for image, prob, image_id in zip(images, probs, rows["image_id"].iloc[start:start + batch_size]):
            mask = resize_map(prob, image.shape[:2]) >= threshold
            cutouts += cutouts_of(image, mask, source_id=str(image_id), min_area=min_area, max_area=max_area,
                                  per_image=per_image)
    return ArtifactBank(artifact=artifact, cutouts=cutouts, n_source_images=len(rows))
