"""Folder runs of detect and clean in one process: a killed detect resumes, --maps png/none, --recursive.

A tiny untrained detector bundle (16 px, 2 DDIM steps, threshold 0.5) on 32-40 px images; no Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_detection_contract import tiny_detector
from typer.testing import CliRunner

import dermclean.distributed
from dermclean.batch import image_refs
from dermclean.clean import run_clean_dir
from dermclean.cli import app
from dermclean.data.images import ImageError
from dermclean.detection import load_detector, run_detect_dir, save_detector
from dermclean.detection.contract import DetectJob, detect_to_folder, read_map
from dermclean.errors import EXIT_USAGE, OptionError
from dermclean.io import atomic_path, building_dir, partial_path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "detector"
    save_detector(tiny_detector(), path)
    return path


def write_images(folder: Path, names: list[str], *, seed: int = 0) -> Path:
    """Random RGB images at ``folder/<name>`` (subfolders made), 32-40 px a side."""
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        array = rng.integers(0, 256, (32 + i % 9, 40 - i % 7, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / name, quality=95)
    return folder


def files(folder: Path) -> dict[str, bytes]:
    """Every output file below ``folder`` but the provenance (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("run.json", ".dermclean.json")}


def test_detect_killed_after_a_batch_resumes_to_the_same_outputs(bundle, tmp_path, monkeypatch):
    images = write_images(tmp_path / "images", [f"img{i}.png" for i in range(5)])
    options = {"model": bundle, "device": "cpu", "batch_size": 2, "progress": False}
    reference, _ = run_detect_dir(images, tmp_path / "reference", **options)
    real_append = dermclean.distributed.append_progress

    def append_then_die(build, outcome):
        real_append(build, outcome)
        raise KeyboardInterrupt  # the kill lands right after the first batch is recorded

    monkeypatch.setattr(dermclean.distributed, "append_progress", append_then_die)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_detect_dir(images, out, **options)
    build = partial_path(out)
    assert not out.exists() and len((build / "progress.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(dermclean.distributed, "append_progress", real_append)
    ran = []
    real_run = DetectJob.run
    monkeypatch.setattr(DetectJob, "run", lambda self, det, batch: ran.append(batch.index) or real_run(self, det, batch))

    run_detect_dir(images, out, **options)
    assert ran == [1, 2] and not build.exists()
    assert files(out) == files(reference)  # maps, masks and scores.csv byte for byte
    run = json.loads((out / "run.json").read_text())
    assert run["n_resumed"] == 2 and run["n_images"] == 5 and run["maps"] == "npy" and "address" not in run
    assert pd.read_csv(out / "scores.csv")["image"].is_unique


def test_maps_png_decodes_to_the_npy_maps_and_none_writes_no_maps(bundle, tmp_path):
    images = write_images(tmp_path / "images", ["a.png", "b.jpg", "c.png"])
    npy, _ = run_detect_dir(images, tmp_path / "npy", model=bundle, device="cpu", progress=False)
    png, _ = run_detect_dir(images, tmp_path / "png", model=bundle, device="cpu", progress=False, maps="png")
    none, _ = run_detect_dir(images, tmp_path / "none", model=bundle, device="cpu", progress=False, maps="none")
    run = json.loads((png / "run.json").read_text())
    assert run["maps"] == "png" and set(run["map_png"]["ranges"]) == {"a", "b", "c"}
    for key in ("a", "b", "c"):
        exact = np.load(npy / "maps" / f"{key}.npy")
        levels = np.asarray(Image.open(png / "maps" / f"{key}.png"))
        assert levels.dtype == np.uint8 and levels.shape == exact.shape
        lo, hi = run["map_png"]["ranges"][key]
        assert (lo, hi) == (float(exact.min()), float(exact.max()))
        np.testing.assert_allclose(read_map(png, key), exact, atol=(hi - lo) / 510 + 1e-6, rtol=0)
        np.testing.assert_array_equal(read_map(npy, key), exact)
    for out in (png, none):
        assert {k: v for k, v in files(out).items() if not k.startswith("maps/")} == \
            {k: v for k, v in files(npy).items() if not k.startswith("maps/")}
    assert not (none / "maps").exists() and json.loads((none / "run.json").read_text())["maps"] == "none"
    with pytest.raises(OptionError, match="--maps 'tif'"):
        run_detect_dir(images, tmp_path / "tif", model=bundle, maps="tif")


def test_recursive_detect_mirrors_subfolders(bundle, tmp_path):
    images = write_images(tmp_path / "images", ["top.png", "a/x.png", "b/x.jpg", "b/deep/y.png", ".hidden/z.png"])
    (images / "a" / "notes.txt").write_text("not an image")
    out, _ = run_detect_dir(images, tmp_path / "out", model=bundle, device="cpu", progress=False, recursive=True)
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores["image"]) == ["a/x.png", "b/deep/y.png", "b/x.jpg", "top.png"]
    for key in ("a/x", "b/deep/y", "b/x", "top"):
        assert (out / "maps" / f"{key}.npy").is_file() and (out / "masks" / f"{key}.png").is_file()
    assert json.loads((out / "run.json").read_text())["recursive"] is True
    flat, _ = run_detect_dir(images, tmp_path / "flat", model=bundle, device="cpu", progress=False)
    assert list(pd.read_csv(flat / "scores.csv")["image"]) == ["top.png"]  # the default reads no subfolder
    write_images(images, ["b/x.png"], seed=1)
    with pytest.raises(ImageError, match="b/x.jpg and b/x.png share the id 'b/x'"):
        run_detect_dir(images, tmp_path / "clash", model=bundle, device="cpu", recursive=True)
    assert not (tmp_path / "clash").exists()


def test_flat_listing_refuses_what_it_refused(tmp_path):
    images = write_images(tmp_path / "images", ["x.jpg", "x.png", "sub/y.png"])
    with pytest.raises(ImageError, match="x.jpg and x.png share the id 'x'"):
        image_refs(images)
    (images / "x.png").unlink()
    assert [(r.name, r.key) for r in image_refs(images)] == [("x.jpg", "x")]
    assert [(r.name, r.key) for r in image_refs(images, recursive=True)] == [("sub/y.png", "sub/y"), ("x.jpg", "x")]


def test_recursive_clean_mirrors_subfolders(tmp_path):
    names = ["top.png", "a/x.png", "b/x.jpg"]
    images = write_images(tmp_path / "images", names)
    for name in names:
        key = name.rsplit(".", 1)[0]
        shape = np.asarray(Image.open(images / name)).shape[:2]
        mask = np.zeros(shape, np.uint8)
        mask[4:12, 4:12] = 255
        (tmp_path / "masks" / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(tmp_path / "masks" / f"{key}.png")
    result = run_clean_dir(images, tmp_path / "out", method="telea", masks_dir=tmp_path / "masks", dilation=1,
                           progress=False, recursive=True)
    out = result.out_dir
    assert result.n_images == 3
    for key in ("top", "a/x", "b/x"):
        assert (out / f"{key}.png").is_file() and (out / "masks" / f"{key}.png").is_file()
    run = json.loads((out / "run.json").read_text())
    assert [r["image"] for r in run["images"]] == ["a/x.png", "b/x.jpg", "top.png"] and run["recursive"] is True
    flat = run_clean_dir(images, tmp_path / "flat", method="telea", masks_dir=tmp_path / "masks", dilation=1,
                         progress=False)
    assert flat.n_images == 1 and sorted(p.name for p in flat.out_dir.glob("*.png")) == ["top.png"]


def test_detect_to_folder_keeps_the_manifest_contract(bundle, tmp_path):
    images = write_images(tmp_path / "images", ["a.png", "b.png", "c.png"])
    items = ((f"ISIC_{p.stem}", p.name, np.asarray(Image.open(p))) for p in sorted(images.iterdir()))
    scores, seconds = detect_to_folder(load_detector(bundle, device="cpu"), items, tmp_path / "out", n_total=3,
                                       extra_columns=("image_id",), info={"model_uri": "x"}, progress=False)
    assert list(scores.columns) == ["image_id", "image", "score", "ruler", "ink", "patches"] and seconds > 0
    assert list(scores["image_id"]) == ["ISIC_a", "ISIC_b", "ISIC_c"]
    assert (tmp_path / "out" / "maps" / "ISIC_a.npy").is_file() and (tmp_path / "out" / "masks" / "ISIC_c.png").is_file()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["n_images"] == 3


def test_cli_options_and_no_ray_in_one_process(bundle, tmp_path):
    images = write_images(tmp_path / "images", ["a.png", "b.png"])
    runner = CliRunner()
    for bad in (["--maps", "tif"], ["--workers", "0"]):
        result = runner.invoke(app, ["detect", str(images), "--out", str(tmp_path / "o"), "--model", str(bundle), *bad])
        assert result.exit_code == EXIT_USAGE and not (tmp_path / "o").exists()
    for command in ("detect", "clean"):
        help_text = runner.invoke(app, [command, "--help"]).output
        assert all(option in help_text for option in ("--recursive", "--address", "--workers"))
    probe = ("import sys\nfrom dermclean.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n"
             "    print(exit.code, 'ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", probe, "detect", str(images), "--out", str(tmp_path / "out"),
                           "--model", str(bundle), "--device", "cpu", "--maps", "none", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split()[-2:] == ["0", "False"], proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".dermclean.json", "masks", "run.json",
                                                                   "scores.csv"]


def test_an_address_where_no_cluster_answers_is_one_line_before_any_work(bundle, tmp_path, monkeypatch):
    import socket

    images = write_images(tmp_path / "images", ["a.png"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free, and nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    result = CliRunner().invoke(app, ["detect", str(images), "--out", str(tmp_path / "out"), "--model", str(bundle)])
    assert result.exit_code == EXIT_USAGE and "no Ray cluster answers" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_a_write_killed_during_the_run_leaves_no_temporary_in_the_output(tmp_path):
    """A worker killed mid-write (its node lost) leaves an atomic write's temporary in the build; when
    another worker redoes the work, the published folder holds only the finished files."""
    out = tmp_path / "out"
    with building_dir(out, owner="detect", key="k") as build:
        (build / "masks").mkdir()
        (build / "masks" / ".a.png.x1y2.tmp").mkdir()  # what a killed atomic_path write leaves
        (build / "masks" / ".a.png.x1y2.tmp" / "a.png").write_bytes(b"half")
        with atomic_path(build / "masks" / "a.png") as tmp:
            tmp.write_bytes(b"whole")
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a.png"]
    assert (out / "masks" / "a.png").read_bytes() == b"whole" and not partial_path(out).exists()
