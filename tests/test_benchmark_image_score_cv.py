"""benchmarks/image_score_cv.py on a synthetic detect output: the map's peak helps only when it carries signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermclean.data.manifest import write_manifest
from benchmark_module import load_benchmark


def _detect_output(tmp_path: Path, *, map_signal: bool) -> tuple[Path, Path]:
    """120 val, 90 train and 20 test images: the classifier sees the ink images, the map (if map_signal) the rulers."""
    rng = np.random.default_rng(0)
    detections = tmp_path / "detections"
    (detections / "maps").mkdir(parents=True)
    rows, scores = [], []
    for i in range(230):
        kind = i % 3  # 0 clean, 1 ruler, 2 ink
        peak = rng.normal(1.0, 0.2) + (1.5 if map_signal and kind == 1 else 0.0)
        anomaly = rng.uniform(0, 0.5, (8, 8)).astype(np.float32)
        anomaly[3, 3] = peak
        np.save(detections / "maps" / f"im{i}.npy", anomaly)
        p_ink = 1 / (1 + np.exp(-(rng.normal(0, 1) + (3 if kind == 2 else 0))))
        scores.append({"image_id": f"im{i}", "image": f"im{i}.png", "score": p_ink, "ruler": 0.1, "ink": p_ink,
                       "patches": 0.01})
        rows.append({"image_id": f"im{i}", "image_path": f"images/im{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     "ruler": int(kind == 1), "ink": int(kind == 2), "patches": 0, "hair": 0, "dark_corner": 0,
                     "gel_bubble": 0, "gel_border": 0, "split": "val" if i < 120 else "train" if i < 210 else "test", "source": "test"})
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    pd.DataFrame(scores).to_csv(detections / "scores.csv", index=False)
    return tmp_path / "manifest.csv", detections


def _bench():
    return load_benchmark("image_score_cv")


@pytest.mark.parametrize("map_signal", [True, False])
def test_cross_validated_gain_follows_the_map_signal(tmp_path, map_signal):
    manifest, detections = _detect_output(tmp_path, map_signal=map_signal)
    out = tmp_path / "cv.json"
    assert _bench().main(["--manifest", str(manifest), "--detections", str(detections), "--quantiles", "1",
                          "--levels", "0.5", "--folds", "4", "--repeats", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["n_images"], result["n_artifact"]) == (120, 80)  # validation only
    row = result["quantiles"]["1.0"]
    stacked = result["stacked"]["0.5"]  # the map model learnt on the 90 training images, combined on validation
    assert stacked["n_train"] == 90
    if map_signal:
        assert row["mean_cv_gain"] > 0.1 and row["folds_positive"] == 1.0 and row["weights"][1] > 1
        assert stacked["map_model_auroc"] > 0.7 and stacked["mean_cv_gain"] > 0.1 and stacked["weights"][1] > 0.2
    else:
        assert row["mean_cv_gain"] < 0.02 and abs(row["weights"][1]) < 1
        assert stacked["mean_cv_gain"] < 0.03 and abs(stacked["weights"][1]) < 0.2
