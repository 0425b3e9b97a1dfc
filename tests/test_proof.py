"""Shortcut evidence: trap sets, counterfactual insertion with its control, subgroups, attribution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dermclean.classifier.model import ClassifierConfig, build_classifier
from dermclean.data.artifacts import Painted
from dermclean.data.images import load_rgb, save_png
from dermclean.data.manifest import read_manifest, write_manifest
from dermclean.proof.attribution import attribution_share, cam_layer, gradcam_maps, mask_share
from dermclean.proof.counterfactual import build_insertion_set, control_paste, flip_arrays, predict_insertions
from dermclean.proof.evaluate import evaluate_classifier, load_evaluation_data, make_plans, summarize_group
from dermclean.proof.subgroups import subgroup_aurocs
from dermclean.proof.trap import make_trap_split


def red_square(image: np.ndarray, rng: np.random.Generator) -> Painted:
    """A test renderer: a pure red 8x8 square in the top-left corner (exact mask)."""
    out, mask = image.copy(), np.zeros(image.shape[:2], bool)
    mask[2:10, 2:10] = True
    out[mask] = (255, 0, 0)
    return Painted(image=out, mask=mask, kind="ink", style="test-square")


class Redness(nn.Module):
    """A hand-built 'classifier': logit = 40 * (mean red - mean blue) over the image, in [-1, 1] units."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 * (x[:, 0] - x[:, 2]).mean(dim=(-2, -1))


def grey(n: int, value: int = 128, size: int = 32) -> list[np.ndarray]:
    return [np.full((size, size, 3), value, np.uint8) for _ in range(n)]


@pytest.fixture()
def manifest(tmp_path):
    rows = []
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for mel in (0, 1):
            for k in range(10 + (2 if split == "train" else 0)):
                image_id = f"{split}_{mel}_{k}"
                save_png(tmp_path / "raw" / f"{image_id}.png", rng.integers(60, 200, (24, 24, 3), dtype=np.uint8))
                ink = 1 if (split == "train" and k >= 10) else 0  # 2 + 2 train rows already carry ink
                rows.append({"image_id": image_id, "image_path": f"raw/{image_id}.png", "diagnosis": None,
                             "melanoma": mel, "ruler": 0, "ink": ink, "patches": 0, "hair": None,
                             "dark_corner": None, "gel_bubble": None, "gel_border": None, "split": split,
                             "source": "test"})
    path = tmp_path / "manifest.csv"
    write_manifest(pd.DataFrame(rows), path)
    return path


def test_trap_split_reverses_the_correlation(manifest, tmp_path):
    df = read_manifest(manifest)
    trap = make_trap_split(df, manifest_path=manifest, out_dir=tmp_path / "trap", artifact="ink", strength=0.8,
                           seed=0, painter=red_square)
    # strength 0.8: biased = 90 % of melanomas and 10 % of benign painted; trap = the reverse
    for split in ("train", "val", "test"):
        assert trap.counts[f"biased/{split}"] == {"n": 20, "melanoma": 10, "painted_melanoma": 9, "painted_benign": 1}
    for split in ("val", "test"):
        assert trap.counts[f"trap/{split}"] == {"n": 20, "melanoma": 10, "painted_melanoma": 1, "painted_benign": 9}
    written = read_manifest(tmp_path / "trap" / "manifest.csv")
    assert len(written) == 60 and not written["image_id"].str.endswith(("_10", "_11")).any()  # natural ink dropped
    assert (written["ink"].astype(int) == written["painted_artifact"].astype(int)).all()
    corr = np.corrcoef(written["ink"].astype(int), written["melanoma"].astype(int))[0, 1]
    reversed_ = read_manifest(tmp_path / "trap" / "trap.csv")
    corr_trap = np.corrcoef(reversed_["ink"].astype(int), reversed_["melanoma"].astype(int))[0, 1]
    assert corr == pytest.approx(0.8) and corr_trap == pytest.approx(-0.8)

    row = written[written["painted_artifact"].astype(int) == 1].iloc[0]
    painted = load_rgb(tmp_path / "trap" / row["image_path"], min_size=1)
    assert (painted[2:10, 2:10] == (255, 0, 0)).all()
    assert (tmp_path / "trap" / "masks" / f"{row['image_id']}.png").is_file()
    assert sorted(p.name for p in (tmp_path / "trap" / "images").iterdir()) == sorted(
        f"{i}.png" for i in written.loc[written["split"].isin(["train", "val"]), "image_id"])


def test_trap_split_refuses_bad_strength(manifest, tmp_path):
    with pytest.raises(ValueError, match="strength"):
        make_trap_split(read_manifest(manifest), manifest_path=manifest, out_dir=tmp_path / "t", strength=1.5,
                        painter=red_square)
    assert not (tmp_path / "t").exists()


def test_flip_arrays_hand_worked():
    before = np.array([0.2, 0.6, 0.3, 0.7])
    after = np.array([0.7, 0.6, 0.2, 0.3])
    y = np.array([0, 0, 1, 1])
    s = flip_arrays(before, after, y, threshold=0.5).summary()
    assert s["flip_b2m"] == 1.0     # the one benign called benign (0.2) is called malignant after (0.7)
    assert s["flip_m2b"] == 1.0     # the one melanoma called malignant (0.7) is called benign after (0.3)
    assert s["flip_rate"] == 0.5    # 2 of 4 predictions change
    assert s["shift_benign"] == pytest.approx(0.25) and s["shift_malignant"] == pytest.approx(-0.25)


def test_insertion_flips_a_red_shortcut_but_not_the_control():
    images = grey(6)
    y = np.array([0, 0, 0, 1, 1, 1])
    ins = build_insertion_set(images, y, artifact="ink", painter=red_square, size=32, seed=0)
    preds = predict_insertions(Redness(), ins, device="cpu")
    np.testing.assert_allclose(preds.original, 0.5)  # grey: logit 0
    painted = flip_arrays(preds.original, preds.painted, y, threshold=0.55).summary()
    control = flip_arrays(preds.original, preds.control, y, threshold=0.55).summary()
    # red square: 64 of 1024 pixels at (+1, -1, -1) vs grey ~0 -> logit 40 * 2 * 64/1024 = 5 -> p = 0.9933
    # every image was called benign (0.5 < 0.55) and is called malignant after: nothing to flip m->b
    assert painted["flip_b2m"] == 1.0 and painted["flip_rate"] == 1.0 and np.isnan(painted["flip_m2b"])
    assert painted["shift_benign"] == pytest.approx(1 / (1 + np.exp(-5.0)) - 0.5, abs=0.01)
    assert control["flip_rate"] == 0.0 and control["shift_benign"] == pytest.approx(0.0, abs=1e-6)
    assert ins.masks.shape == (6, 32, 32) and ins.masks[0, 2:10, 2:10].all() and ins.masks[0].sum() == 64


def test_insertion_set_keeps_the_three_versions_as_a_cleaner_returns_them():
    calls = []

    def unred(images):  # a cleaner that removes pure red pixels (what red_square paints)
        calls.append(len(images))
        out = [im.copy() for im in images]
        for im in out:
            im[(im == (255, 0, 0)).all(-1)] = 128
        return out

    ins = build_insertion_set(grey(3), np.array([0, 1, 0]), artifact="ink", painter=red_square, size=16, seed=0,
                              cleaner=unred)
    assert calls == [3, 3, 3] and set(ins.cleaned) == {"original", "painted", "control"}
    assert torch.allclose(ins.cleaned["painted"], ins.original) and not torch.allclose(ins.painted, ins.original)
    preds = predict_insertions(Redness(), ins, cleaned=True)
    assert np.allclose(preds.painted, preds.original)  # behind the cleaner the red square does nothing
    with pytest.raises(ValueError, match="without a cleaner"):
        predict_insertions(Redness(), build_insertion_set(grey(1), np.array([0]), artifact="ink", painter=red_square,
                                                          size=16, seed=0), cleaned=True)


def test_control_pastes_skin_from_the_same_image_in_the_same_shape():
    h, w = 20, 24
    image = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3) % 251
    image = image.astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[3:6, 4:12] = True
    mask[10, 2:20] = True
    out = control_paste(image, mask, np.random.default_rng(3))
    assert (out.image[~mask] == image[~mask]).all()  # outside the mask nothing changes
    dy, dx = out.shift
    ys, xs = np.nonzero(mask)
    np.testing.assert_array_equal(out.image[ys, xs], image[(ys - dy) % h, (xs - dx) % w])  # same shape, same image
    assert not mask[(ys - dy) % h, (xs - dx) % w].any()  # the source is skin outside the mask
    assert (dy, dx) != (0, 0)


def test_subgroup_aurocs_hand_worked():
    df = pd.DataFrame({"melanoma": [0, 1, 0, 1, 0, 1], "ruler": [1, 1, 1, 0, 0, 0],
                       "ink": [0, 0, 0, 0, 0, 0], "patches": [None, None, 0, 0, 1, 1]})
    p = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.7])
    out = {s.flag: s for s in subgroup_aurocs(df, p)}
    assert out["ruler"].auroc_with == 0.0 and out["ruler"].auroc_without == 1.0 and out["ruler"].gap == -1.0
    assert (out["ruler"].n_with, out["ruler"].n_with_melanoma) == (3, 1)
    assert np.isnan(out["ink"].auroc_with) and out["ink"].n_without == 6
    assert out["patches"].n_with + out["patches"].n_without == 4  # unlabelled rows belong to neither


def test_attribution_share_hand_worked_and_gradcam_shapes():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0
    masks = np.zeros((2, 4, 4), bool)
    masks[:, 0, 0] = True
    got = mask_share(maps, masks)
    assert got.share[0] == pytest.approx(0.75) and np.isnan(got.share[1]) and got.area[0] == pytest.approx(1 / 16)
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(arch="resnet10", width=4, image_size=32))
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    share = attribution_share(model, images, np.ones((3, 32, 32), bool), device="cpu")
    finite = share.share[np.isfinite(share.share)]
    np.testing.assert_allclose(finite, 1.0)  # everything lies inside an all-true mask


def test_gradcam_layer_keeps_at_least_8px_of_resolution():
    model = build_classifier(ClassifierConfig(arch="resnet10", width=4, image_size=32)).eval()
    # stem stride 4, then each stage after the first halves: 64 px -> 16, 8, 4, 2
    assert [cam_layer(model, size) for size in (32, 64, 128, 256)] == ["layer1", "layer2", "layer3", "layer4"]
    assert cam_layer(model, 16) == "layer1"  # nothing is 8 px: the finest stage
    with pytest.raises(ValueError, match="layer9"):
        gradcam_maps(model, torch.zeros(1, 3, 32, 32), device="cpu", layer="layer9")
    with pytest.raises(ValueError, match="lacks layer1"):
        cam_layer(torch.nn.Conv2d(3, 1, 1), 32)


class Darkness(nn.Module):
    """A hand-built 'classifier': the darker the image, the more malignant (ink is dark)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -20.0 * x.mean(dim=(1, 2, 3))


def test_trap_behind_the_cleaning_is_scored_on_the_same_rows(manifest, tmp_path):
    make_trap_split(read_manifest(manifest), manifest_path=manifest, out_dir=tmp_path / "trap", artifact="ink",
                    strength=0.8, seed=0)
    calls = []

    def flatten(images):  # a cleaner that removes everything: every image the same grey
        calls.append(len(images))
        return [np.full_like(im, 128) for im in images]

    plain = load_evaluation_data(manifest, size=16, artifacts=[], seed=0, trap_dir=tmp_path / "trap")
    assert plain.trap_cleaned == {}
    data = load_evaluation_data(manifest, size=16, artifacts=[], seed=0, trap_dir=tmp_path / "trap", cleaner=flatten)
    assert calls == [20, 20]  # the biased and the trap test rows, once each
    biased, trap = data.trap_cleaned["test"]
    assert list(biased.df["image_id"]) == list(trap.df["image_id"]) == list(data.trap["test"].df["image_id"])
    evals = [evaluate_classifier(Darkness(), 0.5, data, family="trap", variant="raw", seed=s, device="cpu",
                                 attribution=False) for s in (0, 1)]
    figures = summarize_group(data, evals, make_plans(data, n_boot=20, seed=0))
    assert figures["trap/test/gap"].mean > 0.5  # the dark ink marks the melanomas of the biased rows only
    assert figures["trap_cleaned/test/gap"].mean == 0.0  # cleaned, every image scores alike: AUROC 0.5 on both
