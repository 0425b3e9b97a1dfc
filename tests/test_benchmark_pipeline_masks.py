"""benchmarks/pipeline_masks.py: a map bundle's detect contract over a manifest, from the two trained models."""

from __future__ import annotations

import json

import pandas as pd

from benchmark_module import REPO, load_benchmark
from test_benchmark_lofo_fusion import setup_models


def test_writes_the_fused_contract_over_every_manifest_image_and_refuses_to_reuse_a_folder(tmp_path, capsys):
    setup_models(tmp_path)
    out = tmp_path / "masks"
    args = ["--params", str(REPO / "params.yaml"), "--profile", "cpu", "--manifest", str(tmp_path / "manifest.csv"),
            "--imagecond", str(tmp_path / "imagecond"), "--segmenter", str(tmp_path / "seg0"), "--device", "cpu",
            "--out", str(out)]
    assert load_benchmark("pipeline_masks").main(args) == 0
    scores = pd.read_csv(out / "detections" / "scores.csv")
    assert sorted(scores["image_id"]) == ["s0", "s1", "s2", "s3"]
    assert sorted(p.name for p in (out / "detections" / "masks").iterdir()) == [f"s{i}.png" for i in range(4)]
    run = json.loads((out / "detections" / "run.json").read_text())
    assert run["detector_kind"] == "fused"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pipeline_detector"] == "fused" and metrics["n_images"] == 4
    assert all((out / f"detector_{n}").is_dir() for n in ("imagecond", "segment", "fused"))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert load_benchmark("pipeline_masks").main(args) == 2  # an existing folder is never written into
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert "exists" in capsys.readouterr().err
    tiny = args[:3] + ["tiny"] + args[4:-1] + [str(tmp_path / "other")]  # tiny detects with the guided bundle
    assert load_benchmark("pipeline_masks").main(tiny) == 2 and not (tmp_path / "other").exists()
    assert "needs the guided model" in capsys.readouterr().err
    seg = tiny + ["--bundle", "segment"]
    assert load_benchmark("pipeline_masks").main(seg) == 0
    assert json.loads((tmp_path / "other" / "detections" / "run.json").read_text())["detector_kind"] == "segment"
