"""`dermclean audit`: operating points, the risk table, labels matching, the outputs, and the HTML
report rendered by a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from dermclean.audit import run_audit
from dermclean.audit.flags import FLAG_COLUMNS
from dermclean.audit.labels import read_audit_labels
from dermclean.audit.risk import RISK_COLUMNS, risk_row, shortcut_risk
from dermclean.cli import app
from dermclean.data.readers import LabelsError
from dermclean.detection import run_detect_dir, save_detector
from dermclean.detection.operating_points import OperatingPoint, OperatingPoints
from dermclean.errors import OptionError, OutputError
from tests.test_detection_contract import tiny_detector

GREEN = (0, 190, 0)
N_IMAGES = 24


def test_operating_point_is_the_max_f1_cut():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 0, 0])
    point = OperatingPoint.fit(scores, labels)
    assert point.threshold == pytest.approx(0.6)  # 3 TP, 1 FP: F1 6/7 beats 0.8 (F1 0.8)
    assert (point.precision, point.recall) == (pytest.approx(0.75), pytest.approx(1.0))
    assert OperatingPoint.fit(scores, np.zeros(6)) is None


def test_operating_points_round_trip_and_flags():
    scores = pd.DataFrame({"ruler": [0.1, 0.9], "ink": [0.5, 0.4], "patches": [0.2, 0.3], "score": [0.6, 0.7]})
    labels = pd.DataFrame({"ruler": [0, 1], "ink": [1, 0], "patches": [pd.NA, pd.NA]}, dtype="Float64")
    points = OperatingPoints.fit(scores, labels, fitted_on="test")
    again = OperatingPoints.from_dict(json.loads(json.dumps(points.to_dict())))
    flags = again.flags(scores)
    assert list(flags.columns) == ["ruler_flag", "ink_flag", "patches_flag", "any_flag"]
    assert flags["ruler_flag"].tolist() == [0, 1] and flags["ink_flag"].tolist() == [1, 0]
    assert flags["patches_flag"].isna().all()  # no labels for patches: no operating point


def test_risk_row_is_fishers_conditional_odds_ratio():
    # the real set's human patch labels: 2 of 352 melanomas, 126 of 1448 benign
    present = pd.Series([1] * 2 + [0] * 350 + [1] * 126 + [0] * 1322, dtype="Float64")
    label = pd.Series([1] * 352 + [0] * 1448, dtype="Float64")
    row = risk_row("patches", present, label)
    assert (row["n_label1"], row["n_label0"]) == (352, 1448)
    assert row["odds_ratio"] == pytest.approx(0.0600, abs=1e-3)
    assert row["ci_low"] == pytest.approx(0.00715, abs=1e-4) and row["ci_high"] == pytest.approx(0.2233, abs=1e-3)
    assert row["risk"] == 1
    balanced = risk_row("ink", pd.Series([1, 0] * 50, dtype="Float64"), pd.Series([1, 1, 0, 0] * 25, dtype="Float64"))
    assert balanced["risk"] == 0 and balanced["ci_low"] < 1 < balanced["ci_high"]


def test_labels_are_matched_by_stem_and_bad_rows_named(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("isic_id,image,melanoma,patches\nA,images/a.jpg,1,0\nB,images/b.jpg,0,\nZ,images/z.jpg,0,1\n")
    labels = read_audit_labels(path, ["b.png", "a.png", "c.png"], label_column="melanoma")
    assert labels.label.iloc[:2].tolist() == [0, 1] and labels.label.isna().tolist() == [False, False, True]
    assert labels.n_unmatched_rows == 1 and list(labels.human.columns) == ["patches"]
    path.write_text("image,melanoma\na.jpg,yes\n")
    with pytest.raises(LabelsError, match=r"row 2 \(a.jpg\): column 'melanoma' is 'yes'"):
        read_audit_labels(path, ["a.png"], label_column="melanoma")
    with pytest.raises(LabelsError, match="no column 'diagnosis'"):
        read_audit_labels(path, ["a.png"], label_column="diagnosis")
    path.write_text("image,melanoma\na.jpg,1\nsub/a.png,0\n")
    with pytest.raises(LabelsError, match="more than one row"):
        read_audit_labels(path, ["a.png"], label_column="melanoma")


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Images, a detect output, a bundle whose operating points split the patch scores at their median, and
    labels where the label goes with the patch flag (a planted shortcut)."""
    root = tmp_path_factory.mktemp("audit")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        pixels = np.empty((32 + i % 3, 36, 3), dtype=np.uint8)
        pixels[:] = GREEN
        pixels[: 4 + i % 5] = rng.integers(0, 255, (4 + i % 5, 36, 3))
        Image.fromarray(pixels).save(images / f"img{i:02d}.png")
    plain = root / "plain"
    save_detector(tiny_detector(), plain)
    run_detect_dir(images, root / "detections", model=str(plain), progress=False)
    scores = pd.read_csv(root / "detections" / "scores.csv")
    cut = float(scores["patches"].median())
    points = OperatingPoints(points={k: OperatingPoint(threshold=cut if k == "patches" else 2.0, precision=1.0,
                                                       recall=1.0, f1=1.0, n_positive=1, n_negative=1)
                                     for k in ("ruler", "ink", "patches", "any")}, fitted_on="hand-set for the test")
    detector = tiny_detector()
    detector.operating_points = points
    save_detector(detector, root / "bundle")
    flagged = (scores["patches"] >= cut).astype(int)
    pd.DataFrame({"image_id": [Path(n).stem for n in scores["image"]], "melanoma": 1 - flagged,
                  "patches": flagged, "ruler": 0, "ink": 0}).to_csv(root / "labels.csv", index=False)
    return root


def test_audit_writes_the_contract_and_finds_the_planted_shortcut(collection, tmp_path):
    out = tmp_path / "report"
    result = run_audit(collection / "images", collection / "labels.csv", out, model=str(collection / "bundle"),
                       detections=collection / "detections", progress=False)
    flags = pd.read_csv(out / "flags.csv")
    assert list(flags.columns) == list(FLAG_COLUMNS) and len(flags) == N_IMAGES
    assert flags["ruler_flag"].eq(0).all() and flags["patches_flag"].sum() == N_IMAGES // 2
    assert flags["mask_area"].between(0, 1).all()
    risk = pd.read_csv(out / "shortcut_risk.csv")
    assert list(risk.columns) == list(RISK_COLUMNS) and list(risk["artifact"]) == ["ruler", "ink", "patches"]
    patches = risk.set_index("artifact").loc["patches"]
    assert patches["prevalence_label1"] == 0 and patches["prevalence_label0"] == 1
    assert patches["ci_high"] < 1 and patches["risk"] == 1
    assert result.risk.equals(shortcut_risk(flags, pd.read_csv(collection / "labels.csv")["melanoma"]))
    summary = json.loads((out / "audit.json").read_text())
    assert summary["agreement"]["patches"]["precision"] == 1.0 and summary["human_risk"][2]["risk"] == 1
    assert not (out / "detections").exists()  # --detections given: nothing copied


def test_incomplete_detections_are_one_clear_error(collection, tmp_path):
    partial = tmp_path / "detections"
    shutil.copytree(collection / "detections", partial)
    (partial / "masks" / "img03.png").unlink()
    with pytest.raises(OptionError, match=r"masks/img03.png is missing"):
        run_audit(collection / "images", collection / "labels.csv", tmp_path / "report",
                  model=str(collection / "bundle"), detections=partial, progress=False)
    assert not (tmp_path / "report").exists()


def test_audit_refuses_an_output_inside_the_images(collection):
    with pytest.raises(OutputError, match="lies inside the input IMAGES_DIR"):
        run_audit(collection / "images", collection / "labels.csv", collection / "images" / "report",
                  model=str(collection / "bundle"), progress=False)


def test_audit_cli_detects_and_prints_the_table(collection, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["audit", str(collection / "images"), "--labels", str(collection / "labels.csv"),
                                      "--out", str(out), "--model", str(collection / "bundle"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "patches" in result.output and "<- shortcut risk" in result.output
    assert (out / "detections" / "scores.csv").is_file() and not (out / "detections" / "maps").exists()
    reused = run_audit(collection / "images", collection / "labels.csv", tmp_path / "reused", progress=False,
                       model=str(collection / "bundle"), detections=out / "detections")
    assert pd.read_csv(out / "flags.csv").equals(pd.read_csv(reused.out_dir / "flags.csv"))
    bad = CliRunner().invoke(app, ["audit", str(collection / "images"), "--labels", str(collection / "nope.csv"),
                                   "--out", str(tmp_path / "x"), "--model", str(collection / "bundle")])
    assert bad.exit_code == 2 and "nope.csv not found" in bad.output and not (tmp_path / "x").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_table_and_gallery_in_chromium(collection, tmp_path):
    out = tmp_path / "report"
    run_audit(collection / "images", collection / "labels.csv", out, model=str(collection / "bundle"),
              detections=collection / "detections", progress=False)
    page = out / "report.html"
    assert page.stat().st_size < 2_000_000 and "http" not in page.read_text().replace("http-equiv", "")
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    header = (np.abs(pixels - (43, 76, 126)).sum(axis=2) < 12)  # the tables' header colour
    header_rows = np.flatnonzero(header.sum(axis=1) > 300)
    assert header_rows.size >= 10, "no rendered table header"
    green = (np.abs(pixels - GREEN).sum(axis=2) < 40)  # the thumbnails' skin
    assert green.sum() > 3 * 8 * 0.4 * 180 * 120, "the gallery's thumbnails did not render"
    assert green[: header_rows.min()].sum() == 0, "the gallery should come after the risk table"


def test_recursive_audit_reads_subfolders_and_their_masks(collection, tmp_path):
    nested = tmp_path / "nested"
    for i, source in enumerate(sorted((collection / "images").glob("*.png"))[:6]):
        target = nested / ("a" if i % 2 else "b") / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    out = tmp_path / "report"
    run_audit(nested, collection / "labels.csv", out, model=str(collection / "bundle"), recursive=True,
              progress=False)
    flags = pd.read_csv(out / "flags.csv")
    assert sorted(flags["image"].str.split("/").str[0].unique()) == ["a", "b"] and len(flags) == 6
    masks = [out / "detections" / "masks" / Path(name).with_suffix(".png") for name in flags["image"]]
    assert all(m.is_file() for m in masks)
    assert "data:image/jpeg;base64," in (out / "report.html").read_text()
