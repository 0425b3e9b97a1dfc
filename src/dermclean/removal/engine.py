"""Removal at the input's resolution: one :class:`Remover` per method, pasting only inside the mask.

The diffusion models work at ``S x S``, their ``image_size``: the model side (e.g. 64 px), or the
``work_size`` of a model trained on crops, which it covers with tiles (e.g. 256 px in 64 px tiles,
the real set's native resolution). For an ``H x W`` input, the image and its
(dilated) mask are brought to ``S x S`` (the mask so that it covers every pixel it touches), the
model fills the masked region, and only the generated content is upsampled (bicubic) to ``H x W`` and
pasted inside the full-resolution dilated mask (a mask-conditioned image-conditioned model is also
told the mask, and with ``"telea"`` gets a condition pre-filled at the input's resolution). Every pixel outside the mask is the decoded input
pixel, bit for bit, for every method. Telea works directly at ``H x W``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermclean.data.masks import to_model_mask
from dermclean.config import from_dict
from dermclean.env import find_repo_root, pick_device
from dermclean.errors import ConfigError, OptionError
from dermclean.methods.classical.telea import telea_inpaint
from dermclean.methods.guided.repaint import InpaintConfig, repaint
from dermclean.methods.imagecond.model import check_imagecond, prefill
from dermclean.methods.imagecond.sample import SampleConfig, imagecond_restore, sample_config
from dermclean.modelio import load_model_dir
from dermclean.tracking.models import resolve_model

METHODS: tuple[str, ...] = ("inpaint", "imagecond", "telea")


@dataclass
class RemovalConfig:
    """``params["removal"]``: which methods the clean stage runs and how each samples."""

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    method: str = "telea"         # `dermclean clean`'s default: the best measured in-mask fill
    max_mask_area: float = 0.5    # `dermclean clean` warns (and counts) masks above this share
    dilation: int = 3             # pixels, at the input's resolution
    steps: int = 8                # DDIM / RePaint steps
    guidance_scale: float = 1.0   # inpaint: CFG scale towards "clean" (1 = conditional only)
    jump_length: int = 2          # inpaint: RePaint resampling jump length
    jump_n_sample: int = 2        # inpaint: RePaint resamplings per jump (1 = none)
    imagecond: SampleConfig | None = None  # imagecond: ``imagecond.sample`` (None: ``steps`` from pure noise)
    telea_radius: int = 3
    batch_size: int = 8
    seed: int = 0
    eval_images: int = 16         # evaluate_removal: clean images of the split used (0 = all)
    figure_rows: int = 4

    def __post_init__(self) -> None:
        self.methods = list(self.methods)
        if isinstance(self.imagecond, dict):
            self.imagecond = from_dict(SampleConfig, self.imagecond, where="removal.imagecond")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"removal.methods {unknown} unknown; expected a subset of {list(METHODS)}")
        if self.method not in METHODS:
            raise ConfigError(f"removal.method {self.method!r} unknown; expected one of {list(METHODS)}")
        if not 0.0 < self.max_mask_area <= 1.0:
            raise ConfigError(f"removal.max_mask_area must be in (0, 1]; got {self.max_mask_area}")
        if self.dilation < 0 or self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"removal: dilation >= 0, steps >= 1 and batch_size >= 1 expected; got {self}")


def removal_config(params: dict[str, Any], *, seed: int | None = None, **overrides: Any) -> RemovalConfig:
    """:class:`RemovalConfig` of the effective params: the ``removal`` section (with ``seed`` when given, and
    ``overrides``), its image-conditioned sampling from ``imagecond.sample``."""
    section = dict(params.get("removal") or {})
    if "imagecond" in section:
        raise ConfigError("removal.imagecond: the image-conditioned sampling is set in imagecond.sample")
    seeded = {} if seed is None else {"seed": seed}
    return from_dict(RemovalConfig, {**seeded, **section, **overrides, "imagecond": sample_config(params)},
                     where="removal")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise OptionError(f"--method {method!r} unknown; expected one of {', '.join(METHODS)}")
    return method


def default_model_path(method: str, root: Path | None = None) -> Path:
    """Where the pipeline writes the remover of ``method``: ``models/diffusion/unet`` or ``models/imagecond``."""
    return (root or find_repo_root()) / ("models/diffusion/unet" if method == "inpaint" else "models/imagecond")


def resolve_remover_dir(model: str | os.PathLike[str] | None, method: str) -> tuple[Path, str]:
    """Local folder of the remover model and the reference it came from (folder or MLflow URI).

    A ``models/diffusion`` folder resolves to the guided UNet inside it (``unet/``).
    """
    ref = str(model) if model is not None else str(default_model_path(method))
    path = Path(ref)
    if (path / "config.json").is_file():
        return path, ref
    if (path / "unet" / "config.json").is_file():
        return path / "unet", str(path / "unet")
    return resolve_model(ref), ref


def load_imagecond(path_or_uri: str | os.PathLike[str], *, device: torch.device | str = "cpu"
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """Load an image-conditioned model folder (or MLflow URI): ``(model in eval mode, meta)``."""
    folder, _ = resolve_remover_dir(path_or_uri, "imagecond")
    model, _, meta = load_model_dir(folder, device=device, expect_kind="unet")
    check_imagecond(model, where=str(folder))
    return model, meta


def model_version(folder: Path, ref: str) -> str:
    """``<reference>#<first 12 hex of sha256(weights.pt)>``: names exactly the weights used."""
    digest = hashlib.sha256((Path(folder) / "weights.pt").read_bytes()).hexdigest()[:12]
    return f"{ref}#{digest}"


def paste(image: np.ndarray, generated: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """Upsample ``generated`` (3,S,S) in [-1,1] to the image's ``H x W`` and paste it inside ``mask``.

    ``image`` uint8 ``H x W x 3``, ``mask`` bool ``H x W``; outside the mask the result is ``image``.
    """
    h, w = image.shape[:2]
    up = generated.detach().float().cpu()[None]
    if up.shape[-2:] != (h, w):
        up = F.interpolate(up, size=(h, w), mode="bicubic", align_corners=False)
    up = up[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.where(mask[..., None], up, image)


def _downsize(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 H x W x 3 -> (3,S,S) in [-1,1]; area interpolation when shrinking."""
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
        image = cv2.resize(image, (size, size), interpolation=interp)
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(127.5).sub(1.0)


@dataclass
class Remover:
    """A removal method ready to run: ``fill(images, masks) -> images`` at each input's resolution."""

    method: str
    config: RemovalConfig
    device: torch.device
    batch_size: int
    model: nn.Module | None = None
    model_ref: str | None = None
    version: str = ""
    seconds: float = 0.0

    def fill(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        """Replace ``masks[i]`` (bool H x W, already dilated) in ``images[i]`` (uint8 H x W x 3)."""
        began = time.perf_counter()
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(self._fill_batch(images[start:start + self.batch_size], masks[start:start + self.batch_size]))
        self.seconds += time.perf_counter() - began
        return out

    def _fill_batch(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        for image, mask in zip(images, masks, strict=True):
            if mask.shape != image.shape[:2]:
                raise ValueError(f"mask shape {mask.shape} != image shape {image.shape[:2]}")
        if self.method == "telea":
            return [telea_inpaint(im, m, radius=self.config.telea_radius) for im, m in zip(images, masks)]
        todo = [i for i, m in enumerate(masks) if m.any()]
        results = [im.copy() for im in images]
        if not todo:
            return results
        size, mask_condition = self.model.config.image_size, getattr(self.model.config, "mask_condition", None)
        if self.method == "imagecond" and mask_condition:
            sources = [prefill(images[i], masks[i], mask_condition) for i in todo]  # at the input's resolution
        else:
            sources = [images[i] for i in todo]
        x = torch.stack([_downsize(im, size) for im in sources]).to(self.device)
        small = torch.from_numpy(np.stack([to_model_mask(masks[i], size) for i in todo]))
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        if self.method == "inpaint":
            cfg = InpaintConfig(steps=self.config.steps, guidance_scale=self.config.guidance_scale,
                                jump_length=self.config.jump_length, jump_n_sample=self.config.jump_n_sample)
            generated = repaint(self.model, x, small[:, None].to(self.device), config=cfg, generator=generator)
        else:
            sample = self.config.imagecond or SampleConfig(steps=self.config.steps)
            generated = imagecond_restore(self.model, x, steps=sample.steps, noise_level=sample.noise_level,
                                          generator=generator,
                                          mask=small if mask_condition else None)
        for j, i in enumerate(todo):
            results[i] = paste(images[i], generated[j], masks[i])
        return results

    def describe(self) -> dict:
        return {"method": self.method, "model": self.model_ref, "model_version": self.version}


def state_digest(module: nn.Module) -> str:
    """First 12 hex of a sha256 over a module's state_dict (names and values)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def make_remover(method: str, *, model: str | os.PathLike[str] | nn.Module | None, config: RemovalConfig,
                 device: str | torch.device | None = None, batch_size: int | None = None,
                 model_ref: str | None = None) -> Remover:
    """Build the :class:`Remover` of ``method``; ``model`` is a folder/URI (default: the pipeline's
    ``models/diffusion/unet`` or ``models/imagecond``), an already loaded module (``model_ref`` names
    where it came from, for provenance), or ignored for ``telea``."""
    check_method(method)
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    remover = Remover(method=method, config=config, device=dev, batch_size=batch_size or config.batch_size)
    if method == "telea":
        remover.version = f"opencv-{cv2.__version__}"
        return remover
    if isinstance(model, nn.Module):
        module, ref = model, model_ref or type(model).__name__
        version = f"{ref}#{state_digest(model)}"
    else:
        folder, ref = resolve_remover_dir(model, method)
        module, _, _ = load_model_dir(folder, device=dev, expect_kind="unet")
        version = model_version(folder, ref)
    cond = module.config.cond_image_channels
    if method == "imagecond" and not cond:
        raise OptionError(f"--method imagecond needs the image-conditioned model (models/imagecond); {ref} is "
                         f"the class-conditional UNet. Pass --model models/imagecond")
    if method == "inpaint" and (cond or not module.config.num_classes):
        raise OptionError(f"--method inpaint needs the guided class-conditional model (models/diffusion/unet); "
                         f"{ref} is not. Pass --model models/diffusion/unet")
    remover.model, remover.model_ref, remover.version = module.to(dev).eval(), ref, version
    return remover
