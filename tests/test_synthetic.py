"""Procedural dermoscopy set: determinism, manifest, exact mask bits, shortcut strength, melanoma signal."""

import numpy as np
import pytest
from PIL import Image

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data import synthetic
from dermclean.data.manifest import COLUMNS, coerce
from dermclean.data.synthetic import DEFAULT_RATES, SyntheticConfig, generate_dataset, make_sample_grid, render_sample

NO_ARTIFACTS = {k: 0.0 for k in ARTIFACT_FLAGS}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC (probability a positive outscores a negative, ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def test_dataset_files_manifest_and_mask_bits(tmp_path):
    config = SyntheticConfig(n_images=24, size=32, seed=3, artifact_rates={k: 0.5 for k in ARTIFACT_FLAGS})
    df = generate_dataset(tmp_path, config)
    assert list(df.columns) == list(COLUMNS)
    assert coerce(df).equals(df)
    assert df["image_id"].tolist() == [f"SYN_{i:06d}" for i in range(24)]
    assert df["image_path"].tolist() == [f"images/SYN_{i:06d}.png" for i in range(24)]
    assert set(df["diagnosis"]) == {"melanoma", "nevus"}
    assert (df["melanoma"] == (df["diagnosis"] == "melanoma").astype(int)).all()
    assert df["split"].isna().all() and (df["source"] == "synthetic").all()
    for _, row in df.iterrows():
        image = np.asarray(Image.open(tmp_path / row["image_path"]))
        bits = np.asarray(Image.open(tmp_path / "masks" / f"{row['image_id']}.png"))
        assert image.shape == (32, 32, 3) and bits.shape == (32, 32) and bits.dtype == np.uint8
        assert bits.max() < 1 << len(ARTIFACT_FLAGS)
        for i, flag in enumerate(ARTIFACT_FLAGS):
            assert int(row[flag]) == int(((bits >> i) & 1).any()), (row["image_id"], flag)
    assert df[list(ARTIFACT_FLAGS)].sum().min() > 0  # every kind painted somewhere at rate 0.5


def test_mask_bits_are_exactly_the_changed_pixels():
    config = SyntheticConfig(size=48, artifact_rates={k: 0.6 for k in ARTIFACT_FLAGS})
    for i in range(12):
        sample = render_sample(np.random.default_rng([0, i]), config)
        assert np.array_equal(sample.bits > 0, (sample.image != sample.clean).any(-1))
        assert sample.flags == {k: int(((sample.bits >> j) & 1).any()) for j, k in enumerate(ARTIFACT_FLAGS)}


def test_deterministic_by_seed_and_prefix_stable(tmp_path):
    a = generate_dataset(tmp_path / "a", SyntheticConfig(n_images=6, size=32, seed=1))
    b = generate_dataset(tmp_path / "b", SyntheticConfig(n_images=8, size=32, seed=1))
    generate_dataset(tmp_path / "c", SyntheticConfig(n_images=6, size=32, seed=2))
    assert a.equals(b.iloc[:6].reset_index(drop=True))
    for i in range(6):
        name = f"images/SYN_{i:06d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert any((tmp_path / "a" / f"images/SYN_{i:06d}.png").read_bytes()
               != (tmp_path / "c" / f"images/SYN_{i:06d}.png").read_bytes() for i in range(6))


def test_heldout_styles_are_not_painted_by_default(monkeypatch):
    seen = []
    real = synthetic.paint_artifact

    def spy(image, kind, rng, **kw):
        painted = real(image, kind, rng, **kw)
        seen.append((kind, painted.style))
        return painted

    monkeypatch.setattr(synthetic, "paint_artifact", spy)
    config = SyntheticConfig(size=24, artifact_rates={"ruler": 1.0, "ink": 1.0, "patches": 1.0}, shortcut_artifact=None)
    for i in range(20):
        render_sample(np.random.default_rng([0, i]), config)
    assert seen and not [s for s in seen if s[1] in synthetic.HELDOUT_STYLES.get(s[0], ())]


def test_shortcut_probabilities():
    for strength in (0.0, 0.4, 0.8, 1.0):
        c = SyntheticConfig(melanoma_rate=0.3, shortcut_artifact="patches", shortcut_strength=strength,
                            artifact_rates={"patches": 0.2})
        mel, ben = c.presence_probability("patches", True), c.presence_probability("patches", False)
        assert 0.3 * mel + 0.7 * ben == pytest.approx(0.2)  # the overall rate is kept
        assert mel == pytest.approx(0.2 * (1 - strength))
        assert c.presence_probability("ruler", True) == c.presence_probability("ruler", False) == DEFAULT_RATES["ruler"]
    assert SyntheticConfig(shortcut_strength=1.0).presence_probability("patches", True) == 0.0


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_shortcut_strength_shifts_the_correlation(strength):
    rates = {**NO_ARTIFACTS, "ink": 0.5}
    config = SyntheticConfig(size=16, artifact_rates=rates, shortcut_artifact="ink", shortcut_strength=strength,
                             melanoma_rate=0.4)
    samples = [render_sample(np.random.default_rng([9, i]), config) for i in range(300)]
    mel = np.array([s.melanoma for s in samples])
    ink = np.array([s.flags["ink"] for s in samples], bool)
    rate_mel, rate_ben = ink[mel].mean(), ink[~mel].mean()
    if strength == 1.0:
        assert rate_mel == 0.0 and rate_ben > 0.7
    else:
        assert abs(rate_mel - rate_ben) < 0.15 and 0.35 < ink.mean() < 0.65


def test_melanoma_appearance_signal():
    config = SyntheticConfig(size=32, artifact_rates=NO_ARTIFACTS, shortcut_artifact=None)
    samples = [render_sample(np.random.default_rng([11, i]), config) for i in range(200)]
    y = np.array([s.melanoma for s in samples])
    assert 0.25 < y.mean() < 0.45
    lum = [s.clean.astype(np.float32).mean(-1) for s in samples]
    dark_area = np.array([(x < 0.75 * np.median(x)).mean() for x in lum])
    spread = np.array([s.clean.astype(np.float32).std((0, 1)).mean() for s in samples])
    assert 0.7 < _auc(dark_area, y) < 0.99  # a real signal, with overlap
    assert 0.7 < _auc(spread, y) < 0.99


def test_lesion_signal_weakens_the_appearance_and_leaves_the_default_unchanged():
    base = SyntheticConfig(size=32, artifact_rates=NO_ARTIFACTS, shortcut_artifact=None)
    full = SyntheticConfig(size=32, artifact_rates=NO_ARTIFACTS, shortcut_artifact=None, lesion_signal=1.0)
    assert np.array_equal(render_sample(np.random.default_rng([11, 0]), base).image,
                          render_sample(np.random.default_rng([11, 0]), full).image)
    none = SyntheticConfig(size=32, artifact_rates=NO_ARTIFACTS, shortcut_artifact=None, lesion_signal=0.0)
    samples = [render_sample(np.random.default_rng([11, i]), none) for i in range(200)]
    y = np.array([s.melanoma for s in samples])
    spread = np.array([s.clean.astype(np.float32).std((0, 1)).mean() for s in samples])
    assert 0.35 < _auc(spread, y) < 0.65  # the lesion no longer tells the label
    with pytest.raises(ValueError, match="lesion_signal=2"):
        SyntheticConfig(lesion_signal=2)


def test_images_look_like_skin_with_a_darker_lesion():
    config = SyntheticConfig(size=64, artifact_rates=NO_ARTIFACTS, shortcut_artifact=None)
    for i in range(10):
        img = render_sample(np.random.default_rng([2, i]), config).clean.astype(np.float32)
        corner = img[:8, :8].reshape(-1, 3).mean(0)
        centre = np.percentile(img[16:48, 16:48].mean(-1), 20)
        assert corner[0] > corner[1] > corner[2] and corner[0] > 150  # pink/tan skin: R > G > B
        assert centre < corner.mean() - 25  # a darker lesion in the middle


def test_config_validation():
    with pytest.raises(ValueError, match=r"unknown kinds \['tattoo'\]"):
        SyntheticConfig(artifact_rates={"tattoo": 0.1})
    with pytest.raises(ValueError, match="shortcut_strength=1.5"):
        SyntheticConfig(shortcut_strength=1.5)
    with pytest.raises(ValueError, match="shortcut_artifact='mole'"):
        SyntheticConfig(shortcut_artifact="mole")
    with pytest.raises(ValueError, match="size=8"):
        SyntheticConfig(size=8)
    assert SyntheticConfig(artifact_rates={"ink": 0.9}).artifact_rates == {**DEFAULT_RATES, "ink": 0.9}


def test_sample_grid(tmp_path):
    out = make_sample_grid(tmp_path / "docs" / "grid.png", n=5, size=32, seed=0)
    grid = np.asarray(Image.open(out))
    cap = 10  # caption strip under each tile (max(10, size // 10))
    assert grid.shape == (2 * (32 + cap) + 2, 3 * 32 + 4, 3)
    assert (grid[32:32 + cap, :32] < 128).any()  # the first caption's text is drawn
