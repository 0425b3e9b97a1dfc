"""The command line: help texts, and user errors reported as one line with exit status 2 (usage) or 3 (data)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dermclean.classifier.model import ClassifierConfig, build_classifier
from dermclean.classifier.predict import save_classifier
from dermclean.cli import app

runner = CliRunner()
COMMANDS = ("detect", "clean", "classify", "sweep", "bench", "generate", "sample-grid", "validate")


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("command", [["detect"], ["clean"], ["classify"], ["sweep"], ["bench", "detect"],
                                     ["generate"], ["sample-grid"], ["validate"]])
def test_each_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _images(folder, n=2, size=24):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_detect_with_missing_model_folder_is_a_clear_error(tmp_path):
    images = _images(tmp_path / "images")
    result = runner.invoke(app, ["detect", str(images), "--out", str(tmp_path / "out"),
                                 "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2
    assert "no-such-model" in result.output
    assert not (tmp_path / "out").exists()


def test_classify_on_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["classify", str(tmp_path / "empty"), "--out", str(tmp_path / "p.csv"),
                                 "--model", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert not (tmp_path / "p.csv").exists()


def test_classify_variant_names_a_registry_model(tmp_path):
    (tmp_path / "images").mkdir()
    both = runner.invoke(app, ["classify", str(tmp_path / "images"), "--out", str(tmp_path / "p.csv"),
                               "--variant", "telea", "--model", str(tmp_path / "m")])
    assert both.exit_code == 2 and "--variant and --model both given" in both.output
    bad = runner.invoke(app, ["classify", str(tmp_path / "images"), "--out", str(tmp_path / "p.csv"),
                              "--variant", "../raw"])
    assert bad.exit_code == 2 and "expected a variant name" in bad.output
    assert not (tmp_path / "p.csv").exists()


def test_classify_with_a_cleaned_variant_on_raw_images_notes_it_and_still_classifies(tmp_path):
    images = _images(tmp_path / "images", size=32)
    config = ClassifierConfig(arch="resnet10", width=4, image_size=16)
    model = save_classifier(tmp_path / "m", module=build_classifier(config), config=config, threshold=None,
                            meta={"variant": "imagecond"})
    result = runner.invoke(app, ["classify", str(images), "--out", str(tmp_path / "p.csv"), "--model", str(model),
                                 "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "note: this classifier was trained on images cleaned by imagecond" in result.output
    assert (tmp_path / "p.csv").read_text().count("\n") == 3  # header and both images


def test_generate_writes_a_valid_manifest(tmp_path):
    from dermclean.data.manifest import image_paths, read_manifest

    out = tmp_path / "syn"
    result = runner.invoke(app, ["generate", str(out), "--n-images", "6", "--size", "32", "--seed", "3"])
    assert result.exit_code == 0, result.output
    df = read_manifest(out / "manifest.csv")
    assert len(df) == 6
    assert all(p.is_file() for p in image_paths(df, out / "manifest.csv"))


def test_validate_reports_failing_rows(tmp_path):
    out = tmp_path / "syn"
    assert runner.invoke(app, ["generate", str(out), "--n-images", "4", "--size", "32"]).exit_code == 0
    (out / "images" / "SYN_000001.png").write_bytes(b"not a png")
    result = runner.invoke(app, ["validate", str(out / "manifest.csv"), "--min-size", "16"])
    assert result.exit_code == 3  # invalid input data
    assert "SYN_000001" in result.output
