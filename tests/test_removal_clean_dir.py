"""The ``clean`` contract (run_clean_dir) and cleaned datasets (build_cleaned_dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from dermclean.clean import run_clean_dir
from dermclean.data.images import ImageError, load_rgb
from dermclean.data.manifest import COLUMNS, read_manifest, write_manifest
from dermclean.data.masks import dilate_mask
from dermclean.detection import DetectionConfig, Threshold, build_detector, save_detector
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.modelio import save_model_dir
from dermclean.removal import build_cleaned_dataset
from dermclean.removal.engine import RemovalConfig

CFG = RemovalConfig(steps=2, jump_length=1, jump_n_sample=1, batch_size=4)
SIZES = {"a": (40, 56), "b": (48, 48), "c": (36, 33)}  # (H, W), all larger than the 16-px models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    guided_cfg = UNetConfig(sample_size=16, block_out_channels=[8, 16])
    ic_cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16])
    save_model_dir(root / "diffusion" / "unet", kind="unet", config=guided_cfg, module=DermUNet(guided_cfg))
    save_model_dir(root / "imagecond", kind="unet", config=ic_cfg, module=DermUNet(ic_cfg))
    return {"inpaint": root / "diffusion", "imagecond": root / "imagecond", "telea": None}


@pytest.fixture()
def images_dir(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for stem, (h, w) in SIZES.items():
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        fmt = {"a": "JPEG", "b": "PNG", "c": "PNG"}[stem]
        Image.fromarray(arr).save(folder / f"{stem}.{'JPG' if fmt == 'JPEG' else 'png'}", format=fmt, quality=95)
    return folder


@pytest.fixture()
def masks_dir(tmp_path) -> Path:
    folder = tmp_path / "masks"
    folder.mkdir()
    for stem, (h, w) in SIZES.items():
        m = np.zeros((h, w), np.uint8)
        m[h // 4:h // 2, w // 4:w // 2] = 255
        Image.fromarray(m).save(folder / f"{stem}.png")
    return folder


def decoded(path: Path) -> np.ndarray:
    return load_rgb(path)


@pytest.mark.parametrize("method", ["inpaint", "imagecond", "telea"])
def test_contract_with_masks_dir(method, models, images_dir, masks_dir, tmp_path):
    out = run_clean_dir(images_dir, tmp_path / "out", method=method, detector=None, model=models[method],
                        masks_dir=masks_dir, dilation=2, device="cpu", config=CFG).out_dir
    names = sorted(p.name for p in out.iterdir())
    assert names == [".dermclean.json", "a.png", "b.png", "c.png", "masks", "run.json"]
    for src in images_dir.iterdir():
        original = decoded(src)
        cleaned = np.asarray(Image.open(out / f"{src.stem}.png"))
        used = np.asarray(Image.open(out / "masks" / f"{src.stem}.png"))
        assert cleaned.shape == original.shape and set(np.unique(used)) <= {0, 255}
        given = np.asarray(Image.open(masks_dir / f"{src.stem}.png")) > 0
        assert np.array_equal(used > 0, dilate_mask(given, 2))  # dilated as configured
        assert np.array_equal(cleaned[used == 0], original[used == 0])  # outside: pixel for pixel
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == method and run["dilation"] == 2 and run["n_images"] == 3
    assert run["masks_dir"] == str(masks_dir) and run["model_version"]


def test_refuses_non_empty_out_unless_overwrite(models, images_dir, masks_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_clean_dir(images_dir, out, method="telea", detector=None, model=None, masks_dir=masks_dir,
                      dilation=1, config=CFG)
    assert (out / "old.txt").read_text() == "keep"
    with pytest.raises(FileExistsError, match="not written by `dermclean clean`"):  # not ours: never replaced
        run_clean_dir(images_dir, out, method="telea", detector=None, model=None, masks_dir=masks_dir,
                      dilation=1, config=CFG, overwrite=True)
    assert (out / "old.txt").read_text() == "keep"
    ours = tmp_path / "ours"
    run_clean_dir(images_dir, ours, method="telea", detector=None, model=None, masks_dir=masks_dir, dilation=1,
                  config=CFG)
    (ours / "stale.png").write_bytes(b"")
    run_clean_dir(images_dir, ours, method="telea", detector=None, model=None, masks_dir=masks_dir, dilation=1,
                  config=CFG, overwrite=True)
    assert not (ours / "stale.png").exists() and (ours / "a.png").is_file()


def test_refuses_duplicate_stems_and_missing_masks(images_dir, masks_dir, tmp_path):
    (masks_dir / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        run_clean_dir(images_dir, tmp_path / "o1", method="telea", detector=None, model=None, masks_dir=masks_dir,
                      dilation=1, config=CFG)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(images_dir / "a.png")
    with pytest.raises(ImageError, match="share the id"):
        run_clean_dir(images_dir, tmp_path / "o2", method="telea", detector=None, model=None, masks_dir=masks_dir,
                      dilation=1, config=CFG)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_wrong_model_kind_is_refused(models, images_dir, masks_dir, tmp_path):
    with pytest.raises(ValueError, match="image-conditioned"):
        run_clean_dir(images_dir, tmp_path / "o", method="imagecond", detector=None, model=models["inpaint"],
                      masks_dir=masks_dir, dilation=1, config=CFG)


def test_detector_path_uses_detector_masks_and_its_unet(models, images_dir, tmp_path):
    detector = build_detector(detector_kind="guided", unet_dir=models["inpaint"] / "unet",
                              config=DetectionConfig(steps=2, noise_level=100, inversion_iters=0, batch_size=4),
                              device="cpu")
    probe = detector.detect([decoded(images_dir / "b.png")])[0].anomaly_map  # flag about half of b's pixels
    detector.threshold = Threshold(value=float(np.median(probe)), fpr_budget=0.5, n_images=1, n_pixels=probe.size)
    save_detector(detector, tmp_path / "detector")
    out = run_clean_dir(images_dir, tmp_path / "out", method="inpaint", detector=tmp_path / "detector", model=None,
                        masks_dir=None, dilation=1, device="cpu", config=CFG).out_dir
    run = json.loads((out / "run.json").read_text())
    assert run["detector"] == str(tmp_path / "detector") and run["model"].endswith("(unet)")
    used = np.asarray(Image.open(out / "masks" / "b.png")) > 0
    assert used.shape == SIZES["b"] and used.any() and not used.all()
    cleaned = np.asarray(Image.open(out / "b.png"))
    assert np.array_equal(cleaned[~used], decoded(images_dir / "b.png")[~used])


def test_build_cleaned_dataset(models, tmp_path):
    root = tmp_path / "prepared"
    (root / "images").mkdir(parents=True)
    det = tmp_path / "detections" / "masks"
    det.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(3):
        img = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"im{i}.png")
        m = np.zeros((16, 20), np.uint8)  # a mask at half resolution (e.g. the model's): fitted up
        m[4:8, 5:10] = 255 * (i > 0)
        Image.fromarray(m).save(det / f"im{i}.png")
        rows.append({"image_id": f"im{i}", "image_path": f"images/im{i}.png", "diagnosis": "nevus", "melanoma": i % 2,
                     **{c: 0 for c in COLUMNS if c not in ("image_id", "image_path", "diagnosis", "melanoma",
                                                            "split", "source")},
                     "split": ["train", "val", "test"][i], "source": "test"})
    write_manifest(pd.DataFrame(rows), root / "manifest.csv")
    raw_before = {p.name: p.read_bytes() for p in (root / "images").iterdir()}
    out = tmp_path / "cleaned" / "imagecond"
    df = build_cleaned_dataset(root / "manifest.csv", tmp_path / "detections", out, method="imagecond",
                               model_dir=models["imagecond"], dilation=1, device="cpu", config=CFG, progress=False)
    back = read_manifest(out / "manifest.csv")
    assert list(back["image_id"]) == ["im0", "im1", "im2"] and list(back["split"]) == ["train", "val", "test"]
    assert list(back["melanoma"]) == [0, 1, 0]
    assert {"source_image", "method", "model_version", "mask_area"} <= set(back.columns)
    assert back["mask_area"].astype(float).iloc[0] == 0.0 and back["mask_area"].astype(float).iloc[1] > 0
    for row in back.itertuples():
        cleaned = np.asarray(Image.open(out / row.image_path))
        src = np.asarray(Image.open((out / row.source_image).resolve()))
        used = np.asarray(Image.open(out / "masks" / f"{row.image_id}.png")) > 0
        assert cleaned.shape == src.shape and np.array_equal(cleaned[~used], src[~used])
    assert {p.name: p.read_bytes() for p in (root / "images").iterdir()} == raw_before
    assert len(df) == 3 and set(df["method"]) == {"imagecond"}
