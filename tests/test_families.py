"""Renderer families: every family paints, masks are exact before degradation, pairs differ only by the
artifact, folds partition the families, exclusions are honoured."""

import numpy as np
import pytest

from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.artifacts import HELDOUT_STYLES, STYLES
from dermclean.data.families import (FAMILIES, NONE, DegradeConfig, Degradation, FamilyPainted, PaintedPair,
                                     allowed_families, degrade_image, family_folds, family_names, fold_exclusion,
                                     paint_family, paint_pair, paint_random_family, sample_degradation)

CASES = [(kind, family) for kind, families in FAMILIES.items() for family in families]
LAYERS_ONLY = DegradeConfig(p_image_blur=0.0, p_noise=0.0, p_jpeg=0.0)
"""Opacity and alpha blur on, every whole-image stage off."""


def _skin(size: int, seed: int = 0, width: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([205, 160, 140], np.float32) + rng.normal(0, 6, (size, width or size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_registry_covers_the_outlier_kinds_with_unique_family_names():
    assert tuple(FAMILIES) == OUTLIER_CLASSES
    names = [f for families in FAMILIES.values() for f in families]
    assert len(names) == len(set(names))
    assert all(len(FAMILIES[k]) >= 5 for k in FAMILIES)
    # family names never collide with the older style names, so bare names in an exclusion are unambiguous
    assert not set(names) & {s for styles in STYLES.values() for s in styles}


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize(("kind", "family"), CASES)
def test_every_family_paints_an_exact_mask(kind, family, size):
    image = _skin(size)
    before = image.copy()
    for seed in range(3):
        painted = paint_family(image, kind, family, np.random.default_rng(seed), degrade=False)
        assert isinstance(painted, FamilyPainted) and (painted.kind, painted.family) == (kind, family)
        assert painted.degradation == NONE
        assert painted.image.dtype == np.uint8 and painted.image.shape == image.shape
        assert painted.mask.dtype == bool and painted.mask.any()
        assert np.array_equal(painted.mask, (painted.image != image).any(-1))
        again = paint_family(image, kind, family, np.random.default_rng(seed), degrade=False)
        assert np.array_equal(again.image, painted.image) and np.array_equal(again.mask, painted.mask)
    assert np.array_equal(image, before)


@pytest.mark.parametrize(("kind", "family"), CASES)
def test_families_paint_at_16_px_and_on_non_square_images(kind, family):
    for image in (_skin(16), _skin(48, width=80)):
        painted = paint_family(image, kind, family, np.random.default_rng(3), degrade=False)
        assert painted.mask.any() and np.array_equal(painted.mask, (painted.image != image).any(-1))


@pytest.mark.parametrize("kind", OUTLIER_CLASSES)
def test_geometry_varies_with_the_seed(kind):
    image = _skin(64)
    for family in FAMILIES[kind]:
        masks = {paint_family(image, kind, family, np.random.default_rng(s)).mask.tobytes() for s in range(5)}
        assert len(masks) == 5, family


def test_rulers_are_thin():
    """At 256 px a ruler covers a small part of the frame: median under 5 % (12 % for the thick bar)."""
    image = _skin(256)
    for family in FAMILIES["ruler"]:
        cover = [paint_family(image, "ruler", family, np.random.default_rng(s)).mask.mean() for s in range(8)]
        assert np.median(cover) < (0.12 if family == "band_scale" else 0.05) and max(cover) < 0.25, (family, cover)


@pytest.mark.parametrize(("kind", "family"), CASES[::3])
def test_mask_is_taken_before_the_image_degradations(kind, family):
    image = _skin(64, seed=1)
    full = paint_pair(image, kind, family, np.random.default_rng(11))
    layers = paint_pair(image, kind, family, np.random.default_rng(11), config=LAYERS_ONLY)
    assert isinstance(full, PaintedPair)
    # same geometry and layer stage, whatever the image stages
    assert np.array_equal(full.mask, layers.mask)
    assert (full.degradation.opacity, full.degradation.alpha_blur) == (layers.degradation.opacity,
                                                                       layers.degradation.alpha_blur)
    assert np.array_equal(layers.clean, image)
    assert np.array_equal(layers.mask, (layers.painted != image).any(-1)) and layers.mask.any()
    # the image stage is then applied alike to both
    assert np.array_equal(full.clean, degrade_image(image, full.degradation))
    assert np.array_equal(full.painted, degrade_image(layers.painted, full.degradation))


@pytest.mark.parametrize(("kind", "family"), CASES[1::3])
def test_pair_differs_only_in_the_mask_before_degradation(kind, family):
    image = _skin(64, seed=2)
    pair = paint_pair(image, kind, family, np.random.default_rng(5), degrade=False)
    assert np.array_equal(pair.clean, image) and pair.degradation == NONE
    assert np.array_equal((pair.painted != pair.clean).any(-1), pair.mask)
    noisy = paint_pair(image, kind, family, np.random.default_rng(5),
                       config=DegradeConfig(p_image_blur=0.0, p_noise=1.0, p_jpeg=0.0))
    assert noisy.degradation.noise_std > 0
    assert not np.array_equal(noisy.clean, image)  # the clean reference got the noise too ...
    assert not ((noisy.painted != noisy.clean).any(-1) & ~noisy.mask).any()  # ... the same noise


def test_degrade_image_is_deterministic_and_does_what_it_says():
    image = _skin(64, seed=4)
    assert np.array_equal(degrade_image(image, NONE), image)
    jpeg = Degradation(jpeg_quality=40)
    once = degrade_image(image, jpeg)
    assert np.array_equal(once, degrade_image(image, jpeg)) and not np.array_equal(once, image)
    noise = Degradation(noise_std=4.0, noise_seed=3)
    assert np.array_equal(degrade_image(image, noise), degrade_image(image, noise))
    assert not np.array_equal(degrade_image(image, noise), degrade_image(image, Degradation(noise_std=4.0)))
    assert np.abs(degrade_image(image, noise).astype(int) - image).mean() == pytest.approx(4.0 * 0.8, rel=0.15)
    d = sample_degradation(np.random.default_rng(0), 256, DegradeConfig(p_jpeg=1.0, jpeg_quality=(40, 95)))
    assert 40 <= d.jpeg_quality <= 95 and 0.55 <= d.opacity <= 1.0


def test_degrade_config_errors_say_what_is_expected():
    with pytest.raises(ValueError, match=r"jpeg_quality: got \(10, 120\); expected within \[1, 100\]"):
        DegradeConfig(jpeg_quality=(10, 120))
    with pytest.raises(ValueError, match="p_noise: got 2.0; expected a probability"):
        DegradeConfig(p_noise=2.0)
    with pytest.raises(ValueError, match="opacity: got"):
        DegradeConfig(opacity=(0.9, 0.5))


@pytest.mark.parametrize("kind", OUTLIER_CLASSES)
def test_folds_partition_every_family_once(kind):
    for n_folds in range(2, len(FAMILIES[kind]) + 1):
        for seed in range(3):
            folds = family_folds(kind, n_folds, seed)
            assert len(folds) == n_folds and all(folds)
            flat = [f for fold in folds for f in fold]
            assert sorted(flat) == sorted(FAMILIES[kind])
            assert folds == family_folds(kind, n_folds, seed)
    assert len({family_folds(kind, 2, seed) for seed in range(12)}) > 1  # the seed matters
    with pytest.raises(ValueError, match=r"expected 2\.\."):
        family_folds(kind, 1)
    with pytest.raises(ValueError, match=r"expected 2\.\."):
        family_folds(kind, len(FAMILIES[kind]) + 1)


def test_fold_exclusion_is_the_folds_of_every_kind():
    held = fold_exclusion(1, n_folds=2, seed=4)
    assert held == {kind: family_folds(kind, 2, 4)[1] for kind in OUTLIER_CLASSES}
    with pytest.raises(ValueError, match="expected 0..1"):
        fold_exclusion(2, n_folds=2)
    names = family_names(held)
    assert names == sorted(names) and len(names) == sum(len(v) for v in held.values())
    assert {name.split("/")[0] for name in names} == set(OUTLIER_CLASSES) and f"ruler/{held['ruler'][0]}" in names


@pytest.mark.parametrize("kind", OUTLIER_CLASSES)
def test_exclude_families_is_honoured_in_every_form(kind):
    image = _skin(24)
    held = family_folds(kind, 2, 0)[0]
    for exclude in ({kind: held}, held, [f"{kind}/{f}" for f in held]):
        assert allowed_families(kind, exclude) == tuple(f for f in FAMILIES[kind] if f not in held)
        seen = set()
        for seed in range(30):
            many = paint_random_family(image, np.random.default_rng(seed), kinds=[kind], exclude_families=exclude,
                                       degrade=False)
            seen.update(many.families[kind])
        assert seen == set(FAMILIES[kind]) - set(held)
    # another kind's names, or another kind's entry in a mapping, exclude nothing here
    other = [k for k in OUTLIER_CLASSES if k != kind][0]
    assert allowed_families(kind, {other: FAMILIES[other]}) == FAMILIES[kind]
    assert allowed_families(kind, [f"{other}/{FAMILIES[kind][0]}"]) == FAMILIES[kind]
    with pytest.raises(ValueError, match=f"every {kind} family is excluded"):
        paint_random_family(image, np.random.default_rng(0), kinds=[kind], exclude_families=FAMILIES[kind])


def test_paint_random_family_masks_union_is_exact_and_degradation_shared():
    image = _skin(64, seed=3)
    for seed in range(6):
        many = paint_random_family(image, np.random.default_rng(seed), n_min=1, n_max=4, degrade=False,
                                   exclude_families=HELDOUT_STYLES)
        union = np.zeros((64, 64), bool)
        for mask in many.masks.values():
            union |= mask
        assert np.array_equal(union, (many.image != image).any(-1)) and union.any()
        assert np.array_equal(many.clean, image)
        assert set(many.masks) == set(many.families) <= set(OUTLIER_CLASSES)
    degraded = paint_random_family(image, np.random.default_rng(9))
    assert np.array_equal(degraded.clean, degrade_image(image, degraded.degradation))
    same = paint_random_family(image, np.random.default_rng(9))
    assert np.array_equal(same.image, degraded.image) and same.families == degraded.families


def test_unknown_kinds_and_families_list_the_valid_ones():
    image = _skin(32)
    with pytest.raises(ValueError, match=r"unknown artifact kind 'hair' for families; expected one of \['ruler'"):
        paint_family(image, "hair", "dark", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"unknown ink family 'glitter'; expected one of \['pen_stroke'"):
        paint_pair(image, "ink", "glitter", np.random.default_rng(0))
    with pytest.raises(ValueError, match="paint_family: got float32 array"):
        paint_family(image.astype(np.float32), "ink", "pen_dots", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown artifact kind 'gel'"):
        paint_random_family(image, np.random.default_rng(0), kinds=["gel"])
