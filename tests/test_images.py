"""data.images: the safe loader (one test per bad input) and the array <-> tensor conventions."""

from __future__ import annotations

import logging
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermclean.data.images import (ImageError, ImageNotFoundError, NoImages, list_images, load_rgb, read_size, resize_map,
                                   save_png, to_tensor, to_uint8)


def _rgb(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` RGB but whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))
    return path


def test_rgb_png_roundtrip_is_exact(tmp_path):
    image = _rgb()
    save_png(tmp_path / "a.png", image)
    assert np.array_equal(load_rgb(tmp_path / "a.png"), image)
    assert read_size(tmp_path / "a.png") == (48, 40)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # atomic: no temporary left behind


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(stored).save(tmp_path / "o.jpg", exif=exif, quality=95)
    out = load_rgb(tmp_path / "o.jpg")
    assert out.shape == (64, 40, 3)
    corner = out[:8, -8:].reshape(-1, 3).mean(0)
    assert corner[0] > 200 and corner[1] < 60 and corner[2] < 60  # now at the displayed top-right


def test_grey_is_converted(tmp_path, caplog):
    Image.fromarray(np.full((40, 40), 77, np.uint8), mode="L").save(tmp_path / "g.png")
    with caplog.at_level(logging.INFO, logger="dermclean.data.images"):
        out = load_rgb(tmp_path / "g.png")
    assert out.shape == (40, 40, 3) and (out == 77).all()
    assert "L image converted to RGB" in caplog.text


def test_palette_is_converted(tmp_path):
    Image.fromarray(_rgb()).convert("P").save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png").shape == (40, 48, 3)


def test_opaque_rgba_is_converted(tmp_path):
    rgba = np.dstack([_rgb(), np.full((40, 48), 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "o.png")
    assert np.array_equal(load_rgb(tmp_path / "o.png"), rgba[..., :3])


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_real_transparency_is_refused(tmp_path, mode):
    image = Image.new(mode, (40, 40))
    image.putpixel((3, 3), (10, 20, 30, 0) if mode == "RGBA" else (10, 0))
    path = tmp_path / "t.png"
    image.save(path)
    with pytest.raises(ImageError, match="transparent") as err:
        load_rgb(path)
    assert str(path) in str(err.value) and "flatten" in str(err.value)


def test_cmyk_is_converted_with_a_warning(tmp_path, caplog):
    Image.new("CMYK", (40, 40), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    with caplog.at_level(logging.WARNING, logger="dermclean.data.images"):
        out = load_rgb(tmp_path / "c.jpg")
    assert out.shape == (40, 40, 3) and out[..., 1].mean() < 30 and out[..., 0].mean() > 220
    assert "CMYK" in caplog.text and "c.jpg" in caplog.text


def test_16_bit_is_refused(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((40, 40), 1000, np.uint16)).save(path)
    with pytest.raises(ImageError, match="16-bit") as err:
        load_rgb(path)
    assert str(path) in str(err.value) and "8-bit RGB" in str(err.value)


def test_float_is_refused(tmp_path):
    path = tmp_path / "f.tiff"
    Image.fromarray(np.zeros((40, 40), np.float32)).save(path)
    with pytest.raises(ImageError, match="32-bit float"):
        load_rgb(path)


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageError, match="not a readable image") as err:
        load_rgb(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_is_refused(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(_rgb(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt|truncated") as err:
        load_rgb(path)
    assert str(path) in str(err.value)


def test_below_size_bound_is_refused(tmp_path):
    save_png(tmp_path / "small.png", _rgb(20, 40))
    with pytest.raises(ImageError, match="below the size bound") as err:
        load_rgb(tmp_path / "small.png", min_size=32)
    assert "small.png" in str(err.value) and "40x20" in str(err.value)
    assert load_rgb(tmp_path / "small.png", min_size=16).shape == (20, 40, 3)


def test_above_size_bound_is_refused(tmp_path):
    save_png(tmp_path / "big.png", _rgb(40, 100))
    with pytest.raises(ImageError, match="above the size bound") as err:
        load_rgb(tmp_path / "big.png", max_size=64)
    assert "big.png" in str(err.value)


def test_large_header_is_refused_before_decoding(tmp_path):
    # 9000x9000 is under PIL's own bomb limit: only our header check stops it (the data is 64 bytes,
    # so any attempt to decode would fail with "truncated", not with the size message).
    path = _png_header_only(tmp_path / "huge.png", 9000, 9000)
    with pytest.raises(ImageError, match="above the size bound") as err:
        load_rgb(path, max_size=8192)
    assert "9000x9000" in str(err.value)


def test_decompression_bomb_is_refused(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="decompression bomb|above the size bound") as err:
        load_rgb(path)
    assert str(path) in str(err.value)
    assert time.perf_counter() - start < 1.0


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg") as err:
        load_rgb(tmp_path / "nope.jpg")
    assert isinstance(err.value, ImageNotFoundError)


def test_list_images_sorted_flat_any_case(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.JPEG", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jpg").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.JPEG"]


def test_list_images_refuses_shared_stems(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "x.png").write_bytes(b"x")
    with pytest.raises(ImageError, match="x.jpg and x.png"):
        list_images(tmp_path)


def test_list_images_empty_and_missing_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(NoImages, match="no images") as err:
        list_images(tmp_path)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="absent"):
        list_images(tmp_path / "absent")


def test_save_png_masks_and_bad_arrays(tmp_path):
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    save_png(tmp_path / "m.png", mask)
    back = np.asarray(Image.open(tmp_path / "m.png"))
    assert back.dtype == np.uint8 and back.sum() == 4 * 255
    with pytest.raises(ValueError, match="expected uint8"):
        save_png(tmp_path / "f.png", np.zeros((8, 8, 3), np.float32))


def test_tensor_roundtrip_and_range():
    image = _rgb(16, 16)
    x = to_tensor(image)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_uint8(x), image)
    assert to_tensor(np.zeros((4, 4, 3), np.uint8))[0, 0, 0] == -1.0
    assert to_tensor(np.full((4, 4, 3), 255, np.uint8))[0, 0, 0] == 1.0


def test_to_tensor_shrinks_by_area_averaging():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, ::2] = 255  # 1-px stripes average to exactly mid-grey when halved
    x = to_tensor(image, 4)
    assert x.shape == (3, 4, 4)
    assert torch.allclose(x, torch.zeros_like(x), atol=0.05)


def test_to_uint8_clips_and_checks_shape():
    assert to_uint8(torch.full((3, 2, 2), 5.0)).max() == 255
    with pytest.raises(ValueError, match=r"expected \(3, H, W\)"):
        to_uint8(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="expected uint8 HxWx3"):
        to_tensor(np.zeros((4, 4), np.uint8), 4)


def test_resize_map():
    m = np.arange(16, dtype=np.float64).reshape(4, 4)
    up = resize_map(m, (8, 6))
    assert up.shape == (8, 6) and up.dtype == np.float32
    assert up.min() >= 0 and up.max() <= 15
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    big = resize_map(mask, (8, 8))
    assert big.dtype == bool and big[:2, :2].all() and big.sum() == 4
    assert np.array_equal(resize_map(torch.ones(3, 3), (3, 3)), np.ones((3, 3), np.float32))
