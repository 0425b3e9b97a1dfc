"""A user's folders through the real command line: nothing lost, one clear line per mistake.

Each case runs ``dermclean`` (typer's runner, in process; a subprocess where a kill or a working
folder matters) and asserts the exit status (2 usage, 3 invalid data, 4 some skipped), that the
message names the file or option, that every input file is byte for byte as before, and that no
partial output remains.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dermclean.classifier.model import ClassifierConfig, build_classifier
from dermclean.classifier.predict import save_classifier
from dermclean.cli import app
from dermclean.detection import save_detector
from dermclean.errors import EXIT_INPUT, EXIT_SKIPPED, EXIT_USAGE

runner = CliRunner()


# ---------------------------------------------------------------- fixtures and helpers


def _png(path: Path, size: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, size: int = 40, value: int = 255) -> Path:
    m = np.zeros((size, size), np.uint8)
    m[size // 4:size // 2, size // 4:size // 2] = value
    Image.fromarray(m).save(path)
    return path


def _bomb_png(path: Path, side: int = 20000) -> Path:
    """A tiny PNG whose header claims ``side x side`` pixels (a decompression bomb by its header)."""
    raw = b"\x00\x00"  # one filtered row of a 1x1 greyscale image
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw[:1] + b"\x00"))
                     + chunk(b"IEND", b""))
    return path


def checksums(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (relative path -> sha256)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial outputs this tool might leave in ``folder``."""
    return [p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".dermclean-partial", ".old"))]


@pytest.fixture()
def user(tmp_path: Path) -> Path:
    """A user's folder: images/ (two PNGs, a JPEG, a note) and masks/ (0/255), the only copy."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i, name in enumerate(["a.png", "b.png"]):
        _png(images / name, seed=i)
        _mask(masks / f"{Path(name).stem}.png")
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(images / "c.jpg", quality=95)
    _mask(masks / "c.png")
    (images / "notes.txt").write_text("curated by hand")
    return tmp_path


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


# ---------------------------------------------------------------- data loss: each must be impossible


def test_file_output_never_removes_a_folder(user):
    before = checksums(user / "images")
    result = invoke("sample-grid", user / "images", "--n", "1", "--size", "16")
    assert result.exit_code == EXIT_USAGE and "images" in result.output and "folder" in result.output
    assert checksums(user / "images") == before
    result = invoke("sample-grid", user / "images", "--n", "1", "--size", "16", "--overwrite")
    assert result.exit_code == EXIT_USAGE and checksums(user / "images") == before


def test_classify_out_onto_a_folder_is_refused(user):
    before = checksums(user / "masks")
    result = invoke("classify", user / "images", "--out", user / "masks", "--model", user / "nowhere")
    assert result.exit_code == EXIT_USAGE and "masks" in result.output
    assert checksums(user / "masks") == before


@pytest.mark.parametrize("out, relation", [("images", "is"), (".", "holds"), ("images/cleaned", "lies inside"),
                                           ("masks", "is")])
def test_clean_output_is_never_an_input_whatever_the_flags(user, out, relation):
    before = checksums(user)
    result = invoke("clean", user / "images", "--out", user / out, "--masks", user / "masks", "--method", "telea",
                    "--overwrite")
    assert result.exit_code == EXIT_USAGE, result.output
    assert relation in result.output and "input" in result.output
    assert checksums(user) == before and not leftovers(user)


def test_overwrite_replaces_only_an_earlier_output_of_the_same_command(user):
    foreign = user / "results"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("four years")
    result = invoke("clean", user / "images", "--out", foreign, "--masks", user / "masks", "--overwrite")
    assert result.exit_code == EXIT_USAGE and "not written by `dermclean clean`" in result.output
    assert (foreign / "thesis.txt").read_text() == "four years"
    gen = user / "gen"
    assert invoke("generate", gen, "--n-images", "2", "--size", "32").exit_code == 0
    result = invoke("clean", user / "images", "--out", gen, "--masks", user / "masks", "--overwrite")
    assert result.exit_code == EXIT_USAGE and "not written by `dermclean clean`" in result.output
    assert (gen / "manifest.csv").is_file()


def test_generate_refuses_a_non_empty_folder(user):
    gen = user / "gen"
    assert invoke("generate", gen, "--n-images", "6", "--size", "32").exit_code == 0
    before = checksums(gen)
    result = invoke("generate", gen, "--n-images", "3", "--size", "32")
    assert result.exit_code == EXIT_USAGE and "not empty" in result.output and checksums(gen) == before
    result = invoke("generate", user / "images", "--n-images", "3", "--size", "32", "--overwrite")
    assert result.exit_code == EXIT_USAGE and (user / "images" / "notes.txt").is_file()
    assert invoke("generate", gen, "--n-images", "3", "--size", "32", "--overwrite").exit_code == 0
    assert len(list((gen / "images").iterdir())) == 3 and len(pd.read_csv(gen / "manifest.csv")) == 3


def test_sample_grid_has_no_default_path_and_replaces_only_its_own_png(user):
    result = invoke("sample-grid")
    assert result.exit_code == EXIT_USAGE and "OUT" in result.output
    picture = _png(user / "picture.png")
    before = picture.read_bytes()
    assert invoke("sample-grid", picture, "--n", "1", "--size", "16", "--overwrite").exit_code == EXIT_USAGE
    assert picture.read_bytes() == before
    grid = user / "grid.png"
    assert invoke("sample-grid", grid, "--n", "1", "--size", "16").exit_code == 0
    assert invoke("sample-grid", grid, "--n", "2", "--size", "16").exit_code == EXIT_USAGE
    assert invoke("sample-grid", grid, "--n", "2", "--size", "16", "--overwrite").exit_code == 0


def test_classify_replaces_only_its_own_csv(user):
    table = user / "table.csv"
    table.write_text("patient,notes\n1,keep\n")
    result = invoke("classify", user / "images", "--out", table, "--model", user / "nowhere", "--overwrite")
    assert result.exit_code == EXIT_USAGE and "not written by `dermclean classify`" in result.output
    assert table.read_text() == "patient,notes\n1,keep\n"


# ---------------------------------------------------------------- masks: silently wrong output


def test_bit_coded_and_non_binary_masks_are_refused(user):
    gen = user / "gen"
    assert invoke("generate", gen, "--n-images", "8", "--size", "32").exit_code == 0
    result = invoke("clean", gen / "images", "--out", user / "out", "--masks", gen / "masks")
    assert result.exit_code == EXIT_INPUT and "grey levels" in result.output and "SYN_" in result.output
    assert not (user / "out").exists() and not leftovers(user)
    _mask(user / "masks" / "b.png", value=1)  # a 0/1 mask would read as empty
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks")
    assert result.exit_code == EXIT_INPUT and "b.png" in result.output and "0 (keep) and 255" in result.output


def test_large_masks_are_warned_and_counted(user):
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(user / "masks" / "a.png")
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks")
    assert result.exit_code == 0, result.output
    assert "max_mask_area" in result.output
    run = json.loads((user / "out" / "run.json").read_text())
    assert run["n_large_masks"] == 1 and run["max_mask_area"] == 0.5


def test_clean_defaults_to_the_best_measured_method(user):
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks")
    assert result.exit_code == 0, result.output
    assert json.loads((user / "out" / "run.json").read_text())["method"] == "telea"
    assert "telea" in invoke("clean", "--help").output


def test_mask_decompression_bomb_is_one_line(user):
    _bomb_png(user / "masks" / "a.png")
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks")
    assert result.exit_code == EXIT_INPUT and "a.png" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (user / "out").exists()


# ---------------------------------------------------------------- image classes: one line, exit 3


def _zero_byte(folder: Path) -> str:
    (folder / "zero.png").write_bytes(b"")
    return "zero.png"


def _truncated(folder: Path) -> str:
    data = (folder / "a.png").read_bytes()
    (folder / "trunc.png").write_bytes(data[: len(data) // 2])
    return "trunc.png"


def _text(folder: Path) -> str:
    (folder / "letter.jpg").write_text("Dear colleague, ...")
    return "letter.jpg"


def _sixteen_bit(folder: Path) -> str:
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(folder / "deep.png")
    return "deep.png"


def _alpha(folder: Path) -> str:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 100
    Image.fromarray(rgba).save(folder / "glass.png")
    return "glass.png"


def _tiny(folder: Path) -> str:
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    return "dot.png"


def _bomb(folder: Path) -> str:
    _bomb_png(folder / "bomb.png")
    return "bomb.png"


def _duplicate_stem(folder: Path) -> str:
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "a.jpg")
    return "a.jpg"


@pytest.mark.parametrize("make", [_zero_byte, _truncated, _text, _sixteen_bit, _alpha, _tiny, _bomb, _duplicate_stem])
@pytest.mark.parametrize("command", ["clean", "classify"])
def test_bad_image_is_one_line_and_nothing_is_written(user, make, command):
    name = make(user / "images")
    if command == "clean":
        _mask(user / "masks" / f"{Path(name).stem}.png")
    out = user / ("out" if command == "clean" else "p.csv")
    extra = ["--masks", user / "masks"] if command == "clean" else ["--model", _tiny_classifier(user)]
    before = checksums(user)
    result = invoke(command, user / "images", "--out", out, *extra)
    assert result.exit_code == EXIT_INPUT, result.output
    assert name in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert checksums(user) == before and not out.exists() and not leftovers(user)


def test_unicode_names_work(user):
    _png(user / "images" / "läsion_é_01.png", seed=5)
    _mask(user / "masks" / "läsion_é_01.png")
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks")
    assert result.exit_code == 0, result.output
    assert (user / "out" / "läsion_é_01.png").is_file()


def _tiny_classifier(root: Path) -> Path:
    folder = root / "model"
    if not folder.exists():
        cfg = ClassifierConfig(arch="resnet10", width=4, image_size=16)
        torch.manual_seed(0)
        save_classifier(folder, module=build_classifier(cfg), config=cfg, threshold=None)
    return folder


# ---------------------------------------------------------------- --on-error skip


def test_on_error_skip_lists_refused_files_and_exits_4(user):
    _text(user / "images")
    _mask(user / "masks" / "letter.png")
    (user / "masks" / "b.png").unlink()  # and one image without its mask
    before = checksums(user)
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks", "--on-error", "skip")
    assert result.exit_code == EXIT_SKIPPED, result.output
    errors = pd.read_csv(user / "out" / "errors.csv")
    assert list(errors.columns) == ["file", "reason"]
    assert sorted(Path(f).name for f in errors["file"]) == ["b.png", "letter.jpg"]
    assert sorted(p.name for p in (user / "out").glob("*.png")) == ["a.png", "c.png"]
    run = json.loads((user / "out" / "run.json").read_text())
    assert run["n_skipped"] == 2 and run["n_images"] == 2
    assert {k: v for k, v in checksums(user).items() if not k.startswith("out/")} == before


def test_classify_on_error_skip(user):
    _zero_byte(user / "images")
    out = user / "p.csv"
    result = invoke("classify", user / "images", "--out", out, "--model", _tiny_classifier(user), "--on-error", "skip",
                    "--device", "cpu")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert sorted(pd.read_csv(out)["image"]) == ["a.png", "b.png", "c.jpg"]
    assert "zero.png" in (user / "p.csv.errors.csv").read_text()


def test_detect_on_error_skip(user):
    from test_detection_contract import tiny_detector

    save_detector(tiny_detector(), user / "detector")
    _truncated(user / "images")
    before = checksums(user / "images")
    result = invoke("detect", user / "images", "--out", user / "det", "--model", user / "detector", "--device", "cpu",
                    "--on-error", "skip", "--no-progress")
    assert result.exit_code == EXIT_SKIPPED, result.output
    assert sorted(pd.read_csv(user / "det" / "scores.csv")["image"]) == ["a.png", "b.png", "c.jpg"]
    assert "trunc.png" in (user / "det" / "errors.csv").read_text()
    assert json.loads((user / "det" / "run.json").read_text())["n_skipped"] == 1
    assert checksums(user / "images") == before
    result = invoke("detect", user / "images", "--out", user / "det2", "--model", user / "detector", "--device", "cpu")
    assert result.exit_code == EXIT_INPUT and "trunc.png" in result.output and not (user / "det2").exists()


# ---------------------------------------------------------------- tracebacks and unclear errors


def test_unknown_device_is_one_line(user):
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks", "--device", "foo")
    assert result.exit_code == EXIT_USAGE and "--device 'foo'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_validate_on_an_image_names_the_file(user):
    result = invoke("validate", user / "images" / "a.png")
    assert result.exit_code == EXIT_INPUT and "a.png" in result.output and "CSV" in result.output


def test_validate_size_bounds_are_checked():
    result = invoke("validate", ".", "--max-size", "-5")
    assert result.exit_code == EXIT_USAGE and "--max-size" in result.output


def test_a_bug_keeps_its_traceback(user, monkeypatch):
    import dermclean.clean

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the library")

    monkeypatch.setattr(dermclean.clean, "run_clean_dir", broken)
    result = invoke("clean", user / "images", "--out", user / "out", "--masks", user / "masks")
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


# ---------------------------------------------------------------- side effects and defaults


def test_no_model_creates_no_tracking_store_and_fails_fast(tmp_path, monkeypatch, user):
    repo = tmp_path / "someone-elses-repo"
    (repo / ".git").mkdir(parents=True)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DERMCLEAN_MODEL_CACHE", raising=False)
    for command in (["detect", user / "images", "--out", tmp_path / "d"],
                    ["classify", user / "images", "--out", tmp_path / "p.csv"],
                    ["clean", user / "images", "--out", tmp_path / "c"]):
        began = time.perf_counter()
        result = invoke(*command)
        assert result.exit_code == EXIT_USAGE, result.output
        assert "dvc repro" in result.output and "MLFLOW_TRACKING_URI" in result.output
        assert time.perf_counter() - began < 10
    assert sorted(p.name for p in repo.iterdir()) == [".git"]
    assert not (tmp_path / "home").exists()


def test_no_model_fails_before_loading_torch_or_mlflow(tmp_path, user):
    """The missing store is found before the heavy imports: the answer takes a fraction of a second."""
    probe = ("import sys\nfrom dermclean.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as exit:\n"
             "    print(exit.code, 'torch' in sys.modules, 'mlflow' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for command in (["detect", str(user / "images"), "--out", str(tmp_path / "d")],
                    ["classify", str(user / "images"), "--out", str(tmp_path / "p.csv")],
                    ["clean", str(user / "images"), "--out", str(tmp_path / "c")]):
        proc = subprocess.run([sys.executable, "-c", probe, *command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.stdout.split() == [str(EXIT_USAGE), "False", "False"], (proc.stdout, proc.stderr)
        assert "dvc repro" in proc.stderr


def test_validate_works_outside_the_repo_and_without_splits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "isic"
    (folder / "images").mkdir(parents=True)
    flags = "ruler,ink,patches,hair,dark_corner,gel_bubble,gel_border"
    rows = []
    for i in range(3):
        _png(folder / "images" / f"ISIC_{i}.png", size=40, seed=i)
        rows.append(f"ISIC_{i},images/ISIC_{i}.png,nevus,0,0,0,0,0,0,0,0")
    (folder / "labels.csv").write_text(f"isic_id,image,diagnosis,melanoma,{flags}\n" + "\n".join(rows) + "\n")
    result = invoke("validate", folder)
    assert result.exit_code == 0, result.output
    gen = tmp_path / "gen"
    assert invoke("generate", gen, "--n-images", "3", "--size", "32").exit_code == 0
    assert invoke("validate", gen / "manifest.csv", "--min-size", "16").exit_code == 0
    result = invoke("validate", gen / "manifest.csv", "--min-size", "16", "--require-split")
    assert result.exit_code == EXIT_INPUT and "split" in result.output


def test_version_and_python_dash_m():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("dermclean ")
    proc = subprocess.run([sys.executable, "-m", "dermclean", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("dermclean ")
    assert "<bool>" not in invoke("clean", "--help").output


# ---------------------------------------------------------------- a kill halfway, then the same command again


def test_clean_killed_halfway_resumes_to_exactly_one_output_per_input(tmp_path):
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir()
    masks.mkdir()
    for i in range(200):
        _png(images / f"img{i:03d}.png", size=160, seed=i)
        _mask(masks / f"img{i:03d}.png", size=160)
    before = checksums(tmp_path)
    command = [sys.executable, "-m", "dermclean", "clean", str(images), "--out", str(out), "--masks", str(masks),
               "--method", "telea", "--batch-size", "1", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = tmp_path / ".out.dermclean-partial" / "progress.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.is_file() and len(progress.read_text().splitlines()) >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"clean ended before it could be killed: {proc.returncode}, {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(progress.read_text().splitlines())
    assert 20 <= done_before < 200 and not out.exists(), (done_before, out.exists())
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    cleaned = sorted(p.name for p in out.glob("*.png"))
    assert cleaned == sorted(p.name for p in images.iterdir())
    assert sorted(p.name for p in (out / "masks").iterdir()) == cleaned
    run = json.loads((out / "run.json").read_text())
    assert run["n_images"] == 200 and run["n_resumed"] >= 20 and len(run["images"]) == 200
    assert len({r["image"] for r in run["images"]}) == 200
    assert {k: v for k, v in checksums(tmp_path).items() if not k.startswith("out/")} == before
    assert not leftovers(tmp_path) and not (out / "progress.jsonl").exists(), leftovers(tmp_path)
    assert not [p.name for p in out.rglob(".*.tmp")], "a temporary file of the killed run reached the output"
