"""Artifact renderers: exact masks (mask == changed pixels), styles, exclusion, determinism, sizes."""

import numpy as np
import pytest

from dermclean.constants import ARTIFACT_FLAGS, OUTLIER_CLASSES
from dermclean.data.artifacts import (HELDOUT_STYLES, STYLES, Layer, Painted, PaintedMany, composite,
                                      paint_artifact, paint_random)
from dermclean.data.hair import paint_hair, strand

CASES = [(kind, style) for kind, styles in STYLES.items() for style in styles]


def _skin(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([205, 160, 140], np.float32) + rng.normal(0, 6, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_styles_cover_every_flag_and_heldout_is_a_strict_subset():
    assert set(STYLES) == set(ARTIFACT_FLAGS)
    for kind in OUTLIER_CLASSES:
        held = set(HELDOUT_STYLES[kind])
        assert held and held < set(STYLES[kind]), kind  # at least one held out, at least one left to train on


@pytest.mark.parametrize("size", [16, 256])
@pytest.mark.parametrize(("kind", "style"), CASES)
def test_mask_is_exactly_the_changed_pixels(kind, style, size):
    image = _skin(size)
    before = image.copy()
    painted = paint_artifact(image, kind, np.random.default_rng(7), style=style)
    assert isinstance(painted, Painted) and painted.kind == kind and painted.style == style
    assert np.array_equal(image, before)  # input untouched
    assert painted.image.dtype == np.uint8 and painted.image.shape == image.shape
    assert painted.mask.dtype == bool and painted.mask.shape == (size, size)
    assert np.array_equal(painted.mask, (painted.image != image).any(-1))
    assert painted.mask.any()
    again = paint_artifact(image, kind, np.random.default_rng(7), style=style)
    assert np.array_equal(again.image, painted.image) and np.array_equal(again.mask, painted.mask)


@pytest.mark.parametrize("kind", list(STYLES))
def test_renderers_vary_with_the_seed(kind):
    image = _skin(64)
    masks = {paint_artifact(image, kind, np.random.default_rng(s)).mask.tobytes() for s in range(6)}
    assert len(masks) >= 5


def test_non_square_and_large_images():
    image = _skin(300)[:120]
    for kind in STYLES:
        painted = paint_artifact(image, kind, np.random.default_rng(1))
        assert painted.mask.shape == (120, 300)
        assert np.array_equal(painted.mask, (painted.image != image).any(-1)) and painted.mask.any()


def test_unknown_kind_and_style_list_the_valid_ones():
    image = _skin(32)
    with pytest.raises(ValueError, match=r"unknown artifact kind 'tattoo'; expected one of \['ruler'"):
        paint_artifact(image, "tattoo", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"unknown ink style 'glitter'; expected one of \['stroke'"):
        paint_artifact(image, "ink", np.random.default_rng(0), style="glitter")
    with pytest.raises(ValueError, match="expected uint8 HxWx3"):
        paint_artifact(image.astype(np.float32), "ink", np.random.default_rng(0))


@pytest.mark.parametrize("kind", OUTLIER_CLASSES)
def test_exclude_styles_is_honoured_in_every_form(kind):
    image = _skin(24)
    held = HELDOUT_STYLES[kind]
    for exclude in (HELDOUT_STYLES, held, [f"{kind}/{s}" for s in held]):
        seen = {paint_artifact(image, kind, np.random.default_rng(s), exclude_styles=exclude).style for s in range(40)}
        assert not seen & set(held)
        assert seen == set(STYLES[kind]) - set(held)
    with pytest.raises(ValueError, match=f"every {kind} style is excluded"):
        paint_artifact(image, kind, np.random.default_rng(0), exclude_styles=STYLES[kind])
    # an explicit style wins over the exclusion (evaluation code asks for held-out styles by name)
    assert paint_artifact(image, kind, np.random.default_rng(0), style=held[0], exclude_styles=held).style == held[0]


def test_composite_hand_worked():
    image = np.full((4, 4, 3), 100, np.uint8)
    alpha = np.zeros((4, 4), np.float32)
    alpha[0, 0], alpha[1, 1], alpha[2, 2] = 1.0, 0.15, 0.05
    painted, mask = composite(image, [Layer(alpha, (200.0, 100.0, 101.0))])
    assert painted[0, 0].tolist() == [200, 100, 101]  # opaque: the colour itself
    assert painted[1, 1].tolist() == [115, 100, 100]  # 100 + 0.15 * 100
    assert painted[2, 2].tolist() == [105, 100, 100]
    expected = np.zeros((4, 4), bool)
    expected[0, 0] = expected[1, 1] = expected[2, 2] = True
    assert np.array_equal(mask, expected)
    faint = np.zeros((4, 4), np.float32)
    faint[3, 3], faint[0, 3] = 0.2, 0.05  # 0.2 * 1 rounds to 0 -> pushed one level; 0.05 < eps -> left alone
    painted, mask = composite(image, [Layer(faint, (101.0, 100.0, 100.0))])
    assert painted[3, 3].tolist() == [101, 100, 100] and painted[0, 3].tolist() == [100, 100, 100]
    assert mask.sum() == 1 and mask[3, 3]


def test_composite_multiply_and_screen():
    image = np.full((2, 2, 3), 200, np.uint8)
    alpha = np.ones((2, 2), np.float32)
    mult, _ = composite(image, [Layer(alpha, (127.5, 255.0, 0.0), "multiply")])
    assert mult[0, 0].tolist() == [100, 200, 0]
    scr, _ = composite(image, [Layer(alpha, (255.0, 0.0, 0.0), "screen")])
    assert scr[0, 0].tolist() == [255, 200, 200]


def test_paint_random_masks_union_is_exact():
    image = _skin(64, seed=3)
    for seed in range(8):
        many = paint_random(image, np.random.default_rng(seed), n_min=1, n_max=4, exclude_styles=HELDOUT_STYLES)
        assert isinstance(many, PaintedMany)
        assert set(many.masks) == set(many.styles) and set(many.masks) <= set(OUTLIER_CLASSES)
        assert 1 <= sum(len(v) for v in many.styles.values()) <= 4
        union = np.zeros((64, 64), bool)
        for kind, mask in many.masks.items():
            assert mask.dtype == bool
            union |= mask
        assert np.array_equal(union, (many.image != image).any(-1))
        assert all(s not in HELDOUT_STYLES[k] for k, styles in many.styles.items() for s in styles)
    again = paint_random(image, np.random.default_rng(5), n_min=1, n_max=4)
    same = paint_random(image, np.random.default_rng(5), n_min=1, n_max=4)
    assert np.array_equal(again.image, same.image) and again.styles == same.styles


def test_paint_random_kinds_counts_and_forced_styles():
    image = _skin(32)
    many = paint_random(image, np.random.default_rng(0), kinds=["hair"], n_min=3, n_max=3)
    assert list(many.masks) == ["hair"] and len(many.styles["hair"]) == 3
    forced = paint_random(image, np.random.default_rng(0), kinds=["ink"], n_min=2, n_max=2, styles={"ink": "dots"})
    assert forced.styles == {"ink": ["dots", "dots"]}
    none = paint_random(image, np.random.default_rng(0), n_min=0, n_max=0)
    assert np.array_equal(none.image, image) and none.masks == {}
    with pytest.raises(ValueError, match="n_min <= n_max"):
        paint_random(image, np.random.default_rng(0), n_min=3, n_max=1)


@pytest.mark.parametrize("size", [16, 256])
def test_lifelike_hair_is_thin_tapered_and_exactly_masked(size):
    image = _skin(size)
    before = image.copy()
    masks = []
    for seed in range(6):
        painted, mask = paint_hair(image, np.random.default_rng(seed))
        assert np.array_equal(image, before)  # the input is untouched
        assert np.array_equal(mask, (painted != image).any(-1))
        again, _ = paint_hair(image, np.random.default_rng(seed))
        assert np.array_equal(again, painted)  # deterministic per generator
        masks.append(mask)
    assert any(m.any() for m in masks)
    # strands, not blobs: most painted images leave most of the frame alone
    assert np.median([m.mean() for m in masks]) < 0.5
    xy, width = strand(256, 256, np.random.default_rng(0), heading=0.0)
    assert len(width) == len(xy) - 1  # one width per segment
    assert width[-1] < width[0] and width.max() <= 2.4  # tapers from at most 2.4 px at 256 px
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    assert np.allclose(steps, steps[0])  # an even walk: the strand's shape is its turning, not its spacing
    with pytest.raises(ValueError, match="paint_hair"):
        paint_hair(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0))
