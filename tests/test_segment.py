"""The artifact segmenter: batches (full, untouched and weak labels), loss, resumable training, the
segment detector and the real-label report, on 32 px images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermclean.constants import ACQUISITION_EFFECTS, OUTLIER_CLASSES
from dermclean.data.manifest import COLUMNS, write_manifest
from dermclean.detection.config import DetectionConfig
from dermclean.detection.detector import Component, Detector
from dermclean.detection.storage import build_detector, load_detector, save_detector
from dermclean.detection.evaluate import fit_threshold
from dermclean.detection.family_eval import real_label_report
from dermclean.errors import ConfigError
from dermclean.methods.segment.batches import SegmentBatches, SegmentDataConfig, colour_cast
from dermclean.methods.segment.data import load_training_images
from dermclean.methods.segment.fit import fit_segmenter, join_segmenter_folders
from dermclean.methods.segment.real_bank import confident_bank
from dermclean.methods.segment.model import (SEGMENTER_KIND, Segmenter, SegmenterConfig, SegmenterEnsemble,
                                             join_segmenters, top_hats, topk_mean)
from dermclean.methods.segment.train import SegmentTrainConfig, segment_loss, train_segmenter
from dermclean.modelio import load_model_dir, save_model_dir
from dermclean.proof.real_artifacts import ArtifactBank, Cutout
from dermclean.proof.trap_sets import pipeline_detector

SIDE = 32


def skin(rng: np.random.Generator, n: int) -> np.ndarray:
    base = np.clip(np.array([200, 150, 125]) + rng.normal(0, 4, (n, SIDE, SIDE, 3)), 0, 255)
    return base.astype(np.uint8)


def weak_set(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    images = skin(rng, 3)
    images[0, 10:12, :] = 20  # a dark ruler-like band, labelled ruler
    images[1, 5:9, 5:9] = (40, 190, 70)  # a green patch, labelled patches
    images[2, 20:22, 3:28] = 15  # ruler and ink both labelled
    return images, np.array([[1, 0, 0], [0, 0, 1], [1, 1, 0]], np.float32)


def small_batches(seed: int = 0, **overrides) -> SegmentBatches:
    rng = np.random.default_rng(0)
    weak, labels = weak_set(rng)
    cfg = SegmentDataConfig(**{"crop": 16, "untouched_fraction": 0.25, "weak_fraction": 0.25, **overrides})
    return SegmentBatches(skin(rng, 6), weak, labels, batch_size=8, seed=seed, config=cfg)


def test_model_maps_every_type_at_the_input_size_and_topk_pools_the_largest():
    model = Segmenter(SegmenterConfig(image_size=SIDE, widths=[4, 8, 8]))
    logits = model(torch.zeros(2, 3, SIDE, SIDE))
    assert logits.shape == (2, len(OUTLIER_CLASSES), SIDE, SIDE)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, :3] = torch.tensor([5.0, 3.0, 1.0])
    assert topk_mean(x, 2).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="divisible"):
        SegmenterConfig(image_size=30, widths=[4, 8, 8])


def test_line_filters_mark_thin_dark_and_light_lines_and_feed_the_model():
    x = torch.full((1, 3, SIDE, SIDE), 0.4)
    x[0, :, 10, :] = -0.6       # a dark 1 px line
    x[0, :, :, 20] = 1.0        # a light 1 px line
    x[0, :, 24:, 24:] = -0.6    # a dark block wider than the filter
    hats = top_hats(x, [5])
    assert hats.shape == (1, 2, SIDE, SIDE)
    black, white = hats[0, 0], hats[0, 1]
    assert black[10, 5] > 2.5 and black[4, 4] == pytest.approx(-1.0) and black[28, 28] == pytest.approx(-1.0)
    assert white[4, 20] > 1.0 and white[10, 5] == pytest.approx(-1.0, abs=1e-6)
    model = Segmenter(SegmenterConfig(image_size=SIDE, widths=[4, 8], line_filters=[3, 5]))
    assert model(x).shape == (1, len(OUTLIER_CLASSES), SIDE, SIDE)
    with pytest.raises(ValueError, match="odd"):
        SegmenterConfig(image_size=SIDE, widths=[4, 8], line_filters=[4])


def test_colour_constancy_makes_the_maps_blind_to_the_acquisition_cast():
    torch.manual_seed(0)
    x01 = torch.rand(1, 3, SIDE, SIDE) * 0.5 + 0.2
    illuminant = x01.pow(6).mean(dim=(-2, -1)).pow(1 / 6)[0]
    gains = torch.tensor([0.7, 1.0, 1.25])
    gains = gains * illuminant.mean() / (illuminant * gains).mean()  # a cast that keeps the mean illuminant
    tinted = x01 * gains[:, None, None]
    maps = {}
    for on in (True, False):
        torch.manual_seed(1)
        model = Segmenter(SegmenterConfig(image_size=SIDE, widths=[4, 8], line_filters=[3],
                                          colour_constancy=on)).eval()
        with torch.no_grad():
            maps[on] = [model(im * 2 - 1) for im in (x01, tinted)]
    assert torch.allclose(*maps[True], atol=1e-5)
    assert not torch.allclose(*maps[False], atol=1e-3)


def test_batches_supervise_painted_pixels_and_only_the_absent_types_of_weak_images():
    batches = small_batches()
    b = batches.batch(3)
    assert b.x.shape == (8, 3, 16, 16) and b.target.shape == (8, 3, 16, 16)
    assert float(b.x.min()) >= -1.0 and float(b.x.max()) <= 1.0
    painted = b.pixel_weight.sum(1) == 3
    # where every channel is supervised, the image label is whether the channel's target has a pixel
    assert torch.equal(b.image_label[painted], (b.target[painted].flatten(2).amax(-1) > 0).float())
    weak = ~painted
    # a weak image: pixel supervision exactly on the types its label says are absent, empty targets
    assert torch.equal(b.pixel_weight[weak], 1 - b.image_label[weak])
    assert float(b.target[weak].sum()) == 0.0
    again = small_batches().batch(3)
    assert torch.equal(again.x, b.x) and torch.equal(again.target, b.target)  # seeded per step: resumable
    assert not torch.equal(batches.batch(4).x, b.x)
    draws = [small_batches().batch(k) for k in range(6)]
    assert any(float(d.target.sum()) > 0 for d in draws)  # painting happens
    assert sum(int((d.pixel_weight.sum(1) < 3).sum()) for d in draws) > 0  # weak images are drawn


def test_distractors_change_clean_images_but_stay_negatives():
    plain = small_batches(untouched_fraction=1.0, weak_fraction=0.0, crop=None).batch(2)
    hard = small_batches(untouched_fraction=1.0, weak_fraction=0.0, crop=None, distractor_fraction=1.0,
                         distractors=["hair"]).batch(2)
    assert float(hard.target.sum()) == 0.0 and float(hard.pixel_weight.min()) == 1.0
    # dark hair drawn over the skin: some pixels far darker than any clean draw
    assert float(hard.x.min()) < float(plain.x.min()) - 0.3
    with pytest.raises(ValueError, match="acquisition effects"):
        SegmentDataConfig(distractors=["ruler"])


def test_lifelike_hair_darkens_clean_views_but_stays_negative():
    plain = small_batches(untouched_fraction=1.0, weak_fraction=0.0, crop=None).batch(2)
    hairy = small_batches(untouched_fraction=1.0, weak_fraction=0.0, crop=None, hair_fraction=1.0).batch(2)
    assert float(hairy.target.sum()) == 0.0 and float(hairy.pixel_weight.min()) == 1.0
    changed = (hairy.x - plain.x).abs().amax(1) > 0.05  # (B, S, S): pixels the hair moved
    assert all(bool(c.any()) for c in changed)  # every view carries hair
    assert float(changed.float().mean()) < 0.6  # strands, not a wash over the whole view
    with pytest.raises(ValueError, match="hair_fraction"):
        SegmentDataConfig(hair_fraction=1.5)


def test_colour_casts_shift_whole_views_and_leave_targets_alone():
    rng = np.random.default_rng(0)
    image = skin(rng, 1)[0]
    casts = [colour_cast(image, np.random.default_rng(k), 0.4) for k in range(8)]
    ratios = [np.log(c[..., 0].mean() / c[..., 2].mean()) for c in casts]
    assert max(ratios) - min(ratios) > 0.3  # the red-to-blue balance moves by tens of percent
    assert np.array_equal(colour_cast(image, np.random.default_rng(0), 0.0), image)
    def balance_spread(b) -> float:  # spread over the batch of each view's red-to-blue balance
        rgb = (b.x + 1.0).mean(dim=(2, 3))
        return float((rgb[:, 0] / rgb[:, 2]).log().std())

    plain = small_batches(untouched_fraction=1.0, weak_fraction=0.0).batch(5)
    cast = small_batches(untouched_fraction=1.0, weak_fraction=0.0, colour_cast_fraction=1.0).batch(5)
    assert float(cast.target.sum()) == 0.0 and float(cast.pixel_weight.min()) == 1.0  # still negatives
    assert balance_spread(cast) > 0.1 > balance_spread(plain)
    with pytest.raises(ValueError, match="colour_cast_strength"):
        SegmentDataConfig(colour_cast_strength=1.5)


def test_style_fraction_paints_with_the_style_renderer_instead_of_the_families():
    plain = np.zeros((4, SIDE, SIDE, 3), np.uint8)
    plain[:] = (200, 150, 125)

    def views(style_fraction: float):
        cfg = SegmentDataConfig(crop=None, untouched_fraction=0.0, weak_fraction=0.0, style_fraction=style_fraction)
        batch = SegmentBatches(plain, plain[:0], np.zeros((0, 3)), batch_size=8, seed=3, config=cfg).batch(0)
        image = ((batch.x + 1.0) * 127.5).round()
        off = batch.target.amax(1, keepdim=True) == 0  # pixels no artifact covers
        return batch, (image - torch.tensor([200.0, 150.0, 125.0]).view(1, 3, 1, 1)).abs() * off

    styled, styled_off = views(1.0)
    families, families_off = views(0.0)
    assert float(styled.target.flatten(1).amax(1).min()) == 1.0  # every view painted
    assert float(styled_off.max()) == 0.0  # the style renderer leaves the rest of the image exact
    assert float(families_off.max()) > 0.0  # the families degrade the whole image (noise, JPEG)
    with pytest.raises(ValueError, match="style_fraction"):
        SegmentDataConfig(style_fraction=-0.1)


def test_labelled_backgrounds_paint_and_supervise_only_the_types_their_label_says_are_absent():
    rng = np.random.default_rng(0)
    weak, labels = weak_set(rng)
    weak = np.concatenate([weak, skin(rng, 1)])
    labels = np.concatenate([labels, [[1, 1, 1]]]).astype(np.float32)  # every type present: never a background
    cfg = SegmentDataConfig(crop=None, untouched_fraction=0.0, weak_fraction=0.0, labelled_background_fraction=1.0)
    batch = SegmentBatches(skin(rng, 2), weak, labels, batch_size=8, seed=1, config=cfg).batch(0)
    allowed = {tuple(1.0 - row) for row in labels[:3]}
    assert {tuple(w.tolist()) for w in batch.pixel_weight} <= allowed
    assert len({tuple(w.tolist()) for w in batch.pixel_weight}) > 1
    assert torch.equal(batch.image_weight, batch.pixel_weight)
    painted = batch.target.flatten(2).amax(2)  # (B, K): which channels hold painted pixels
    assert float((painted * (1.0 - batch.pixel_weight)).max()) == 0.0  # never a type the label says is there
    assert float(painted.amax(1).min()) == 1.0  # every view painted with some absent type
    plain = SegmentBatches(skin(rng, 2), weak, labels, batch_size=8, seed=1,
                           config=SegmentDataConfig(crop=None, untouched_fraction=0.0, weak_fraction=0.0)).batch(0)
    assert float(plain.pixel_weight.min()) == 1.0  # without the option, clean backgrounds only


GREEN = (40, 190, 70)


def green_bank() -> ArtifactBank:
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[:] = GREEN
    mask = np.ones((6, 6), bool)
    mask[0, 0] = False
    return ArtifactBank(artifact="patches", n_source_images=1,
                        cutouts=[Cutout(rgb=rgb, mask=mask, source_id="s", source_side=SIDE)])


def test_real_cutouts_are_pasted_as_their_type_and_no_other():
    def batches(**overrides) -> SegmentBatches:
        rng = np.random.default_rng(0)
        cfg = SegmentDataConfig(**{"crop": None, "untouched_fraction": 0.0, "weak_fraction": 0.0, **overrides})
        return SegmentBatches(skin(rng, 6), *weak_set(rng), batch_size=8, seed=0, config=cfg, banks=[green_bank()])

    b = batches(real_paste_fraction=1.0).batch(1)
    x = ((b.x + 1.0) * 127.5).round().permute(0, 2, 3, 1)
    green = (x == torch.tensor(GREEN, dtype=x.dtype)).all(-1)  # the pasted pixels (skin and paint are not this green)
    assert int(green.flatten(1).sum(1).min()) == 35  # every view received the whole cut-out, its 35 pixels
    patches = OUTLIER_CLASSES.index("patches")
    assert bool(b.target[:, patches][green].eq(1).all())
    others = [k for k in range(len(OUTLIER_CLASSES)) if k != patches]
    assert float(b.target[:, others].permute(0, 2, 3, 1)[green].sum()) == 0.0  # covers what it was pasted over
    # a zero share leaves the batches exactly as without a bank; a share without a bank is refused
    rng = np.random.default_rng(0)
    cfg = SegmentDataConfig(crop=None, untouched_fraction=0.0, weak_fraction=0.0)
    plain = SegmentBatches(skin(rng, 6), *weak_set(rng), batch_size=8, seed=0, config=cfg).batch(1)
    assert torch.equal(batches().batch(1).x, plain.x)
    with pytest.raises(ValueError, match="no real cut-outs"):
        SegmentBatches(skin(rng, 2), *weak_set(rng), batch_size=2, seed=0,
                       config=SegmentDataConfig(real_paste_fraction=0.5))


def test_confident_bank_cuts_the_labelled_images_along_the_types_channel(manifest, tmp_path):
    cfg = SegmenterConfig(image_size=SIDE, widths=[4, 8])
    model = Segmenter(cfg)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([-8.0, -8.0, 8.0]))  # confident of patches everywhere, of nothing else
    save_model_dir(tmp_path / "model", kind=SEGMENTER_KIND, config=cfg, module=model)
    bank = confident_bank(tmp_path / "model", manifest, "patches", max_area=1.0)
    assert bank.n_source_images == 1 and [c.source_id for c in bank.cutouts] == ["w_p"]  # train, patches alone
    (cutout,) = bank.cutouts
    assert cutout.mask.all() and cutout.rgb.shape == (SIDE, SIDE, 3) and cutout.edges == {"top", "bottom", "left",
                                                                                            "right"}
    assert confident_bank(tmp_path / "model", manifest, "patches").cutouts == []  # the whole image is too large
    ruler = confident_bank(tmp_path / "model", manifest, "ruler", max_area=1.0)
    assert ruler.n_source_images == 1 and ruler.cutouts == []  # w_r's ruler channel is not confident
    with pytest.raises(ValueError, match="threshold"):
        confident_bank(tmp_path / "model", manifest, "patches", threshold=1.0)


def test_excluded_families_and_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="at most 1"):
        SegmentDataConfig(untouched_fraction=0.6, weak_fraction=0.6)
    with pytest.raises(ValueError, match="n_min"):
        SegmentDataConfig(n_min=0)
    with pytest.raises(ValueError, match="weak images but"):
        SegmentBatches(skin(np.random.default_rng(0), 2), skin(np.random.default_rng(1), 2), np.zeros((1, 3)),
                       batch_size=2, seed=0, config=SegmentDataConfig())


def test_loss_rewards_the_right_map():
    batch = small_batches().batch(1)
    cfg = SegmentTrainConfig(steps=1, mil_topk=4)
    right = torch.where(batch.target > 0, 8.0, -8.0)
    # weak positives: put the evidence somewhere so the multiple-instance term is met too
    present = (batch.image_label > 0)[..., None]
    right[..., 0, :4] = torch.where(present, 8.0, right[..., 0, :4])
    wrong = -right
    good, bad = segment_loss(right, batch, cfg), segment_loss(wrong, batch, cfg)
    assert float(good["total"]) < 0.1 < float(bad["total"])
    assert all(float(good[k]) < float(bad[k]) for k in ("pixel", "mil"))


class Interrupt(Exception):
    pass


def test_training_resumes_to_the_same_weights(tmp_path):
    cfg = SegmenterConfig(image_size=16, widths=[4, 8])
    train_cfg = SegmentTrainConfig(steps=4, checkpoint_every=2, warmup_steps=1, log_every=1)
    straight = train_segmenter(small_batches(), cfg, train_cfg, checkpoint_dir=tmp_path / "a", device="cpu", seed=0,
                               progress=False)

    def stop_at_three(step, losses):
        assert np.isfinite(losses["loss"])
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_segmenter(small_batches(), cfg, train_cfg, checkpoint_dir=tmp_path / "b", device="cpu", seed=0,
                        on_log=stop_at_three, progress=False)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = train_segmenter(small_batches(), cfg, train_cfg, checkpoint_dir=tmp_path / "b", device="cpu", seed=0,
                              progress=False)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="different model"):
        train_segmenter(small_batches(), SegmenterConfig(image_size=16, widths=[4, 4]), train_cfg,
                        checkpoint_dir=tmp_path / "b", device="cpu", seed=0, progress=False)


ROWS = [  # (id, split, ruler, ink, patches, hair)
    *[(f"c{i}", "train", 0, 0, 0, i % 2) for i in range(4)], ("w_r", "train", 1, 0, 0, 0), ("w_p", "train", 0, 0, 1, 0),
    *[(f"v{i}", "val", 0, 0, 0, i % 2) for i in range(4)], ("v_r", "val", 1, 0, 0, 0), ("v_i", "val", 0, 1, 0, 0),
    ("v_p", "val", 0, 0, 1, 0), ("v_q", "val", None, 0, 0, 0),
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    records = []
    for iid, split, ruler, ink, patches, hair in ROWS:
        image = skin(rng, 1)[0]
        if ruler:
            image[14:16, :] = 20
        if ink:
            image[4:6, 4:20] = (130, 30, 170)
        if patches:
            image[20:26, 20:26] = (40, 190, 70)
        Image.fromarray(image).save(root / "images" / f"{iid}.png")
        row = {c: None for c in COLUMNS}
        row.update(image_id=iid, image_path=f"images/{iid}.png", diagnosis="nevus", melanoma=0, split=split,
                   source="test", ruler=ruler, ink=ink, patches=patches, hair=hair, dark_corner=0, gel_bubble=0,
                   gel_border=0)
        records.append(row)
    path = root / "manifest.csv"
    write_manifest(pd.DataFrame(records), path)
    return path


def test_segment_detector_end_to_end(manifest, tmp_path):
    clean, weak, labels = load_training_images(manifest, size=SIDE)
    assert clean.shape == (4, SIDE, SIDE, 3) and weak.shape == (2, SIDE, SIDE, 3)
    assert labels.tolist() == [[1, 0, 0], [0, 0, 1]]
    batches = SegmentBatches(clean, weak, labels, batch_size=4, seed=0,
                             config=SegmentDataConfig(crop=16, distractor_fraction=0.5))
    cfg = SegmenterConfig(image_size=SIDE, widths=[4, 8], line_filters=[3])  # the saved bundle keeps its channels
    model = train_segmenter(batches, cfg, SegmentTrainConfig(steps=3, warmup_steps=1), checkpoint_dir=tmp_path / "ck",
                            device="cpu", seed=0, progress=False)
    save_model_dir(tmp_path / "model", kind=SEGMENTER_KIND, config=cfg, module=model)
    det = build_detector(detector_kind="segment", unet_dir=tmp_path / "model", config=DetectionConfig(fpr_budget=0.05))
    assert det.name == "segment" and det.image_score_kind == "classifier"
    det.threshold = fit_threshold(det, manifest, split="val")
    out = det.detect([np.zeros((40, 24, 3), np.uint8)])
    assert out[0].anomaly_map.shape == (40, 24) and out[0].mask.shape == (40, 24)
    assert 0.0 <= float(out[0].anomaly_map.min()) <= float(out[0].anomaly_map.max()) <= 1.0  # probabilities
    maps, types = det.maps_and_types(torch.zeros(2, 3, SIDE, SIDE), torch.zeros(2, 3, SIDE, SIDE))
    assert torch.equal(maps, det.anomaly_maps(torch.zeros(2, 3, SIDE, SIDE)))  # one pass gives both
    assert torch.equal(types, det.type_scores(torch.zeros(2, 3, SIDE, SIDE)))
    assert all(0.0 <= v <= 1.0 for v in out[0].type_scores.values()) and 0.0 <= out[0].score <= 1.0
    save_detector(det, tmp_path / "bundle")
    again = load_detector(tmp_path / "bundle")
    assert np.array_equal(again.detect([np.zeros((40, 24, 3), np.uint8)])[0].anomaly_map, out[0].anomaly_map)
    report = real_label_report(det, manifest, "val", n_boot=50)
    assert report["images"] == 7  # the row with an unknown ruler label is left out
    assert set(report["image_auroc"]) == {"any", *OUTLIER_CLASSES}
    assert report["image_auroc"]["ruler"]["positives"] == 1
    assert set(report["fp_area"]) == {"all", "none", *ACQUISITION_EFFECTS}
    assert report["fp_images"]["hair"] == 2 and report["fp_images"]["none"] == 2
    assert np.isnan(report["fp_area"]["gel_bubble"])  # no clean val image has one
    assert 0.0 <= report["fp_area"]["all"] <= 1.0


def test_fit_from_params_trains_saves_and_refuses_unknown_keys(manifest, tmp_path):
    params = {"seed": 0, "segment": {"model": {"image_size": SIDE, "widths": [4, 8]}, "data": {"crop": 16},
                                     "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1}}}
    fit = fit_segmenter(params, manifest, checkpoints=tmp_path / "ck", device="cpu", progress=False,
                        exclude_families=["ruler/edge_ticks"])
    assert fit.data_config.exclude_families == ["ruler/edge_ticks"]
    assert fit.metrics["train_images_clean"] == 4 and fit.metrics["train_images_labelled"] == 2
    folder = fit.save(tmp_path / "model")["segmenter"]
    assert (folder / "config.json").is_file()
    no_weak = fit_segmenter(params, manifest, checkpoints=tmp_path / "ck", device="cpu", progress=False, weak=False)
    assert no_weak.data_config.weak_fraction == 0.0 and no_weak.metrics["train_images_labelled"] == 0
    zero = {**params, "segment": {**params["segment"], "data": {**params["segment"]["data"], "weak_fraction": 0.0}}}
    same = fit_segmenter(zero, manifest, checkpoints=tmp_path / "ck_zero", device="cpu", progress=False)
    assert same.metrics["train_images_labelled"] == 0  # a zero weak share loads no labelled images
    # and trains the model weak=False does (own checkpoints, so equal by training, not by resuming)
    assert all(torch.equal(a, b) for a, b in zip(same.model.state_dict().values(),
                                                  no_weak.model.state_dict().values()))
    pasting = {**params, "segment": {**params["segment"], "data": {"crop": 16, "real_paste_fraction": 0.5}}}
    with pytest.raises(ConfigError, match="real_paste_fraction"):
        fit_segmenter(pasting, manifest, checkpoints=tmp_path / "ck", device="cpu", progress=False)
    pasted = fit_segmenter(pasting, manifest, checkpoints=tmp_path / "ck", device="cpu", progress=False,
                           banks=[green_bank()])
    assert pasted.data_config.real_paste_fraction == 0.5
    with pytest.raises(ConfigError, match="unknown keys"):
        fit_segmenter({"seed": 0, "segment": {"modle": {}}}, manifest, checkpoints=tmp_path / "ck", device="cpu")


def test_members_train_apart_with_successive_seeds_and_average_their_logits(manifest, tmp_path):
    section = {"model": {"image_size": SIDE, "widths": [4, 8]}, "data": {"crop": 16, "weak_fraction": 0.0},
               "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1}}
    ck = tmp_path / "ck"
    single = {s: fit_segmenter({"seed": s, "segment": section}, manifest, checkpoints=ck, device="cpu",
                               progress=False).model for s in (3, 4)}
    assert not torch.equal(single[3].head.weight, single[4].head.weight)
    two = {**section, "model": {**section["model"], "members": 2},
           "train": {**section["train"], "log_every": 1}}
    logged = []
    fit = fit_segmenter({"seed": 3, "segment": two}, manifest, checkpoints=tmp_path / "ck_two", device="cpu",
                        progress=False, on_log=lambda step, m: logged.append((step, sorted(m))))
    assert isinstance(fit.model, SegmenterEnsemble) and fit.metrics["members"] == 2
    assert [(step, keys[0]) for step, keys in logged] == [(1, "dice"), (2, "dice"), (1, "member1_dice"),
                                                          (2, "member1_dice")]
    same = {**section, "model": {**section["model"], "members": 2}}
    fit_segmenter({"seed": 3, "segment": same}, manifest, checkpoints=ck, device="cpu", progress=False)
    assert len(list(ck.iterdir())) == 2  # its networks have the single runs' checkpoint keys
    for member, seed in zip(fit.model.members, (3, 4)):
        assert all(torch.equal(a, b) for a, b in zip(member.state_dict().values(),
                                                      single[seed].state_dict().values()))
    x = torch.rand(2, 3, SIDE, SIDE) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(fit.model(x), (single[3](x) + single[4](x)) / 2, atol=1e-6)
    folder = fit.save(tmp_path / "model")["segmenter"]
    module, config, _ = load_model_dir(folder, expect_kind=SEGMENTER_KIND)
    assert isinstance(module, SegmenterEnsemble) and config.members == 2
    with torch.no_grad():
        assert torch.equal(module(x), fit.model(x))
    det = build_detector(detector_kind="segment", unet_dir=folder, config=DetectionConfig(image_size=SIDE),
                         device="cpu")
    assert det.anomaly_maps(x).shape == (2, SIDE, SIDE)
    # two saved single networks joined afterwards are the same ensemble
    for seed in (3, 4):
        save_model_dir(tmp_path / f"s{seed}", kind=SEGMENTER_KIND, config=single[seed].config, module=single[seed])
    joined = join_segmenter_folders([tmp_path / "s3", tmp_path / "s4"], tmp_path / "joined")
    module, _, meta = load_model_dir(joined)
    assert meta["joined_from"] == [str(tmp_path / "s3"), str(tmp_path / "s4")]
    with torch.no_grad():
        assert torch.equal(module(x), fit.model(x))
    with pytest.raises(FileExistsError):
        join_segmenter_folders([tmp_path / "s3"], tmp_path / "joined")
    with pytest.raises(ValueError, match="different shapes"):
        join_segmenters([single[3], Segmenter(SegmenterConfig(image_size=SIDE, widths=[4, 16]))])
    with pytest.raises(ConfigError, match="params: segment.model: segment model members must be at least 1"):
        fit_segmenter({"seed": 3, "segment": {**section, "model": {**section["model"], "members": 0}}}, manifest,
                      checkpoints=ck, device="cpu", progress=False)


def test_pipeline_detector_can_name_the_segment_bundle(tmp_path):
    params = {"detection": {"pipeline_detector": "segment"}}
    folders = {"guided": tmp_path / "g", "imagecond": tmp_path / "i"}
    assert pipeline_detector(params, **folders, segment=tmp_path / "s") == tmp_path / "s"
    with pytest.raises(ConfigError, match="no segment bundle"):
        pipeline_detector(params, **folders)


def test_map_tta_averages_the_mirrors_so_a_mirrored_image_gets_the_mirrored_map():
    torch.manual_seed(0)
    net = Segmenter(SegmenterConfig(image_size=16, widths=[4, 8]))
    plain, tta = (Detector(detector_kind="segment", config=DetectionConfig(image_size=16, map_tta=flag),
                           unet=Component(net, "segmenter", {}), device="cpu") for flag in (False, True))
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    mirrored = image[:, ::-1].copy()
    a, b = tta.detect([image, mirrored])
    np.testing.assert_allclose(b.anomaly_map, a.anomaly_map[:, ::-1], atol=1e-6)
    assert b.type_scores == pytest.approx(a.type_scores, abs=1e-6)
    p, q = plain.detect([image, mirrored])
    assert np.abs(q.anomaly_map - p.anomaly_map[:, ::-1]).max() > 1e-3  # the network alone is not symmetric


def test_opacity_scales_how_strongly_the_families_paint():
    plain = np.zeros((4, SIDE, SIDE, 3), np.uint8)
    plain[:] = (200, 150, 125)

    def contrast(opacity):
        cfg = SegmentDataConfig(crop=None, untouched_fraction=0.0, weak_fraction=0.0, opacity=opacity)
        batch = SegmentBatches(plain, plain[:0], np.zeros((0, 3)), batch_size=8, seed=3, config=cfg).batch(0)
        on = batch.target.amax(1, keepdim=True) > 0  # painted pixels
        change = (((batch.x + 1.0) * 127.5) - torch.tensor([200.0, 150.0, 125.0]).view(1, 3, 1, 1)).abs()
        return float(change.amax(1, keepdim=True)[on].mean())

    assert contrast([0.1, 0.1]) < 0.4 * contrast([1.0, 1.0])
    for bad in ([0.0, 0.5], [0.8, 0.5], [0.5, 1.5], 0.5, ["a", "b"]):
        with pytest.raises(ValueError, match="segment opacity must be"):
            SegmentDataConfig(opacity=bad)
