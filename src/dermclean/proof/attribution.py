"""Where the classifier looks: the share of Grad-CAM attribution that falls inside artifact masks.

Grad-CAM (Selvaraju et al. 2017) through captum's ``LayerGradCam`` for the malignant logit,
ReLU'd, upsampled bilinearly to the input size (``LayerAttribution.interpolate``). The layer is
the deepest residual stage whose feature map is still at least ``MIN_CAM_SIZE`` pixels on a side
(``layer4`` at 256 px, ``layer2`` at 64 px): at 64 px ``layer4`` is a 2 x 2 map, too coarse to
put attribution on a 2-px ink line, and its share inside any mask is just the mask's area.
For image ``i`` with mask ``M_i`` the share is ``sum(A_i * M_i) / sum(A_i)``; the chance level
-- attribution spread uniformly -- is the mask's area fraction, reported beside it. Images whose
attribution is all zero get NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dermclean.env import pick_device

STAGES = ("layer1", "layer2", "layer3", "layer4")
MIN_CAM_SIZE = 8


@dataclass(frozen=True, kw_only=True)
class AttributionShare:
    """Per image ``(N,)``: attribution share inside the mask, and the mask's area fraction."""

    share: np.ndarray
    area: np.ndarray


class _MalignantLogit(nn.Module):
    """``(B, 3, S, S) -> (B, 1)``: the classifier's malignant logit as a one-column output for captum."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[:, None] if out.ndim == 1 else out[:, -1:]


def cam_layer(model: nn.Module, image_size: int, *, device: torch.device | None = None) -> str:
    """The deepest ResNet stage whose output is at least ``MIN_CAM_SIZE`` on a side (else ``layer1``)."""
    missing = [name for name in STAGES if not hasattr(model, name)]
    if missing:
        raise ValueError(f"Grad-CAM needs a ResNet with stages {', '.join(STAGES)}; "
                         f"{type(model).__name__} lacks {', '.join(missing)}")
    sizes: dict[str, int] = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: sizes.__setitem__(name, min(out.shape[-2:]))) for name in STAGES]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    fine = [name for name in STAGES if sizes[name] >= MIN_CAM_SIZE]
    return fine[-1] if fine else STAGES[0]


def gradcam_maps(model: nn.Module, images: torch.Tensor, *, batch_size: int = 32,
                 device: str | torch.device | None = None, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps ``(N, S, S)`` float32 >= 0 for images ``(N, 3, S, S)`` in ``[-1, 1]``.

    ``layer`` names the ResNet stage; by default :func:`cam_layer` picks it for the image size.
    """
    from captum.attr import LayerAttribution, LayerGradCam

    device = device if isinstance(device, torch.device) else pick_device(device)
    model = model.to(device).eval()
    layer = layer or cam_layer(model, int(images.shape[-1]), device=device)
    if layer not in STAGES or not hasattr(model, layer):
        raise ValueError(f"Grad-CAM layer {layer!r}: expected one of {', '.join(STAGES)} on {type(model).__name__}")
    wrapped = _MalignantLogit(model)
    cam = LayerGradCam(wrapped, getattr(model, layer))
    size = tuple(images.shape[-2:])
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device).float().requires_grad_(True)
        attr = cam.attribute(x, target=0, relu_attributions=True)
        attr = LayerAttribution.interpolate(attr, size, interpolate_mode="bilinear")
        out.append(attr[:, 0].detach().float().cpu().clamp_min(0).numpy())
    return np.concatenate(out).astype(np.float32)


def mask_share(maps: np.ndarray, masks: np.ndarray) -> AttributionShare:
    """Share of each map ``(N, S, S)`` inside its bool mask ``(N, S, S)`` (see module docstring)."""
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise ValueError(f"attribution maps {maps.shape} and masks {masks.shape}: expected equal shapes")
    total = maps.reshape(len(maps), -1).sum(axis=1)
    inside = (maps * masks).reshape(len(maps), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / total, np.nan)
    return AttributionShare(share=share, area=masks.reshape(len(masks), -1).mean(axis=1))


def attribution_share(model: nn.Module, images: torch.Tensor, masks: np.ndarray, *, batch_size: int = 32,
                      device: str | torch.device | None = None) -> AttributionShare:
    """Grad-CAM share inside ``masks`` for ``images`` (both at the classifier's size)."""
    return mask_share(gradcam_maps(model, images, batch_size=batch_size, device=device), masks)
