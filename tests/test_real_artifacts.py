"""Real artifacts as counterfactuals: cut along detected masks, pasted with their pixels, removed by cleaning."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from dermclean.classifier.model import ClassifierConfig
from dermclean.classifier.train import train_classifier
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.dataset import ManifestDataset
from dermclean.data.images import load_rgb, save_png
from dermclean.data.manifest import write_manifest
from dermclean.data.synthetic import SyntheticConfig, generate_dataset
from dermclean.errors import DataError
from dermclean.proof.evaluate import evaluate_classifier, load_evaluation_data
from dermclean.proof.real_artifacts import bank_painter, cut_bank, pipeline_cleaner, removal_set
from dermclean.proof.real_shortcut import _excludes_zero, _includes_zero, artifact_claim, shortcut_association
from dermclean.removal.datasets import build_cleaned_dataset
from dermclean.removal.engine import RemovalConfig, make_remover

SIDE = 24


def _row(image_id: str, split: str, *, melanoma: int = 0, ruler: int = 0, ink: int = 0, patches: int = 0) -> dict:
    return {"image_id": image_id, "image_path": f"raw/{image_id}.png", "diagnosis": None, "melanoma": melanoma,
            "ruler": ruler, "ink": ink, "patches": patches, "hair": None, "dark_corner": None, "gel_bubble": None,
            "gel_border": None, "split": split, "source": "test"}


@pytest.fixture()
def labelled(tmp_path):
    """Train images: ``p0`` (patches only; a 6x8 green sticker on the left border and a 1-px speck),
    ``p1`` (patches and ruler: excluded), ``c0`` (clean); test images: ``t0`` patches, ``t1`` clean."""
    grey = np.full((SIDE, SIDE, 3), 120, np.uint8)
    masks = tmp_path / "detections" / "masks"
    rows = []
    for image_id, split, flags in [("p0", "train", {"patches": 1}), ("p1", "train", {"patches": 1, "ruler": 1}),
                                   ("c0", "train", {}), ("t0", "test", {"patches": 1}), ("t1", "test", {})]:
        image, mask = grey.copy(), np.zeros((SIDE, SIDE), bool)
        if flags:
            image[10:16, 0:8] = (0, 200, 0)
            mask[10:16, 0:8] = True
            mask[2, 20] = True  # too small to be an artifact
        save_png(tmp_path / "raw" / f"{image_id}.png", image)
        save_png(masks / f"{image_id}.png", mask)
        rows.append(_row(image_id, split, **flags))
    path = tmp_path / "manifest.csv"
    write_manifest(pd.DataFrame(rows), path)
    return path


def test_bank_cuts_the_labelled_type_alone_along_its_mask(labelled, tmp_path):
    bank = cut_bank(labelled, tmp_path / "detections", "patches", min_area=0.01)
    assert bank.n_source_images == 1  # p1 also carries a ruler; c0 and the test images are not cut
    (cutout,) = bank.cutouts
    assert cutout.source_id == "p0" and cutout.mask.shape == (6, 8) and cutout.mask.all()
    assert (cutout.rgb == (0, 200, 0)).all() and cutout.edges == {"left"}


def test_painter_pastes_real_pixels_on_the_matching_border_away_from_the_lesion(labelled, tmp_path):
    paint = bank_painter(cut_bank(labelled, tmp_path / "detections", "patches", min_area=0.01))
    image = np.full((48, 48, 3), 90, np.uint8)  # twice the source's side: the cutout is scaled to 12 x 16
    rng = np.random.default_rng(0)
    for _ in range(6):
        out = paint(image, rng)
        ys, xs = np.nonzero(out.mask)
        assert out.mask.sum() == 12 * 16 and out.style == "real:p0"
        assert (out.image[out.mask] == (0, 200, 0)).all() and (out.image[~out.mask] == 90).all()
        assert xs.min() == 0 or xs.max() == 47  # a border cutout stays on a border (mirrored or not)
    with pytest.raises(DataError, match="no real ruler to paste"):
        bank_painter(cut_bank(labelled, tmp_path / "detections", "ruler"))


def test_removal_set_pairs_raw_and_cleaned_images(labelled, tmp_path):
    cleaned_rows = []
    for image_id in ("p0", "p1", "c0", "t0", "t1"):
        save_png(tmp_path / "cleaned" / "images" / f"{image_id}.png", np.full((SIDE, SIDE, 3), 120, np.uint8))
        cleaned_rows.append({**_row(image_id, "x"), "image_path": f"images/{image_id}.png"})
    write_manifest(pd.DataFrame(cleaned_rows), tmp_path / "cleaned" / "manifest.csv")
    removal = removal_set(labelled, tmp_path / "cleaned" / "manifest.csv", "patches", size=SIDE)
    assert removal.image_ids == ["t0"] and removal.melanoma.tolist() == [0]  # val/test rows with patches
    assert removal.original[0, 1, 12, 2] > 0.5 and torch.allclose(removal.cleaned, torch.full_like(removal.cleaned, 120 / 127.5 - 1))
    assert removal_set(labelled, tmp_path / "cleaned" / "manifest.csv", "ink", size=SIDE) is None
    write_manifest(pd.DataFrame(cleaned_rows[:3]), tmp_path / "cleaned" / "manifest.csv")
    with pytest.raises(DataError, match=r"no cleaned image for \['t0'\]"):
        removal_set(labelled, tmp_path / "cleaned" / "manifest.csv", "patches", size=SIDE)


def test_embedded_default_raw_classifier_shifts_more_under_real_patches_than_the_cleaned_one(tmp_path):
    """The embedded default plants patches on benign lesions (here: on benign ones only, with a lesion that
    diagnoses less well, ``lesion_signal`` 0.4, so a 32 px classifier has a reason to learn them). Trained on
    the raw images, real patches cut from its training images move its predictions towards benign beyond
    the same-shape skin control; trained on the same images cleaned (patches filled by Telea along their
    masks), the same recipe's shift stays at the control's. Mean over three training seeds."""

    config = SyntheticConfig(n_images=600, size=32, seed=3, shortcut_artifact="patches", shortcut_strength=1.0,
                             lesion_signal=0.4, artifact_rates={"patches": 0.4, "ruler": 0.0, "ink": 0.0})
    df = generate_dataset(tmp_path / "raw", config)
    order = np.arange(len(df))
    df["split"] = np.where(order < 360, "train", np.where(order < 450, "val", "test"))
    manifest = tmp_path / "raw" / "manifest.csv"
    write_manifest(df, manifest)
    bit = 1 << ARTIFACT_FLAGS.index("patches")
    for image_id in df["image_id"]:  # the detect stage's masks, here the patches' own
        bits = load_rgb(tmp_path / "raw" / "masks" / f"{image_id}.png", min_size=1)[..., 0]
        save_png(tmp_path / "detections" / "masks" / f"{image_id}.png", (bits & bit) > 0)
    cleaned = tmp_path / "cleaned" / "manifest.csv"
    build_cleaned_dataset(manifest, tmp_path / "detections", cleaned.parent, method="telea", model_dir=None,
                          dilation=1, device="cpu", progress=False)
    bank = cut_bank(manifest, tmp_path / "detections", "patches", min_area=0.01, max_area=0.5)
    data = load_evaluation_data(manifest, size=32, artifacts=[], seed=0, real_banks={"patches": bank},
                                cleaned_manifest=cleaned)
    assert len(data.removals["patches"].melanoma) > 0
    excess = {}
    for variant, path in (("raw", manifest), ("cleaned", cleaned)):
        rows = pd.read_csv(path)
        train, val = (ManifestDataset(rows[rows["split"] == s], path, size=32) for s in ("train", "val"))
        shifts = []
        for seed in range(3):
            model, _ = train_classifier(train, val, ClassifierConfig(arch="resnet10", width=8, image_size=32),
                                        epochs=30, batch_size=16, lr=0.01, seed=seed, device="cpu", progress=False)
            ins = evaluate_classifier(model, 0.5, data, family="natural", variant=variant, seed=seed,
                                      attribution=False).insertions["real_patches"]
            shifts.append(float(np.mean(ins.painted - ins.control)))
        excess[variant] = float(np.mean(shifts))
    assert excess["raw"] < -0.05, excess  # real patches pull predictions towards benign
    assert abs(excess["cleaned"]) < 0.03 and excess["raw"] < excess["cleaned"] - 0.05, excess


def test_claim_intervals_need_defined_bounds():
    nan = float("nan")
    assert _includes_zero({"low": -0.1, "high": 0.2}) and not _excludes_zero({"low": -0.1, "high": 0.2})
    assert _excludes_zero({"low": -0.3, "high": -0.2}) and _excludes_zero({"low": 0.1, "high": 0.2})
    # an undefined figure (no melanoma among the insertion images) supports neither side of the claim
    assert not _includes_zero({"low": nan, "high": nan}) and not _excludes_zero({"low": nan, "high": nan})
    assert not _includes_zero(None) and not _excludes_zero({})


def test_shortcut_direction_comes_from_the_training_labels():
    df = pd.DataFrame({"split": ["train"] * 8 + ["test"] * 2,
                       "melanoma": [1, 1, 0, 0, 0, 0, 1, 0, 1, 1],
                       "patches": [0, 0, 0, 1, 1, np.nan, 0, 0, 1, 1],
                       "ruler": [1, 1, 0, 0, 1, 0, 0, 0, 0, 0]})
    patches = shortcut_association(df, "patches")  # test rows and unlabelled ones left out
    assert (patches["n_with"], patches["n_without"], patches["direction"]) == (2, 5, "benign")
    assert patches["melanoma_share_with"] == 0.0 and patches["melanoma_share_without"] == pytest.approx(0.6)
    assert shortcut_association(df, "ruler")["direction"] == "melanoma"  # 2 of 3 with, 1 of 5 without
    assert shortcut_association(df[df["patches"].ne(1)], "patches")["direction"] is None


def _figs(**excess):
    return {"insertion_excess": {k: {"low": lo, "high": hi} for k, (lo, hi) in excess.items()},
            "insertion_excess_cleaned": {}}


def test_claim_reads_the_flips_and_shift_of_the_shortcut_direction():
    raw = _figs(flip_rate=(0.1, 0.2), flip_m2b=(0.3, 0.5), flip_b2m=(-0.05, 0.0), shift_malignant=(-0.2, -0.1),
                shift_benign=(-0.2, -0.1))
    # the cleaned classifier flips benign images the other way (an unseen artifact), not melanomas
    cleaned = _figs(flip_rate=(0.08, 0.15), flip_m2b=(-0.01, 0.12), flip_b2m=(0.07, 0.19),
                    shift_malignant=(-0.02, 0.02), shift_benign=(0.01, 0.05))
    benign = artifact_claim(raw, cleaned, "benign", auroc_minus_raw=-0.01, max_auroc_drop=0.02)
    assert (benign["flip"], benign["shift"]) == ("flip_m2b", "shift_malignant")
    assert benign["raw_insertion_exceeds_control"] and benign["cleaned_at_control_level"]
    assert benign["auroc_within_drop"]
    assert benign["cleaned_at_control_level_behind_cleaning"] is None  # not measured
    melanoma = artifact_claim(raw, cleaned, "melanoma", auroc_minus_raw=-0.03, max_auroc_drop=0.02)
    assert (melanoma["flip"], melanoma["shift"]) == ("flip_b2m", "shift_benign")
    # raw's shift on benign images goes the shortcut's opposite way: no shortcut towards melanoma shown
    assert not melanoma["raw_insertion_exceeds_control"] and not melanoma["cleaned_at_control_level"]
    assert not melanoma["auroc_within_drop"]
    one_sided = _figs(flip_m2b=(0.3, 0.5), shift_malignant=(-0.05, 0.02))  # flips but no shift: not both
    assert not artifact_claim(one_sided, cleaned, "benign", auroc_minus_raw=0.0,
                              max_auroc_drop=0.02)["raw_insertion_exceeds_control"]


class _RedSquares:
    """A detector stand-in that marks pure red pixels and counts the images it is shown."""

    def __init__(self):
        self.seen = 0

    def detect(self, images, batch_size=16):
        self.seen += len(images)
        return [SimpleNamespace(mask=(im == (255, 0, 0)).all(-1)) for im in images]


def test_pipeline_cleaner_cleans_each_distinct_image_once_and_returns_the_same_pixels():
    rng = np.random.default_rng(0)
    images = [rng.integers(60, 200, (24, 24, 3), dtype=np.uint8) for _ in range(3)]
    images[1][4:9, 4:9] = (255, 0, 0)
    detector = _RedSquares()
    clean = pipeline_cleaner(detector, make_remover("telea", model=None, config=RemovalConfig()), dilation=1,
                             batch_size=2)
    first = clean(images + [images[1].copy()])  # a repeat inside one call is cleaned once
    assert detector.seen == 3 and not (first[1] == (255, 0, 0)).all(-1).any()
    assert np.array_equal(first[1], first[3]) and np.array_equal(first[0], images[0])
    again = clean([images[2], images[1]])
    assert detector.seen == 3 and np.array_equal(again[1], first[1]) and np.array_equal(again[0], first[2])
    again[1][:] = 0  # callers get copies
    assert np.array_equal(clean([images[1]])[0], first[1])
    tight = pipeline_cleaner(detector, make_remover("telea", model=None, config=RemovalConfig()), dilation=1,
                             max_bytes=images[0].nbytes)  # room for one cleaned image: the rest are cleaned anew
    tight(images)
    tight(images)
    assert detector.seen == 3 + 3 + 2
