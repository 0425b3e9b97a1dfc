"""The embedded default: procedural dermoscopy images with exact artifact masks, deterministic by seed.

Each image is skin (tone, redness blotches, grain and the dermoscope's central illumination) with
one pigmented lesion whose border is an irregular polar curve, with a pigment network, colour
variegation and globules. The melanoma label is drawn first (rate ``melanoma_rate``) and the lesion's
appearance from label-dependent, *overlapping* distributions -- melanomas are on average larger, more
asymmetric and irregular, darker, more variegated (blue-grey veil, black, regression, red) with a
less regular network (the ABCD rule of dermoscopy) -- so a classifier has a real but imperfect signal.

Artifacts are painted with :mod:`dermclean.data.artifacts` (the same renderers that paint real
images), each kind independently with probability ``artifact_rates[kind]``, held-out styles excluded
unless ``use_heldout_styles``. Bit ``i`` of ``masks/<id>.png`` is set where ``ARTIFACT_FLAGS[i]``
changed the pixel and the final image differs from the clean one; a flag is 1 exactly when its bit
is set somewhere.

Shortcut: ``shortcut_artifact`` (e.g. ``patches``, as the coloured stickers of ISIC nevus images)
appears with ``P(present | melanoma) = p (1 - s)`` and ``P(present | benign) = p (1 + s r / (1 - r))``
(clipped to 1), where ``p`` is its rate, ``r`` the melanoma rate and ``s = shortcut_strength``: the
overall rate stays ``p`` while ``s = 0`` makes presence independent of the label and ``s = 1`` puts the
artifact on benign lesions only.

Difficulty: with ``lesion_signal < 1`` only that share of images draws its lesion from its own label's
distributions; the others look like a label drawn afresh at ``melanoma_rate``, so the lesion alone
diagnoses less well and a shortcut pays more (the default 1 draws nothing extra: sets are unchanged).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.artifacts import HELDOUT_STYLES, paint_artifact
from dermclean.data.images import png_text, save_png
from dermclean.data.manifest import coerce, write_manifest
from dermclean.errors import ConfigError
from dermclean.io import atomic_path, check_output

DEFAULT_RATES: dict[str, float] = {"ruler": 0.3, "ink": 0.2, "patches": 0.15, "hair": 0.3, "dark_corner": 0.2,
                                   "gel_bubble": 0.15, "gel_border": 0.1}
PAINT_ORDER: tuple[str, ...] = ("dark_corner", "gel_border", "hair", "gel_bubble", "ink", "ruler", "patches")
"""Optical/skin artifacts first, then marks on the skin, stickers on top."""


@dataclass(kw_only=True)
class SyntheticConfig:
    """``data.synthetic`` in params.yaml (``seed`` comes from the top-level seed).

    ``artifact_rates``: per-image probability of each kind; kinds left out keep ``DEFAULT_RATES``.
    """

    n_images: int = 160
    size: int = 64
    seed: int = 0
    melanoma_rate: float = 0.35
    artifact_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    shortcut_artifact: str | None = "patches"
    shortcut_strength: float = 0.8
    lesion_signal: float = 1.0  # share of images whose lesion is drawn from its own label's look
    use_heldout_styles: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.artifact_rates) - set(ARTIFACT_FLAGS))
        if unknown:
            raise ConfigError(f"data.synthetic.artifact_rates: unknown kinds {unknown}; expected keys of {list(ARTIFACT_FLAGS)}")
        self.artifact_rates = {**DEFAULT_RATES, **{k: float(v) for k, v in self.artifact_rates.items()}}
        bad = {k: v for k, v in self.artifact_rates.items() if not 0.0 <= v <= 1.0}
        checks = [(self.n_images >= 1, f"n_images={self.n_images}; expected >= 1"),
                  (self.size >= 16, f"size={self.size}; expected >= 16 px"),
                  (0.0 < self.melanoma_rate < 1.0, f"melanoma_rate={self.melanoma_rate}; expected in (0, 1)"),
                  (not bad, f"artifact_rates {bad}; expected probabilities in [0, 1]"),
                  (self.shortcut_artifact is None or self.shortcut_artifact in ARTIFACT_FLAGS,
                   f"shortcut_artifact={self.shortcut_artifact!r}; expected null or one of {list(ARTIFACT_FLAGS)}"),
                  (0.0 <= self.shortcut_strength <= 1.0, f"shortcut_strength={self.shortcut_strength}; expected in [0, 1]"),
                  (0.0 <= self.lesion_signal <= 1.0, f"lesion_signal={self.lesion_signal}; expected in [0, 1]")]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"data.synthetic: {msg}")

    def presence_probability(self, kind: str, melanoma: bool) -> float:
        """P(kind painted | label); see the module docstring for the shortcut formula."""
        p = self.artifact_rates.get(kind, 0.0)
        if kind != self.shortcut_artifact:
            return p
        s, r = self.shortcut_strength, self.melanoma_rate
        return p * (1.0 - s) if melanoma else min(1.0, p * (1.0 + s * r / (1.0 - r)))


@dataclass
class Sample:
    """One generated image: ``image`` uint8 S x S x 3, ``clean`` before artifacts, ``bits`` uint8 S x S."""

    image: np.ndarray
    clean: np.ndarray
    bits: np.ndarray
    melanoma: bool
    flags: dict[str, int]


def _field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise (about unit variance) of shape ``size x size`` from a ``cells x cells`` grid."""
    grid = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _skin(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float ``size x size x 3`` skin: tone from pale pink to tan, redness, illumination falloff."""
    tone = rng.beta(2.0, 2.5)
    base = (1 - tone) * np.array([236, 192, 176], np.float32) + tone * np.array([176, 122, 92], np.float32)
    red = rng.uniform(0.0, 1.0)
    skin = base * (1.0 + 0.045 * _field(rng, size, 4)[..., None])
    skin *= (1.0 + 0.018 * _field(rng, size, max(8, size // 3)))[..., None]  # fine skin texture
    skin += np.array([9, -7, -6], np.float32) * (red * np.clip(_field(rng, size, 3), 0, None))[..., None]
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / (size - 1) - 0.5
    skin *= (1.0 - rng.uniform(0.05, 0.15) * (xx ** 2 + yy ** 2) * 2.0)[..., None]
    return skin


def _lesion(rng: np.random.Generator, size: int, melanoma: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lesion colour (float ``S x S x 3``) and coverage (float ``S x S`` in [0, 1])."""
    m = melanoma
    cx, cy = size / 2 + rng.normal(0, 0.05 * size, 2)
    radius = size * (rng.uniform(0.2, 0.38) if m else rng.uniform(0.14, 0.3))
    asym, rough = (rng.uniform(0.04, 0.14), rng.uniform(0.04, 0.12)) if m else (rng.uniform(0.0, 0.07), rng.uniform(0.0, 0.05))
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    shape = 1.0 + rng.uniform(0.0, 0.18) * np.cos(2 * (theta - rng.uniform(0, np.pi)))
    for k in range(2, 8):
        shape += asym / math.sqrt(k) * rng.normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    dist = np.hypot(xx - cx, yy - cy) / (radius * np.clip(shape, 0.4, None)) + rough * _field(rng, size, 7)
    edge = rng.uniform(0.06, 0.2)
    cover = np.clip((1.0 - dist) / edge + 0.5, 0.0, 1.0)
    dark = rng.uniform(0.45, 0.95) if m else rng.uniform(0.15, 0.7)
    colour = (1 - dark) * np.array([182, 118, 76], np.float32) + dark * np.array([92, 52, 32], np.float32)
    mottle = 1.0 + 0.1 * _field(rng, size, max(6, size // 10))  # uneven pigment at the scale of a few px
    lesion = np.broadcast_to(colour, (size, size, 3)) * (mottle * (1.0 - 0.25 * np.clip(1 - dist, 0, 1)))[..., None]
    extras = [(60, 40, 34), (176, 132, 98)]  # dark brown / black, light brown
    if m:
        extras = [(62, 42, 38), (108, 118, 140), (214, 198, 196), (182, 92, 92)][: int(rng.integers(2, 5))]
        extras = extras if rng.random() < 0.75 else extras[:1] + extras[2:]  # blue-grey veil in most
    n_extra = int(rng.integers(1, len(extras) + 1)) if m else int(rng.integers(0, 2))
    for j in rng.permutation(len(extras))[:n_extra]:
        w = np.clip(_field(rng, size, int(rng.integers(3, 7))) * rng.uniform(0.6, 1.2) - rng.uniform(0.0, 0.5), 0, 1)
        lesion = lesion + (np.array(extras[j], np.float32) - lesion) * (w * rng.uniform(0.5, 0.9))[..., None]
    period = max(4.0, size * rng.uniform(0.045, 0.075))
    warp = (1.6 if m else 0.7) * _field(rng, size, 8)
    phi = rng.uniform(0, np.pi)
    u = (xx * np.cos(phi) + yy * np.sin(phi)) * 2 * np.pi / period + warp
    v = (-xx * np.sin(phi) + yy * np.cos(phi)) * 2 * np.pi / period + warp
    net = np.exp(-np.minimum(np.abs(np.sin(u)), np.abs(np.sin(v))) / 0.3)
    net *= np.clip(_field(rng, size, 5) + (0.3 if m else 0.9), 0, 1)  # patchy (broken in melanoma)
    net = cv2.GaussianBlur(net.astype(np.float32), (0, 0), max(0.5, period / 10))
    lesion = lesion * (1.0 - (rng.uniform(0.15, 0.35) if m else rng.uniform(0.05, 0.2)) * net)[..., None]
    if m or rng.random() < 0.3:  # globules / dots, scattered towards the periphery in melanoma
        k = int(rng.integers(3, 10 if m else 5))
        ang, rad = rng.uniform(0, 2 * np.pi, k), radius * (rng.uniform(0.4, 1.05, k) if m else rng.uniform(0, 0.5, k))
        dots = np.zeros((size, size), np.float32)
        px = np.clip(np.rint(cx + rad * np.cos(ang)), 0, size - 1).astype(int)
        py = np.clip(np.rint(cy + rad * np.sin(ang)), 0, size - 1).astype(int)
        dots[py, px] = 1.0
        sigma = max(0.7, size * 0.012)
        dots = np.clip(cv2.GaussianBlur(dots, (0, 0), sigma) * (2 * np.pi * sigma ** 2) * 0.6, 0, 1)
        lesion = lesion * (1.0 - 0.6 * dots)[..., None]
    return lesion, cover


def render_sample(rng: np.random.Generator, config: SyntheticConfig) -> Sample:
    """Draw one labelled image with artifacts (see the module docstring)."""
    size = config.size
    melanoma = bool(rng.random() < config.melanoma_rate)
    skin = _skin(rng, size)
    looks_melanoma = melanoma
    if config.lesion_signal < 1.0 and rng.random() >= config.lesion_signal:
        looks_melanoma = bool(rng.random() < config.melanoma_rate)
    lesion, cover = _lesion(rng, size, looks_melanoma)
    inside = cover > 0.5
    if inside.any():  # keep the lesion darker than the surrounding skin on every skin tone
        ratio = lesion[inside].mean() / skin[~inside].mean() if (~inside).any() else 0.0
        lesion = lesion * min(1.0, 0.75 / ratio) if ratio > 0.75 else lesion
    image = skin + (lesion - skin) * cover[..., None] + rng.normal(0.0, 2.0, (size, size, 3))
    clean = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    exclude = {} if config.use_heldout_styles else HELDOUT_STYLES
    out, masks = clean, {}
    for kind in PAINT_ORDER:
        if rng.random() < config.presence_probability(kind, melanoma):
            painted = paint_artifact(out, kind, rng, exclude_styles=exclude)
            out = painted.image
            masks[kind] = masks.get(kind, False) | painted.mask
    changed = (out != clean).any(-1)
    bits = np.zeros((size, size), np.uint8)
    flags = {}
    for i, kind in enumerate(ARTIFACT_FLAGS):
        visible = masks[kind] & changed if kind in masks else np.zeros((size, size), bool)
        bits |= visible.astype(np.uint8) << i
        flags[kind] = int(visible.any())
    return Sample(image=out, clean=clean, bits=bits, melanoma=melanoma, flags=flags)


def generate_dataset(out_dir: Path, config: SyntheticConfig, *, progress: bool = False) -> pd.DataFrame:
    """Write ``out_dir/images/SYN_<i>.png`` and ``out_dir/masks/SYN_<i>.png``; return the manifest.

    Image ``i`` uses ``np.random.default_rng([config.seed, i])``, so a set is reproducible and its first
    ``k`` images do not depend on ``n_images``. ``image_path`` is relative to ``out_dir``; ``split`` is <NA>.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(config.n_images), disable=not progress, desc="synthetic", dynamic_ncols=True):
        sample = render_sample(np.random.default_rng([config.seed, i]), config)
        image_id = f"SYN_{i:06d}"
        save_png(out_dir / "images" / f"{image_id}.png", sample.image)
        save_png(out_dir / "masks" / f"{image_id}.png", sample.bits)
        rows.append({"image_id": image_id, "image_path": f"images/{image_id}.png",
                     "diagnosis": "melanoma" if sample.melanoma else "nevus", "melanoma": int(sample.melanoma),
                     **sample.flags, "split": pd.NA, "source": "synthetic"})
    return coerce(pd.DataFrame(rows), where=f"synthetic set in {out_dir}")


_SHORT = {"ruler": "rul", "ink": "ink", "patches": "pat", "hair": "hair", "dark_corner": "dc",
          "gel_bubble": "bub", "gel_border": "gb"}


def generate_folder(out_dir: str | os.PathLike[str], config: SyntheticConfig, *, overwrite: bool = False,
                    progress: bool = False) -> pd.DataFrame:
    """``dermclean generate``: ``out_dir/images/``, ``masks/`` and ``manifest.csv``, built aside and renamed
    into place. ``out_dir`` must be new or empty, or (with ``overwrite``) an earlier ``generate`` output."""
    out_dir = Path(out_dir)
    check_output(out_dir, command="generate", overwrite=overwrite, option="OUT")
    with atomic_path(out_dir, owner="generate") as tmp:
        df = generate_dataset(tmp, config, progress=progress)
        write_manifest(df, tmp / "manifest.csv")
    return df


SAMPLE_GRID_SOFTWARE = "dermclean sample-grid"
"""The PNG ``Software`` text of a sample grid: what lets ``sample-grid --overwrite`` replace it."""


def is_sample_grid(path: str | os.PathLike[str]) -> bool:
    return png_text(path, "Software") == SAMPLE_GRID_SOFTWARE


def make_sample_grid(out_path: Path, *, n: int = 16, size: int = 128, seed: int = 0,
                     overwrite: bool = False) -> Path:
    """Write a PNG grid of ``n`` default-config samples (``size`` px each), captioned with their labels.

    Caption: ``MEL``/``nev`` then the painted artifacts (rul, ink, pat, hair, dc = dark corner,
    bub = gel bubble, gb = gel border). An existing ``out_path`` is replaced only with ``overwrite``
    and only when it is an earlier sample grid.
    """
    check_output(out_path, command="sample-grid", overwrite=overwrite, folder=False, is_own_file=is_sample_grid,
                 option="OUT")
    config = SyntheticConfig(n_images=n, size=size, seed=seed)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    gap, cap = 2, max(10, size // 10)
    cell_h = size + cap + gap
    grid = np.full((rows * cell_h - gap, cols * (size + gap) - gap, 3), 255, np.uint8)
    for i in range(n):
        sample = render_sample(np.random.default_rng([seed, i]), config)
        r, c = divmod(i, cols)
        y, x = r * cell_h, c * (size + gap)
        grid[y:y + size, x:x + size] = sample.image
        text = " ".join(["MEL" if sample.melanoma else "nev"] + [_SHORT[k] for k in ARTIFACT_FLAGS if sample.flags[k]])
        cv2.putText(grid, text, (x + 2, y + size + cap - 3), cv2.FONT_HERSHEY_SIMPLEX, cap / 32, (40, 40, 40), 1,
                    cv2.LINE_AA)
    out_path = Path(out_path)
    save_png(out_path, grid, text={"Software": SAMPLE_GRID_SOFTWARE})
    return out_path
