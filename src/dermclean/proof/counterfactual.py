"""Counterfactual insertion (Winkler et al. 2019, JAMA Derm.; Nauta et al. 2022) with a same-shape control.

Each test image is shown to a classifier three times: as it is, with an artifact pasted in by the
insertion renderer (``painted``), and with the same mask filled with skin copied from elsewhere in
the same image (``control``, :func:`control_paste`), so any change caused merely by covering part of
the image with something that is not an artifact is measured too.

At the classifier's operating threshold ``t`` (fitted on validation data; ``p >= t`` = malignant):

- ``flip_b2m``: of the truly benign images predicted benign as they are, the share predicted
  malignant after insertion;
- ``flip_m2b``: of the truly malignant images predicted malignant, the share predicted benign;
- ``flip_rate``: the share of all images whose predicted class changes (either direction);
- ``shift_benign`` / ``shift_malignant``: the mean of ``p_after - p_before`` over benign /
  malignant images (Winkler et al.: 0.16 -> 0.54 on benign nevi with ink).

Every figure is also computed for the control; the evidence is the insertion figure next to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dermclean.classifier.train import predict_proba
from dermclean.data.images import resize_map, to_tensor
from dermclean.proof.painting import Painter
from dermclean.proof.stats import Statistic, mean_of, ratio_of

Cleaner = Callable[[list[np.ndarray]], list[np.ndarray]]
"""uint8 H x W x 3 images -> the same images cleaned (the pipeline's detector and remover)."""

LESION_RADIUS = 0.3  # of min(H, W): the centre region a control avoids copying from (the lesion)


@dataclass(frozen=True, kw_only=True)
class ControlPaste:
    """``image`` with ``mask`` filled from the same image shifted by ``shift`` (dy, dx), wrapping."""

    image: np.ndarray
    shift: tuple[int, int]


def control_paste(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, candidates: int = 32) -> ControlPaste:
    """Fill ``mask`` (bool HxW) of ``image`` (uint8 HxWx3) with skin from elsewhere in the same image.

    The source is the image rolled by a shift ``(dy, dx)`` (pixel ``(y, x)`` takes the value at
    ``((y - dy) mod H, (x - dx) mod W)``), chosen among ``candidates`` random shifts to minimise the
    share of source pixels inside the mask itself plus the share inside the central disc where the
    lesion sits. Pixels outside the mask are untouched. Deterministic for a given ``rng`` state.
    """
    mask = np.asarray(mask, dtype=bool)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"control_paste: image {image.shape} and mask {mask.shape} differ in size")
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return ControlPaste(image=image.copy(), shift=(0, 0))
    yy, xx = np.mgrid[0:h, 0:w]
    central = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 < (LESION_RADIUS * min(h, w)) ** 2
    best, best_cost = (0, 0), np.inf
    for _ in range(candidates):
        dy, dx = int(rng.integers(1, h)), int(rng.integers(1, w))
        sy, sx = (ys - dy) % h, (xs - dx) % w
        cost = mask[sy, sx].mean() + central[sy, sx].mean()
        if cost < best_cost:
            best, best_cost = (dy, dx), cost
    out = image.copy()
    out[ys, xs] = image[(ys - best[0]) % h, (xs - best[1]) % w]
    return ControlPaste(image=out, shift=best)


@dataclass(frozen=True, kw_only=True)
class InsertionSet:
    """The same test images three ways, as classifier tensors ``(N, 3, S, S)`` in ``[-1, 1]``.

    ``masks`` ``(N, S, S)`` bool: the painted artifact at the classifier's size; ``melanoma`` ``(N,)``.
    """

    artifact: str
    original: torch.Tensor
    painted: torch.Tensor
    control: torch.Tensor
    masks: np.ndarray
    melanoma: np.ndarray
    styles: list[str]
    cleaned: dict[str, torch.Tensor] | None = None  # "original"/"painted"/"control" after the pipeline's cleaning


def build_insertion_set(images: list[np.ndarray], melanoma: np.ndarray, *, artifact: str, painter: Painter,
                        size: int, seed: int, cleaner: Cleaner | None = None) -> InsertionSet:
    """Paint ``artifact`` into each uint8 image at its own resolution, build its control, resize to ``size``.

    With a ``cleaner`` (uint8 images -> the same images cleaned, e.g. the pipeline's detector and
    remover) the three versions are also kept as they come out of it (``cleaned``): what a classifier
    meant for cleaned inputs is shown when deployed behind the cleaning."""
    if len(images) != len(melanoma) or not images:
        raise ValueError(f"{len(images)} images and {len(melanoma)} labels: expected equal, non-zero counts")
    rng = np.random.default_rng(seed)
    full: dict[str, list[np.ndarray]] = {"original": [], "painted": [], "control": []}
    masks, styles = [], []
    for img in images:
        out = painter(img, rng)
        mask = np.asarray(out.mask, dtype=bool)
        full["original"].append(img)
        full["painted"].append(np.asarray(out.image, dtype=np.uint8))
        full["control"].append(control_paste(img, mask, rng).image)
        masks.append(resize_map(mask, (size, size)))
        styles.append(str(getattr(out, "style", "")))
    tensors = {k: torch.stack([to_tensor(im, size) for im in v]) for k, v in full.items()}
    cleaned = None if cleaner is None else {k: torch.stack([to_tensor(im, size) for im in cleaner(v)])
                                            for k, v in full.items()}
    return InsertionSet(artifact=artifact, original=tensors["original"], painted=tensors["painted"],
                        control=tensors["control"], masks=np.stack(masks), melanoma=np.asarray(melanoma, dtype=int),
                        styles=styles, cleaned=cleaned)


@dataclass(frozen=True, kw_only=True)
class FlipArrays:
    """Per-image indicators behind the flip figures (all ``(N,)``), so they can be bootstrapped."""

    b2m_eligible: np.ndarray
    b2m_flipped: np.ndarray
    m2b_eligible: np.ndarray
    m2b_flipped: np.ndarray
    changed: np.ndarray
    shift_benign: np.ndarray  # p_after - p_before on benign images, NaN on malignant ones
    shift_malignant: np.ndarray

    def statistics(self) -> dict[str, Statistic]:
        ones = np.ones_like(self.changed, dtype=float)
        return {"flip_b2m": ratio_of(self.b2m_flipped, self.b2m_eligible),
                "flip_m2b": ratio_of(self.m2b_flipped, self.m2b_eligible),
                "flip_rate": ratio_of(self.changed, ones),
                "shift_benign": mean_of(self.shift_benign),
                "shift_malignant": mean_of(self.shift_malignant)}

    def summary(self) -> dict[str, float]:
        idx = np.arange(self.changed.size)
        return {name: stat(idx) for name, stat in self.statistics().items()}


def flip_arrays(p_before: np.ndarray, p_after: np.ndarray, melanoma: np.ndarray, threshold: float) -> FlipArrays:
    """Flip indicators and probability shifts at ``threshold`` (``p >= threshold`` = malignant)."""
    before = np.asarray(p_before, dtype=np.float64)
    after = np.asarray(p_after, dtype=np.float64)
    y = np.asarray(melanoma).astype(bool)
    if not (before.shape == after.shape == y.shape):
        raise ValueError(f"p_before {before.shape}, p_after {after.shape}, melanoma {y.shape}: expected equal shapes")
    pred_b, pred_a = before >= threshold, after >= threshold
    shift = after - before
    b2m_el = (~y) & ~pred_b
    m2b_el = y & pred_b
    return FlipArrays(b2m_eligible=b2m_el.astype(float), b2m_flipped=(b2m_el & pred_a).astype(float),
                      m2b_eligible=m2b_el.astype(float), m2b_flipped=(m2b_el & ~pred_a).astype(float),
                      changed=(pred_b != pred_a).astype(float),
                      shift_benign=np.where(~y, shift, np.nan), shift_malignant=np.where(y, shift, np.nan))


@dataclass(frozen=True, kw_only=True)
class InsertionPredictions:
    """``p_malignant`` ``(N,)`` of one classifier on the three versions of an :class:`InsertionSet`."""

    original: np.ndarray
    painted: np.ndarray
    control: np.ndarray


def predict_insertions(model: torch.nn.Module, insertion: InsertionSet, *, batch_size: int = 64,
                       device: str | torch.device | None = None, cleaned: bool = False) -> InsertionPredictions:
    """Run ``model`` on the original, painted and control images of ``insertion`` (``cleaned``: as cleaned)."""
    source = insertion.cleaned if cleaned else {"original": insertion.original, "painted": insertion.painted,
                                                "control": insertion.control}
    if source is None:
        raise ValueError(f"insertion set {insertion.artifact!r} was built without a cleaner")
    return InsertionPredictions(**{k: predict_proba(model, source[k], batch_size=batch_size, device=device)
                                   for k in ("original", "painted", "control")})
