"""benchmarks/image_auroc_ci.py on a synthetic detect output: the AUROC, its interval and paired gains."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dermclean.detection.metrics import image_auroc
from test_benchmark_image_score_cv import _detect_output
from benchmark_module import load_benchmark


def _bench():
    return load_benchmark("image_auroc_ci")


def test_interval_and_paired_gains(tmp_path):
    manifest, detections = _detect_output(tmp_path, map_signal=True)
    scores = pd.read_csv(detections / "scores.csv")
    labels = pd.read_csv(manifest).set_index("image_id").loc[scores["image_id"]]
    # another run whose score also sees the rulers: better than this one on the same images
    better = scores.assign(score=scores["score"] + 2.0 * labels["ruler"].to_numpy())
    better.to_csv(tmp_path / "better.csv", index=False)
    out = tmp_path / "ci.json"
    assert _bench().main(["--manifest", str(manifest), "--scores", str(detections / "scores.csv"), "--split", "val",
                          "--against", str(tmp_path / "better.csv"), "--n-boot", "200", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    val = labels["split"].to_numpy() == "val"
    y = (labels[["ruler", "ink", "patches"]].sum(axis=1) > 0).to_numpy(int)[val]
    expected = image_auroc(scores["score"].to_numpy()[val], y)
    assert (result["n_images"], result["n_artifact"]) == (120, 80)
    assert result["score"]["mean"] == pytest.approx(expected)
    assert result["score"]["low"] < expected < result["score"]["high"]
    # the classifier alone ranks the images as `score` does here (same per-type columns): no gain, on every resample
    alone = result["paired_gain"]["classifier alone"]
    assert alone["mean"] == pytest.approx(0.0) and alone["low"] == pytest.approx(0.0) and alone["high"] == pytest.approx(0.0)
    against = result["paired_gain"][str(tmp_path / "better.csv")]
    assert against["auroc"] > expected and against["high"] < 0  # this run is worse, and the interval says so


def test_refuses_scores_that_miss_the_images(tmp_path):
    manifest, detections = _detect_output(tmp_path, map_signal=False)
    pd.read_csv(detections / "scores.csv").iloc[:10].to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(SystemExit):
        _bench().main(["--manifest", str(manifest), "--scores", str(detections / "scores.csv"),
                       "--against", str(tmp_path / "partial.csv")])
