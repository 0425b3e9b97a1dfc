"""Model outputs of images a detector has already mapped, so that fitting and detecting map each image once.

The ``detect`` stage fits a bundle's pixel threshold, image score and flag thresholds on the
validation split, one pass each, then a fused bundle's calibrations on the same clean images through
both members, then detects over the whole manifest, validation included; ``evaluate_detection`` maps
the same test images through a bundle alone and again as a member of the fused one. A
:class:`MapMemo` shared by those detectors keeps each image's model-resolution map and per-type scores
the first time they are computed and hands them back afterwards.

An entry is keyed by the image's pixels (shape, dtype and bytes: two files with the same name are not
confused, a repainted image is a new one) and by the detector's identity (:func:`detector_identity`:
its kind, the configuration fields that shape its outputs, the device and every weight of its models),
so detectors loaded from different copies of the same bundle share entries and a changed setting
never reads another's. What is derived from the map afterwards (resizing to the input, the image
score, the mask at the threshold) is recomputed each time, since fitting changes it.

The maps are functions of the image alone (the image-conditioned sampler's noise is seeded, DDIM
inversion draws none), so an entry is what running the model again would give, up to the float
rounding of another batch size; the exception is the per-type scores of a guided bundle without a
noise-aware classifier, whose noise draw depends on the batch position: they are the first pass's.

Entries stop being added once ``max_bytes`` is reached (none is evicted), and :meth:`MapMemo.frozen`
reads without adding (a pass over a large manifest whose images will not be asked for again).

Each entry keeps what computing it cost (its batch's seconds per image); a hit adds that to
:attr:`MapMemo.reused_seconds`, and the timings of evaluation and detection (:func:`timed_detect`)
add what :func:`reused_seconds` grew by, so a reported seconds-per-image stays the cost of mapping an image
whether or not this run had mapped it before.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

OUTPUT_NEUTRAL = ("batch_size", "fpr_budget", "threshold_rule", "threshold_confidence", "image_score", "score_quantile",
                  "map_model_images", "eval_max_images")
"""Detection settings that do not change a detector's maps or per-type scores (every other one is in the key)."""


def detector_identity(detector: Any) -> bytes:
    """Digest of what makes a detector's model outputs: kind, output-shaping config, device, all weights."""
    h = hashlib.blake2b(digest_size=20)
    config = {k: v for k, v in sorted(detector.config.to_dict().items()) if k not in OUTPUT_NEUTRAL}
    h.update(repr((detector.detector_kind, config, str(detector.device))).encode())
    for component in (detector.unet, detector.classifier):
        h.update(b"|component|")
        if component is None:
            continue
        for name, tensor in component.module.state_dict().items():
            h.update(name.encode())
            h.update(str(tuple(tensor.shape)).encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.digest()


def image_digest(image: np.ndarray, *, prefix: bytes = b"") -> bytes:
    """Digest of an image's pixels (shape, dtype and bytes) after ``prefix``: two files with the same
    pixels share it, two with the same name and other pixels do not."""
    pixels = np.ascontiguousarray(image)
    h = hashlib.blake2b(prefix, digest_size=20)
    h.update(repr((pixels.shape, pixels.dtype.str)).encode())
    h.update(pixels.tobytes())
    return h.digest()


class MapMemo:
    """Model-resolution maps ``(S, S)`` and per-type scores ``(3,)`` by detector identity and image pixels."""

    def __init__(self, *, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.reused_seconds = 0.0
        self._store = True
        self._entries: dict[bytes, tuple[torch.Tensor, torch.Tensor, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(identity: bytes, image: np.ndarray) -> bytes:
        return image_digest(image, prefix=identity)

    def get(self, key: bytes) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One image's map and type scores, or None (counted as a miss: the caller computes them)."""
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self.reused_seconds += found[2]
        return found[0], found[1]

    def put(self, key: bytes, anomaly_map: torch.Tensor, types: torch.Tensor, *, seconds: float) -> None:
        """Keep copies of one image's outputs and what computing them cost, unless frozen or the budget
        is spent."""
        size = anomaly_map.element_size() * anomaly_map.nelement() + types.element_size() * types.nelement()
        if not self._store or key in self._entries or self.nbytes + size > self.max_bytes:
            return
        self._entries[key] = (anomaly_map.detach().clone(), types.detach().clone(), float(seconds))
        self.nbytes += size

    @contextmanager
    def frozen(self) -> Iterator["MapMemo"]:
        """Read entries without adding any inside the block."""
        before, self._store = self._store, False
        try:
            yield self
        finally:
            self._store = before


def detectors_of(detector: Any) -> list[Any]:
    """The model-running detectors inside ``detector``: itself, or a fused detector's members."""
    members = getattr(detector, "detectors", None)
    if members is None:
        return [detector]
    return [d for m in members for d in detectors_of(m)]


def reused_seconds(detector: Any) -> float:
    """What the maps ``detector`` (or a fused one's members) read from memos cost to compute, so far."""
    memos = {id(m): m for d in detectors_of(detector) if (m := getattr(d, "memo", None)) is not None}
    return sum(m.reused_seconds for m in memos.values())


def timed_detect(detector: Any, images: Any, names: Any = None) -> tuple[list[Any], float]:
    """``detector.detect(images, names)`` and the seconds it cost, maps read from a memo counted at what
    computing them cost (so a seconds-per-image does not depend on what this run had mapped before)."""
    start, reused = time.perf_counter(), reused_seconds(detector)
    results = detector.detect(images, names)
    return results, time.perf_counter() - start + reused_seconds(detector) - reused


def share_memo(detectors: Any, memo: MapMemo | None) -> MapMemo | None:
    """Give every model-running detector in ``detectors`` (fused ones' members included) ``memo``;
    ``None`` takes it away. Detectors without one (the classical rules) are left alone."""
    for detector in detectors:
        for inner in detectors_of(detector):
            if hasattr(inner, "memo"):
                inner.memo = memo
    return memo


@contextmanager
def remembering(detectors: Any, *, max_bytes: int = 1 << 30) -> Iterator[MapMemo]:
    """One :class:`MapMemo` shared by ``detectors`` inside the block, taken away afterwards."""
    detectors = list(detectors)
    memo = share_memo(detectors, MapMemo(max_bytes=max_bytes))
    try:
        yield memo
    finally:
        share_memo(detectors, None)
