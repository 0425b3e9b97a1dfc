"""Each image mapped once per model: the memo shared by the detect stage's bundles (tiny real detectors)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dermclean.detection.bundles import Bundle, detect_manifest, fit_and_detect, fit_and_save
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.config import DetectionConfig
from dermclean.detection.detector import Component, Detector
from dermclean.detection.storage import load_detector, save_detector
from dermclean.detection.evaluate import evaluate_detector_full
from dermclean.detection.fusion import FusedDetector
from dermclean.detection.memo import MapMemo, remembering, reused_seconds, share_memo
from dermclean.methods.segment.model import Segmenter, SegmenterConfig
from tests.test_detection_contract import tiny_detector
from tests.test_segment import ROWS, manifest  # noqa: F401  (the fixture)


def segment_detector(seed: int = 0, batch_size: int = 3) -> Detector:
    torch.manual_seed(seed)
    net = Segmenter(SegmenterConfig(image_size=16, widths=[4, 8]))
    config = DetectionConfig(image_size=16, batch_size=batch_size, fpr_budget=0.05)
    return Detector(detector_kind="segment", config=config,
                    unet=Component(net, "segmenter", {}), device="cpu")


def counted(detector: Detector) -> list[int]:
    """Batch sizes of the detector's network passes, appended as they run."""
    sizes: list[int] = []
    detector.unet.module.register_forward_hook(lambda _m, args, _out: sizes.append(int(args[0].shape[0])))
    return sizes


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8) for i in range(n)]


def same(a, b) -> None:
    """The same detections, up to the float noise of running a network on another batch size."""
    assert [d.image_name for d in a] == [d.image_name for d in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.anomaly_map, y.anomaly_map, atol=1e-5)
        np.testing.assert_array_equal(x.mask, y.mask)
        assert x.score == pytest.approx(y.score, abs=1e-5)
        assert x.type_scores == pytest.approx(y.type_scores, abs=1e-5)


def test_a_remembered_image_is_not_mapped_again_and_comes_back_unchanged():
    det, plain = segment_detector(), segment_detector()
    sizes = counted(det)
    pics = images(5)
    expected = plain.detect(pics[2:] + pics[:2] + pics[3:4])
    memo = share_memo([det], MapMemo())
    det.detect(pics[:3])
    assert sum(sizes) == 3 and memo.misses == 3 and memo.hits == 0 and len(memo) == 3
    got = det.detect(pics[2:] + pics[:2] + pics[3:4])  # hits and misses mixed within each batch of 3
    same(got, expected)
    assert sum(sizes) == 5  # only the two new images ran: 3 + 2
    assert memo.hits == 4 and memo.misses == 5 and len(memo) == 5
    assert memo.reused_seconds > 0 and reused_seconds(det) == memo.reused_seconds
    share_memo([det], None)
    det.detect(pics[:1])
    assert sum(sizes) == 6 and memo.hits == 4  # without it, every image runs


def test_the_key_holds_the_pixels_the_weights_and_the_settings_that_shape_the_maps(tmp_path):
    det = tiny_detector()
    pic = images(1)[0]
    memo = share_memo([det], MapMemo())
    det.detect([pic], ["a.png"])
    det.detect([pic], ["elsewhere/a.png"])  # another name, same pixels
    det.with_config(batch_size=1).detect([pic])  # a setting that leaves the maps alone
    assert (memo.hits, memo.misses) == (2, 1)
    other = pic.copy()
    other[0, 0, 0] ^= 1
    det.detect([other], ["a.png"])  # same name, one pixel changed
    det.with_config(noise_level=100).detect([pic])
    det.with_config(smoothing_sigma=0.0).detect([pic])
    assert (memo.hits, memo.misses) == (2, 4)
    save_detector(det, tmp_path / "a")
    save_detector(det, tmp_path / "b")
    copies = [load_detector(tmp_path / "a", device="cpu"), load_detector(tmp_path / "b", device="cpu")]
    assert copies[0].identity == copies[1].identity == det.identity  # two copies of one bundle share entries
    torch.manual_seed(1)
    for p in det.unet.module.parameters():
        p.data.add_(torch.randn_like(p) * 1e-3)
    assert type(det)(detector_kind="guided", config=det.config, unet=det.unet, classifier=det.classifier,
                     device="cpu").identity != copies[0].identity  # other weights, other key


def test_budget_and_frozen_keep_nothing_new():
    det = segment_detector()
    tight = share_memo([det], MapMemo(max_bytes=16 * 16 * 4 + 3 * 4))  # room for one image's map and scores
    det.detect(images(3))
    assert len(tight) == 1 and tight.nbytes == 16 * 16 * 4 + 3 * 4
    memo = share_memo([det], MapMemo())
    with memo.frozen():
        det.detect(images(2))
    assert len(memo) == 0 and memo.misses == 2
    det.detect(images(2))
    assert len(memo) == 2


def test_fused_members_read_what_the_bundles_mapped_in_evaluation(manifest):  # noqa: F811
    first, second = segment_detector(0), segment_detector(1)
    fused = FusedDetector([segment_detector(0), segment_detector(1)], weight=0.5)  # copies, as loaded from disk
    sizes = [counted(d) for d in (first, second, *fused.detectors)]
    with remembering([first, second, fused]) as memo:
        fused.fit([np.zeros((16, 16, 3), np.uint8)] * 2)
        for d in (first, second):
            evaluate_detector_full(d, manifest, split="val", seed=0)
        before = [sum(s) for s in sizes]
        result = evaluate_detector_full(fused, manifest, split="val", seed=0)
    assert [sum(s) for s in sizes] == before  # the fused evaluation ran neither network
    assert before[0] > 0 and before[2] == before[3] == 1  # the copies ran only the fit's one distinct image
    assert result.metrics["seconds_per_image"] > 0  # read maps count at what they cost
    assert first.memo is None and fused.detectors[0].memo is None and memo.hits > 0


def stage_bundles(folder) -> dict[str, Bundle]:
    """One image per network pass: the fused maps' rarity can be steep enough in the clean tail to turn the
    float noise of another batch size into visible differences, and these bundles are compared file by file."""
    first, second = segment_detector(0, batch_size=1), segment_detector(1, batch_size=1)
    return {"segment": Bundle(detector=first, out=folder / "segment"),
            "other": Bundle(detector=second, out=folder / "other"),
            "fused": Bundle(detector=FusedDetector([first, second], weight=0.5), out=folder / "fused")}


def test_the_detect_stage_maps_each_image_once_per_model(manifest, tmp_path):  # noqa: F811
    bundles = stage_bundles(tmp_path / "memo")
    sizes = [counted(bundles[n].detector) for n in ("segment", "other")]
    metrics = fit_and_detect(bundles, "fused", manifest, tmp_path / "memo" / "detections", seed=0, meta={})
    assert [sum(s) for s in sizes] == [len(ROWS), len(ROWS)]  # fits, fused calibration, manifest pass: once each
    assert metrics["n_images"] == len(ROWS) and metrics["seconds_per_image"] > 0
    assert all(b.detector.memo is None for n, b in bundles.items() if n != "fused")
    plain = stage_bundles(tmp_path / "plain")  # the same bundles without a memo write the same files
    plain_sizes = [counted(plain[n].detector) for n in ("segment", "other")]
    fit_and_save(plain, manifest, seed=0, meta={})
    detect_manifest(plain["fused"], "fused", manifest, tmp_path / "plain" / "detections")
    assert sum(plain_sizes[0]) > len(ROWS)
    for name in ("segment", "other", "fused"):
        assert (json.loads((tmp_path / "memo" / name / "threshold.json").read_text())["value"]
                == pytest.approx(json.loads((tmp_path / "plain" / name / "threshold.json").read_text())["value"],
                                 abs=1e-6))
    for iid, *_ in ROWS:
        np.testing.assert_allclose(np.load(tmp_path / "memo" / "detections" / "maps" / f"{iid}.npy"),
                                   np.load(tmp_path / "plain" / "detections" / "maps" / f"{iid}.npy"), atol=1e-6)


def test_memo_needs_no_model_for_detectors_without_one():
    classical = ClassicalDetector()
    with remembering([classical]) as memo:
        classical.detect(images(1))
    assert len(memo) == 0 and not hasattr(classical, "memo")
