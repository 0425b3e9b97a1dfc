"""The `detect` contract, the detector bundle and predict_paths, on a tiny untrained bundle (16 px, 2 steps)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermclean.data.images import ImageError, to_tensor
from dermclean.detection import (
    DetectionConfig, Detector, NotADetectorError, Threshold, load_detector, predict_paths, run_detect_dir,
    save_detector,
)
from dermclean.detection.bench import bench_detect, format_bench
from dermclean.detection.detector import Component
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.env import autocast, cpu_bf16
from dermclean.methods.guided.noisy_classifier import NoisyClassifier, NoisyClassifierConfig, class_probabilities

SIZES = {"a.png": (40, 50), "b.JPG": (64, 36), "c.jpeg": (33, 33)}


def tiny_detector(*, classifier: bool = True, guidance: str = "cfg") -> Detector:
    torch.manual_seed(0)
    unet = DermUNet(UNetConfig(sample_size=16, block_out_channels=[8, 16]))
    clf = NoisyClassifier(NoisyClassifierConfig(sample_size=16, width=8, depth=2)) if classifier else None
    config = DetectionConfig(guidance=guidance, noise_level=200, guidance_scale=2.0, steps=2, inversion_iters=0,
                             batch_size=2, image_size=16)
    return Detector(detector_kind="guided", config=config, unet=Component(unet, "unet", {}),
                    classifier=Component(clf, "noisy_classifier", {}) if clf else None,
                    threshold=Threshold(value=0.5, fpr_budget=0.01, n_images=1, n_pixels=256), device="cpu")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "detector"
    save_detector(tiny_detector(), path)
    return path


@pytest.fixture()
def images_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_bundle_round_trip(bundle):
    record = json.loads((bundle / "config.json").read_text())
    assert record["kind"] == "detector" and record["detector_kind"] == "guided"
    assert {"guidance", "noise_level", "guidance_scale", "steps", "smoothing_sigma", "image_size",
            "batch_size"} <= set(record["config"])
    assert (bundle / "unet" / "weights.pt").is_file() and (bundle / "noisy_classifier" / "config.json").is_file()
    det = load_detector(bundle, device="cpu")
    assert det.threshold.value == 0.5 and det.config.steps == 2
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(det.anomaly_maps(x), tiny_detector().anomaly_maps(x))
    with pytest.raises(NotADetectorError, match="not a detector"):
        load_detector(bundle / "unet")


def test_cpu_bf16_runs_the_model_in_bf16_only_when_asked():
    cpu = torch.device("cpu")
    with autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")
    with cpu_bf16(True):
        with autocast(cpu):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        with cpu_bf16(False), autocast(cpu):
            assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")  # the setting does not leak out of its block
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    det = tiny_detector()
    fp32, bf16 = det.anomaly_maps(x), det.with_config(cpu_bf16=True).anomaly_maps(x)
    assert bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)
    # bf16 keeps ~3 significant digits: the maps agree to a small fraction of their range
    assert (fp32 - bf16).abs().max() < 0.05 * float(fp32.max())


def test_score_tta_averages_type_scores_over_d4():
    det = tiny_detector()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    plain, averaged = det.type_scores(x), det.with_config(score_tta=True).type_scores(x)
    assert torch.allclose(plain, class_probabilities(det.classifier.module, x))
    assert torch.allclose(averaged, class_probabilities(det.classifier.module, x, tta=True))
    assert not torch.allclose(plain, averaged)
    maps = det.anomaly_maps(x)
    assert torch.allclose(det.with_config(score_tta=True).image_scores(maps, averaged),
                          1 - torch.prod(1 - averaged, dim=1))


def test_classifier_with_more_pixels_scores_images_at_its_input_size():
    det = tiny_detector()
    torch.manual_seed(1)
    det.classifier = Component(NoisyClassifier(NoisyClassifierConfig(sample_size=16, width=8, depth=2,
                                                                     input_scale=2)).eval(), "noisy_classifier", {})
    assert det.score_size == 32
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (48, 40, 3), dtype=np.uint8) for _ in range(2)]
    found = det.detect(images)
    expected = class_probabilities(det.classifier.module, torch.stack([to_tensor(im, 32) for im in images]))
    got = torch.tensor([[d.type_scores[c] for c in ("ruler", "ink", "patches")] for d in found])
    assert torch.allclose(got, expected, atol=1e-6)
    assert found[0].anomaly_map.shape == (48, 40)


def test_detect_returns_records_at_input_size():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in SIZES.values()]
    dets = tiny_detector(classifier=False).detect(images, list(SIZES))
    for det, img in zip(dets, images):
        assert det.anomaly_map.shape == img.shape[:2] and det.anomaly_map.dtype == np.float32
        assert det.mask.shape == img.shape[:2] and det.mask.dtype == bool
        assert set(det.type_scores) == {"ruler", "ink", "patches"} and np.isfinite(det.score)


def test_run_detect_dir_writes_the_contract(bundle, images_dir, tmp_path):
    out, skipped = run_detect_dir(images_dir, tmp_path / "out", model=bundle, device="cpu")
    assert skipped == []
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["image", "score", "ruler", "ink", "patches"]
    assert sorted(scores["image"]) == sorted(SIZES)
    for name, (h, w) in SIZES.items():
        stem = name.rsplit(".", 1)[0]
        amap = np.load(out / "maps" / f"{stem}.npy")
        assert amap.dtype == np.float32 and amap.shape == (h, w)
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert mask.dtype == np.uint8 and mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, amap > 0.5)
    run = json.loads((out / "run.json").read_text())
    for key in ("model_uri", "model_version", "noise_level", "guidance_scale", "guidance", "steps", "threshold",
                "device", "time"):
        assert key in run
    assert run["threshold"]["value"] == 0.5 and run["device"] == "cpu" and run["n_images"] == 3


def test_non_empty_out_is_refused_unless_overwrite(bundle, images_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_detect_dir(images_dir, out, model=bundle, device="cpu")
    assert (out / "old.txt").is_file()
    with pytest.raises(FileExistsError, match="not written by `dermclean detect`"):  # not ours: never replaced
        run_detect_dir(images_dir, out, model=bundle, device="cpu", batch_size=1, overwrite=True)
    assert (out / "old.txt").read_text() == "keep me"
    ours = tmp_path / "ours"
    run_detect_dir(images_dir, ours, model=bundle, device="cpu")
    (ours / "stale.txt").write_text("")
    run_detect_dir(images_dir, ours, model=bundle, device="cpu", batch_size=1, overwrite=True)
    assert (ours / "scores.csv").is_file() and not (ours / "stale.txt").exists()


def test_duplicate_stems_are_an_error(bundle, images_dir, tmp_path):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(images_dir / "a.jpg")
    with pytest.raises(ImageError, match="'a'"):
        run_detect_dir(images_dir, tmp_path / "out", model=bundle, device="cpu")
    assert not (tmp_path / "out").exists()


def test_bad_image_is_refused_and_nothing_is_written(bundle, images_dir, tmp_path):
    (images_dir / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ImageError, match="zz_broken.png"):
        run_detect_dir(images_dir, tmp_path / "out", model=bundle, device="cpu")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["images"], "a temporary folder was left behind"


def test_missing_model_says_how_to_get_one(images_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="--model"):
        run_detect_dir(images_dir, tmp_path / "out", model=tmp_path / "nowhere", device="cpu")


def test_predict_paths_frame(bundle, images_dir):
    paths = sorted(p for p in images_dir.iterdir() if p.suffix != ".txt")
    frame = predict_paths(bundle, paths, device="cpu", batch_size=3)
    assert list(frame.columns) == ["image", "score", "ruler", "ink", "patches"]
    assert list(frame["image"]) == [p.name for p in paths]
    assert frame[["ruler", "ink", "patches"]].apply(lambda c: c.between(0, 1)).all().all()


def test_bench_reports_configured_and_reference(bundle):
    det = load_detector(bundle, device="cpu")
    det.unet.module.config.num_train_timesteps = 8  # a short reference run: L = 4 of 8, every step
    det = det.with_config(noise_level=4)
    result = bench_detect(det, torch.rand(3, 3, 16, 16) * 2 - 1, n_images=3, reference_images=1)
    assert result["configured"]["images"] == 3 and result["configured"]["images_per_s"] > 0
    assert result["reference"]["steps"] == 4 and result["reference"]["batch_size"] == 1
    assert result["reference"]["images"] == 1
    assert result["cpu_bf16"] is False and "fp32" in format_bench(result).splitlines()[0]
    bf16 = bench_detect(det, torch.rand(2, 3, 16, 16) * 2 - 1, n_images=2, reference=False, cpu_bf16=True)
    assert bf16["cpu_bf16"] is True and "bf16" in format_bench(bf16).splitlines()[0]


def test_bench_of_an_imagecond_detector_reports_its_start_level():
    torch.manual_seed(0)
    unet = DermUNet(UNetConfig(sample_size=16, block_out_channels=[8, 16], num_classes=0, cond_image_channels=3))
    config = DetectionConfig(noise_level=400, steps=2, batch_size=2, image_size=16, imagecond_noise_level=100)
    det = Detector(detector_kind="imagecond", config=config, unet=Component(unet, "unet", {}), classifier=None,
                   threshold=None, device="cpu")
    result = bench_detect(det, torch.rand(2, 3, 16, 16) * 2 - 1, n_images=2)
    assert result["configured"]["noise_level"] == 100 and result["configured"]["guidance"] == "imagecond"
    assert "reference" not in result  # Wolleb's reference is a guided configuration
    pure = bench_detect(det.with_config(imagecond_noise_level=None), torch.rand(2, 3, 16, 16) * 2 - 1, n_images=2)
    assert pure["configured"]["noise_level"] == unet.config.num_train_timesteps


def test_map_colour_constancy_gives_a_colour_cast_image_the_map_of_the_image_without_it():
    torch.manual_seed(0)
    unet = DermUNet(UNetConfig(sample_size=16, block_out_channels=[8, 16], num_classes=0, cond_image_channels=3))
    plain, constant = (Detector(detector_kind="imagecond", config=DetectionConfig(steps=1, image_size=16,
                                                                                  map_colour_constancy=flag),
                                unet=Component(unet, "unet", {}), classifier=None, threshold=None, device="cpu")
                       for flag in (False, True))
    skin = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.4 + 0.2
    illuminant = skin.pow(6).mean(dim=(-2, -1)).pow(1 / 6)[0]  # shades of grey's estimate, per channel
    blue = (illuminant.sum() - 1.3 * illuminant[0] - illuminant[1]) / illuminant[2]  # same mean brightness
    cast = skin * torch.stack([torch.tensor(1.3), torch.tensor(1.0), blue]).view(1, 3, 1, 1)  # a red cast
    assert cast.max() < 1 and blue < 0.9
    a, b = (constant.anomaly_maps(v * 2 - 1) for v in (skin, cast))
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4)
    p, q = (plain.anomaly_maps(v * 2 - 1) for v in (skin, cast))
    assert np.abs(q.numpy() - p.numpy()).max() > 1e-2  # without it the cast changes the map
    assert constant.identity != plain.identity  # the setting is part of what makes the maps (memo, threshold)
