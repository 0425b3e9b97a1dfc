"""Image-conditioned diffusion (Baugh et al., "Image-Conditioned Diffusion Models for Medical Anomaly
Detection", UNSURE 2024): training data, training, restoration and the difference-map detector.

Model: :class:`~dermclean.diffusion.unet.DermUNet` with ``cond_image_channels=3, num_classes=0``;
the corrupted image is concatenated to ``x_t`` on the channel axis and the model learns eps -- or, with
``prediction_type="sample"``, the *clean* original itself -- of the clean image (same DDPM objective
and machinery as the guided model: :mod:`dermclean.diffusion.train`).

Training pairs: real images whose labels say they carry none of ruler/ink/patches, each corrupted
with :func:`dermclean.data.artifacts.paint_random` (fresh artifacts every step) except an
``untouched_fraction`` (~20 %) left as they are, so the model also learns to copy clean skin. Styles
in ``HELDOUT_STYLES`` are never painted in training; the removal evaluation reports them apart, so
we measure "remove what does not belong" rather than "undo one renderer".

Mask condition (``UNetConfig.mask_condition``): a remover is always given the (dilated) mask it must
fill, so the model may be told too. With ``"mask"`` the condition gets a fourth channel, the mask;
with ``"telea"`` the condition image is moreover pre-filled inside the mask by Telea's inpainting
(:func:`prefill`), so a residual model starts from the classical fill and learns what to change in
it; ``"telea_image"`` shows the unfilled image as well (6 image channels, the Telea fill first), so the
model can also keep the clean skin that the dilated mask covers, which Telea discards. In training a
``mask_fraction`` of the painted pairs are told their painted mask, dilated by a random radius in
``mask_dilation`` (the removal dilates its masks too); the rest, and every untouched pair, get an
empty mask, which is how the detector runs the model (it must find the artifacts).
``mask_loss_weight`` (any model) makes painted pixels, and the whole mask a pair is told, count more in
the loss: they are what removal is judged on, while every other pixel is copied through the residual.

Inference: :func:`imagecond_restore` samples the clean image with deterministic DDIM (eta = 0),
by default from pure noise at t = T-1 ("trailing" timestep spacing, so the first step really starts
at pure noise), the corrupted image always visible through the condition (Baugh et al., ~50 steps).
With ``noise_level=L`` it instead starts from the corrupted image noised to L (faster, closer to
the input). :func:`imagecond_anomaly_map` is ``|x - x_hat|`` summed over channels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler

from dermclean.constants import OUTLIER_CLASSES
from dermclean.diffusion.schedulers import ddim_grid, ddim_scheduler, training_scheduler
from dermclean.diffusion.train import DiffusionBatch, TrainConfig, train_diffusion
from dermclean.diffusion.unet import DermUNet, UNetConfig, condition_channels
from dermclean.env import autocast


@dataclass
class CorruptionConfig:
    """How training images are corrupted (``params["imagecond"]``)."""

    untouched_fraction: float = 0.2
    kinds: list[str] = field(default_factory=lambda: list(OUTLIER_CLASSES))
    n_min: int = 1
    n_max: int = 2
    mask_fraction: float = 0.5    # painted pairs told their mask (models with a mask condition only)
    mask_dilation: list[int] = field(default_factory=lambda: [1, 5])  # px, drawn uniformly (inclusive)
    mask_loss_weight: float = 0.0  # extra loss weight: 1 + this on painted pixels and inside a told mask

    def __post_init__(self) -> None:
        self.kinds = list(self.kinds)
        self.mask_dilation = [int(r) for r in self.mask_dilation]
        if self.mask_loss_weight < 0:
            raise ValueError(f"mask_loss_weight must be >= 0; got {self.mask_loss_weight}")
        if not 0.0 <= self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction must be in [0, 1]; got {self.mask_fraction}")
        if len(self.mask_dilation) != 2 or not 0 <= self.mask_dilation[0] <= self.mask_dilation[1]:
            raise ValueError(f"mask_dilation must be [min, max] px with 0 <= min <= max; got {self.mask_dilation}")
        if not 0.0 <= self.untouched_fraction <= 1.0:
            raise ValueError(f"untouched_fraction must be in [0, 1]; got {self.untouched_fraction}")
        if not 1 <= self.n_min <= self.n_max:
            raise ValueError(f"expected 1 <= n_min <= n_max; got n_min={self.n_min}, n_max={self.n_max}")


@dataclass
class TrainingPair:
    """One training example: ``target`` (clean) and ``corrupted`` uint8 ``S x S x 3``."""

    target: np.ndarray
    corrupted: np.ndarray
    mask: np.ndarray            # bool S x S, union of painted masks (all False when untouched)
    styles: list[str]           # styles painted, as "kind/style"
    untouched: bool
    condition: np.ndarray | None = None  # uint8 S x S x 3 the model sees (None: ``corrupted``)
    given_mask: np.ndarray | None = None  # bool S x S the model is told to fill (mask-conditioned models)


def heldout_styles() -> Any:
    """The renderer styles held out of training (``dermclean.data.artifacts.HELDOUT_STYLES``)."""
    from dermclean.data.artifacts import HELDOUT_STYLES

    return HELDOUT_STYLES


def corrupt(image: np.ndarray, rng: np.random.Generator, config: CorruptionConfig) -> TrainingPair:
    """Paint random artifacts (never a held-out style) onto ``image`` unless it is drawn untouched."""
    from dermclean.data.artifacts import paint_random

    if rng.random() < config.untouched_fraction:
        return TrainingPair(target=image, corrupted=image.copy(), mask=np.zeros(image.shape[:2], bool),
                            styles=[], untouched=True)
    painted = paint_random(image, rng, kinds=config.kinds, n_min=config.n_min, n_max=config.n_max,
                           exclude_styles=heldout_styles())
    mask = np.zeros(image.shape[:2], bool)
    for m in painted.masks.values():
        mask |= np.asarray(m, dtype=bool)
    styles = [f"{kind}/{style}" for kind, names in dict(painted.styles).items() for style in names]
    return TrainingPair(target=image, corrupted=painted.image, mask=mask, styles=styles, untouched=False)


PREFILL_RADIUS = 3
"""Telea radius (px) of the ``"telea"`` mask condition's pre-fill, the same in training and removal."""


def prefill(image: np.ndarray, mask: np.ndarray, mask_condition: str | None) -> np.ndarray:
    """The condition image for ``image`` (uint8 H x W x 3) with removal mask ``mask`` (bool H x W):
    Telea-filled inside ``mask`` for ``mask_condition="telea"``; that fill and ``image`` stacked on the
    channel axis (H x W x 6) for ``"telea_image"``; else ``image`` itself."""
    filled = image
    if mask_condition in ("telea", "telea_image") and mask.any():
        from dermclean.methods.classical.telea import telea_inpaint

        filled = telea_inpaint(image, mask, radius=PREFILL_RADIUS)
    if mask_condition == "telea_image":
        return np.concatenate([filled, image], axis=2)
    return filled


def with_mask_channel(x: torch.Tensor, mask: torch.Tensor | None, config: UNetConfig) -> torch.Tensor:
    """The model's condition: ``x`` (B,C',S,S), the condition image(s) (:func:`prefill`), plus, for a
    mask-conditioned model, ``mask`` (B,1,S,S) or (B,S,S) in {0, 1} (``None``: empty, the detector's case)
    as the last channel. Without a mask, a ``"telea_image"`` model may be given the plain image (B,3,S,S):
    with nothing to fill, its Telea-filled and unfilled images are the same."""
    if not config.mask_condition:
        if mask is not None:
            raise ValueError("this image-conditioned model takes no mask (mask_condition is null)")
        return x
    wanted = config.condition_image_channels
    if mask is None and x.shape[1] == config.channels and wanted == 2 * config.channels:
        x = torch.cat([x, x], dim=1)
    if x.shape[1] != wanted:
        raise ValueError(f"condition of {x.shape[1]} channels for a mask_condition={config.mask_condition!r} model; "
                         f"expected {wanted} (build it with prefill())")
    if mask is None:
        mask = torch.zeros((x.shape[0], 1, *x.shape[-2:]), device=x.device, dtype=x.dtype)
    mask = mask.to(device=x.device, dtype=x.dtype)
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.shape != (x.shape[0], 1, *x.shape[-2:]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the images {tuple(x.shape)}")
    return torch.cat([x, mask], dim=1)


def _stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 N x S x S x 3 -> float (N,3,S,S) in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).contiguous()


class ImagecondBatches:
    """Endless, resumable batches of corrupted/clean pairs as :class:`DiffusionBatch`.

    Batch ``k`` draws its images and artifacts from ``np.random.default_rng([seed, k])``, so
    ``iter_from(k)`` resumes exactly and no two steps see the same corruption. With ``crop`` the
    artifacts are painted on the whole image (so they have their native size) and a ``crop`` px
    square is cut from both images; ``artifact_crop_fraction`` of the painted pairs are cut around a
    random artifact pixel, the rest (and every untouched pair) anywhere. With ``mask_condition`` the
    condition is built (:meth:`tell`) on the whole image too, then cut like the pair.
    """

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], *, batch_size: int, seed: int,
                 corruption: CorruptionConfig, crop: int | None = None,
                 artifact_crop_fraction: float = 0.5, mask_condition: str | None = None) -> None:
        if len(images) == 0:
            raise ValueError("train_imagecond: no clean training images (labels with none of ruler/ink/patches); "
                             "expected at least one")
        if not 0.0 <= artifact_crop_fraction <= 1.0:
            raise ValueError(f"artifact_crop_fraction must be in [0, 1]; got {artifact_crop_fraction}")
        self.images, self.batch_size, self.seed, self.corruption = images, batch_size, seed, corruption
        self.crop, self.artifact_crop_fraction = crop, artifact_crop_fraction
        self.mask_condition = mask_condition

    def batch(self, k: int) -> DiffusionBatch:
        rng = np.random.default_rng([self.seed, k])
        idx = rng.integers(0, len(self.images), size=self.batch_size)
        pairs = [self._cut(self.tell(corrupt(np.asarray(self.images[i]), rng, self.corruption), rng), rng)
                 for i in idx]
        cond = _stack([p.corrupted if p.condition is None else p.condition for p in pairs])
        if self.mask_condition:
            cond = torch.cat([cond, torch.from_numpy(np.stack([p.given_mask for p in pairs]))[:, None].float()], 1)
        weight = None
        if self.corruption.mask_loss_weight:
            region = [p.mask if p.given_mask is None else p.mask | p.given_mask for p in pairs]
            weight = 1.0 + self.corruption.mask_loss_weight * torch.from_numpy(np.stack(region))[:, None].float()
        return DiffusionBatch(target=_stack([p.target for p in pairs]), labels=None, cond_image=cond, weight=weight)

    def tell(self, pair: TrainingPair, rng: np.random.Generator) -> TrainingPair:
        """``pair`` with the mask the model is told (a ``mask_fraction`` of painted pairs: their painted
        mask, randomly dilated; otherwise empty) and its condition image (:func:`prefill`). Unchanged,
        drawing nothing from ``rng``, for a model without a mask condition."""
        if not self.mask_condition:
            return pair
        from dermclean.data.masks import dilate_mask

        given = np.zeros_like(pair.mask)
        if not pair.untouched and rng.random() < self.corruption.mask_fraction:
            low, high = self.corruption.mask_dilation
            given = dilate_mask(pair.mask, int(rng.integers(low, high + 1)))
        return dataclasses.replace(pair, condition=prefill(pair.corrupted, given, self.mask_condition),
                                   given_mask=given)

    def _cut(self, pair: TrainingPair, rng: np.random.Generator) -> TrainingPair:
        """``pair`` cropped to ``crop`` px (unchanged without ``crop``)."""
        if self.crop is None:
            return pair
        h, w, c = pair.target.shape[0], pair.target.shape[1], self.crop
        if pair.mask.any() and rng.random() < self.artifact_crop_fraction:
            ys, xs = np.nonzero(pair.mask)
            j = int(rng.integers(len(ys)))
            top = int(rng.integers(max(0, ys[j] - c + 1), min(ys[j], h - c) + 1))
            left = int(rng.integers(max(0, xs[j] - c + 1), min(xs[j], w - c) + 1))
        else:
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        box = (slice(top, top + c), slice(left, left + c))
        return TrainingPair(target=pair.target[box], corrupted=pair.corrupted[box], mask=pair.mask[box],
                            styles=pair.styles, untouched=pair.untouched,
                            condition=None if pair.condition is None else pair.condition[box],
                            given_mask=None if pair.given_mask is None else pair.given_mask[box])

    def iter_from(self, step: int) -> Iterator[DiffusionBatch]:
        k = step
        while True:
            yield self.batch(k)
            k += 1

    def __iter__(self) -> Iterator[DiffusionBatch]:
        return self.iter_from(0)


def load_clean_images(manifest_path: str | os.PathLike[str], *, split: str, size: int) -> np.ndarray:
    """uint8 ``(N, size, size, 3)``: the ``split`` images whose labels carry none of ruler/ink/patches."""
    from dermclean.data.images import load_rgb, to_tensor, to_uint8
    from dermclean.data.manifest import clean_mask, image_paths, read_manifest

    df = read_manifest(manifest_path)
    rows = df[(df["split"] == split).fillna(False).to_numpy() & clean_mask(df).to_numpy()]
    if rows.empty:
        raise ValueError(f"{manifest_path}: no {split!r} images labelled free of ruler/ink/patches; the "
                         f"image-conditioned model trains on such images")
    return np.stack([to_uint8(to_tensor(load_rgb(p), size)) for p in image_paths(rows, manifest_path)])


def imagecond_unet_config(*, sample_size: int, block_out_channels: Sequence[int], layers_per_block: int = 1,
                          attention: bool = False, work_size: int | None = None,
                          prediction_type: str = "epsilon", condition_residual: bool = False,
                          mask_condition: str | None = None) -> UNetConfig:
    """The UNet config of the image-conditioned model: 3 condition channels (plus the mask, and the
    unfilled image too with ``"telea_image"``: :func:`~dermclean.diffusion.unet.condition_channels`),
    no class condition; ``work_size`` trains it on ``sample_size`` crops of ``work_size`` images (tiles
    at inference); ``prediction_type="sample"`` makes it predict the clean image rather than eps,
    ``condition_residual`` predicts it as the (pre-filled) corrupted image plus a learned change."""
    return UNetConfig(sample_size=sample_size, cond_image_channels=condition_channels(3, mask_condition), num_classes=0,
                      block_out_channels=list(block_out_channels), layers_per_block=layers_per_block,
                      attention=attention, work_size=work_size, prediction_type=prediction_type,
                      condition_residual=condition_residual, mask_condition=mask_condition)


def check_imagecond(model: torch.nn.Module, where: str = "model") -> None:
    config = getattr(model, "config", None)
    if not isinstance(config, UNetConfig) or not config.cond_image_channels or config.num_classes or \
            config.cond_image_channels != condition_channels(config.channels, config.mask_condition):
        raise ValueError(f"{where}: expected an image-conditioned UNet (no classes; cond_image_channels 3, "
                         f"or more with a mask_condition: the image(s) and the mask), e.g. models/imagecond; "
                         f"got {config}")


def train_imagecond(dataset_images: np.ndarray | Sequence[np.ndarray], unet_config: UNetConfig,
                    train_config: TrainConfig, *, checkpoint_dir: str | os.PathLike[str],
                    device: torch.device | str, seed: int, corruption: CorruptionConfig | None = None,
                    on_log: Callable[[int, dict[str, float]], None] | None = None,
                    progress: bool = True) -> DermUNet:
    """Train the image-conditioned model; returns the EMA model (eval mode).

    ``dataset_images``: clean uint8 ``S x S x 3`` images at ``unet_config.image_size`` (``work_size``
    when set: the model then trains on ``sample_size`` crops of them). Resumes from ``checkpoint_dir``
    like :func:`dermclean.diffusion.train.train_diffusion`.
    """
    expected = condition_channels(unet_config.channels, unet_config.mask_condition)
    if unet_config.cond_image_channels != expected or unet_config.num_classes:
        raise ValueError(f"train_imagecond: expected cond_image_channels={expected} (mask_condition "
                         f"{unet_config.mask_condition!r}) and num_classes=0; got {unet_config}")
    size = unet_config.image_size
    bad = [i for i, im in enumerate(dataset_images) if np.asarray(im).shape != (size, size, 3)]
    if bad:
        raise ValueError(f"train_imagecond: images {bad[:5]} are not {size}x{size}x3 uint8; resize them first")
    torch.manual_seed(seed)
    model = DermUNet(unet_config)
    crop = unet_config.sample_size if size != unet_config.sample_size else None
    batches = ImagecondBatches(dataset_images, batch_size=train_config.batch_size, seed=seed,
                               corruption=corruption or CorruptionConfig(), crop=crop,
                               mask_condition=unet_config.mask_condition)
    result = train_diffusion(model, batches, train_config, checkpoint_dir=Path(checkpoint_dir), device=device,
                             on_log=on_log, progress=progress)
    return result.model


# ---------------------------------------------------------------- inference


def _sampling_plan(config: UNetConfig, steps: int, noise_level: int | None) -> tuple[DDIMScheduler, list[int]]:
    """DDIM scheduler and the timesteps to visit (descending): ``steps`` steps from T-1 (pure noise),
    or the DDIM grid that reaches ``noise_level`` in ``steps`` steps (:func:`~dermclean.diffusion.schedulers.ddim_grid`,
    the grid the guided detector decodes on), one model evaluation per step."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    base = ddim_scheduler(config)
    big_t = config.num_train_timesteps
    if noise_level is None:
        scheduler = DDIMScheduler.from_config(base.config, timestep_spacing="trailing")
        scheduler.set_timesteps(min(steps, big_t))
        return scheduler, [int(t) for t in scheduler.timesteps]
    if not 1 <= noise_level < big_t:
        raise ValueError(f"noise_level must be in [1, {big_t - 1}] or None (pure noise); got {noise_level}")
    grid = ddim_grid(big_t, noise_level, steps)
    base.set_timesteps(grid.num_inference_steps)
    return base, list(reversed(grid.timesteps))


@torch.no_grad()
def imagecond_restore(model: DermUNet, x_corrupted: torch.Tensor, *, steps: int, noise_level: int | None = None,
                      generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Clean estimate ``(B,3,S,S)`` in [-1, 1] of ``x_corrupted`` ``(B,3,S,S)`` in [-1, 1] (``S`` the model's
    ``image_size``; a tiled model steps the whole image, see :class:`~dermclean.diffusion.unet.DermUNet`).

    Deterministic DDIM (eta = 0) conditioned on ``x_corrupted``: from pure noise (``noise_level=None``,
    Baugh et al.) or from ``x_corrupted`` noised to ``noise_level``; the result is the last step's x0
    estimate (DDIM's final step would add back ``sqrt(1 - abar_0)`` of its eps). The initial noise comes from
    ``generator`` (default: seeded with 0, so the result is reproducible): one draw, shared by every image
    of the batch, so an image's result does not depend on its place in the batch or on the batch size
    (``dermclean detect --batch-size``). A mask-conditioned model is
    told ``mask`` (B,S,S) in {0, 1}, or nothing (an empty mask) when it is ``None``; ``x_corrupted`` is
    then already its condition image (:func:`prefill`: (B,6,S,S) for ``"telea_image"``).
    """
    check_imagecond(model)
    device = x_corrupted.device
    cond = with_mask_channel(x_corrupted.float(), mask, model.config)
    image = cond[:, :model.config.channels]  # the image the model starts from (a telea_image model: the fill)
    scheduler, timesteps = _sampling_plan(model.config, steps, noise_level)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    noise = torch.randn((1, *image.shape[1:]), generator=generator, device=device).expand_as(image)
    if noise_level is None:
        x = noise
    else:
        x = training_scheduler(model.config).add_noise(image, noise, torch.tensor([timesteps[0]], device=device))
    for t in timesteps:
        tt = torch.full((x.shape[0],), t, device=device, dtype=torch.long)
        with autocast(device):
            out = model(x, tt, None, cond).float()  # eps or x0: the scheduler has the model's prediction type
        step = scheduler.step(out, t, x, eta=0.0)
        x = step.prev_sample
    return step.pred_original_sample.clamp(-1.0, 1.0)  # the last x0 estimate, not re-noised to abar_0


@torch.no_grad()
def imagecond_anomaly_map(model: DermUNet, x: torch.Tensor, *, steps: int, noise_level: int | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Anomaly map ``(B,S,S)`` = ``|x - imagecond_restore(x)|`` summed over channels (range [0, 6])."""
    restored = imagecond_restore(model, x, steps=steps, noise_level=noise_level, generator=generator)
    return (x.float() - restored).abs().sum(dim=1)


def load_imagecond(path_or_uri: str | os.PathLike[str], *, device: torch.device | str = "cpu"
                   ) -> tuple[DermUNet, dict[str, Any]]:
    """Load an image-conditioned model folder (or MLflow URI): ``(model in eval mode, meta)``."""
    from dermclean.modelio import load_model_dir
    from dermclean.removal.engine import resolve_remover_dir

    folder, _ = resolve_remover_dir(path_or_uri, "imagecond")
    model, _, meta = load_model_dir(folder, device=device, expect_kind="unet")
    check_imagecond(model, where=str(folder))
    return model, meta
