"""End to end: copy the repository, run `dvc repro` on a tiny synthetic config, check every output.

This is the test a new user's first `make run` corresponds to, at an even smaller size. It runs
the real DVC, MLflow (sqlite store inside the copy), diffusers, GX and Evidently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark_module import load_benchmark
from dermclean.config import deep_merge

pytestmark = pytest.mark.slow

TINY = {
    "data": {"image_size": 32, "synthetic": {"n_images": 64, "size": 48}},
    "diffusion": {"unet": {"block_out_channels": [8, 16]}, "train": {"steps": 6, "batch_size": 8, "checkpoint_every": 3},
                  "noisy_classifier": {"width": 8, "steps": 6, "batch_size": 8}},
    # the image-conditioned model on 32 px tiles of 64 px images; its maps fused with the segmenter's
    # (the fused bundle) are the pipeline's detector
    "detection": {"steps": 2, "batch_size": 16, "pipeline_detector": "fused"},
    "imagecond": {"unet": {"block_out_channels": [8, 16], "work_size": 64},
                  "train": {"steps": 6, "batch_size": 8, "checkpoint_every": 3}, "sample": {"steps": 2}},
    "segment": {"model": {"image_size": 32, "widths": [4, 8]}, "data": {"crop": 16},
                "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 2}},
    "removal": {"steps": 2},
    "classifier": {"width": 4, "epochs": 1, "batch_size": 16, "seeds": [0, 1]},
    "proof": {"bootstrap": 20},
}

EXCLUDE = {".venv", ".git", "mlruns.db", "mlartifacts", "checkpoints", "ray_results", ".pytest_cache",
           "__pycache__", "metrics", "reports", "models", "dvc.lock"}


def _copy_repo(src: Path, dst: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=src, check=True,
                             capture_output=True, text=True).stdout.split()
    for rel in tracked:
        parts = Path(rel).parts
        if parts[0] in EXCLUDE or "__pycache__" in parts or parts[:2] in (("data", "prepared"), ("data", "detections"), ("data", "cleaned")):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (src / rel).is_file():
            shutil.copy2(src / rel, target)


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    if proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, repo_root):
    work = tmp_path_factory.mktemp("e2e") / "repo"
    _copy_repo(repo_root, work)
    params_path = work / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params_path.write_text(yaml.safe_dump(deep_merge(params, TINY), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "RAY_ADDRESS"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    _run(git + ["init", "-q"], work, env)
    _run(git + ["add", "-A"], work, env)
    _run(git + ["commit", "-qm", "copy"], work, env)
    first = _run(["dvc", "repro"], work, env)
    second = _run(["dvc", "repro"], work, env)
    return work, first, second, env


def test_dag_has_the_stages_in_order(pipeline):
    work, *_ = pipeline
    stages = list(yaml.safe_load((work / "dvc.yaml").read_text())["stages"])
    core = ["prepare", "validate", "train_diffusion", "detect", "clean", "train_classifier", "shortcut_report", "promote"]
    assert [s for s in stages if s in core] == core


def test_every_declared_output_exists(pipeline):
    work, *_ = pipeline
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    dvc_yaml = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    assert set(lock) == set(dvc_yaml)
    for name, stage in lock.items():
        for out in stage.get("outs", []):
            path = work / out["path"]
            assert path.exists(), f"{name}: declared output {out['path']} missing"
            if path.is_dir():
                assert any(path.iterdir()), f"{name}: output folder {out['path']} is empty"


def test_second_repro_is_a_no_op(pipeline):
    _, _, second, _ = pipeline
    assert "Running stage" not in second.stdout, second.stdout


def test_outputs_have_expected_content(pipeline):
    work, *_ = pipeline
    manifest = work / "data/prepared/manifest.csv"
    import pandas as pd

    df = pd.read_csv(manifest)
    assert len(df) == TINY["data"]["synthetic"]["n_images"]
    assert set(df["split"]) == {"train", "val", "test"}
    scores = pd.read_csv(work / "data/detections/scores.csv")
    assert len(scores) == len(df)
    assert json.loads((work / "metrics/detect.json").read_text())["pipeline_detector"] == "fused"
    run = json.loads((work / "data/detections/run.json").read_text())
    assert run["detector_kind"] == "fused" and run["fusion"]["members"] == ["imagecond", "segment"]
    unet = json.loads((work / "models/imagecond/config.json").read_text())["config"]
    assert (unet["sample_size"], unet["work_size"]) == (32, 64)
    assert (work / "data/trap_sets/detections/scores.csv").is_file()  # trap set detected once, in its own stage
    segment = json.loads((work / "models/detector_segment/config.json").read_text())
    assert segment["detector_kind"] == "segment"  # the segmenter's bundle, fitted beside the others
    assert {"segment", "fused"} <= set(json.loads((work / "metrics/detection_eval.json").read_text())["detectors"])
    for bundle in ("detector", "detector_imagecond", "detector_segment", "detector_fused"):  # what `audit` flags with
        points = json.loads((work / "models" / bundle / "operating_points.json").read_text())["points"]
        assert all(0.0 <= points[k]["threshold"] for k in ("ruler", "ink", "patches", "any")), points
    for method in ("inpaint", "imagecond", "telea"):
        cleaned = pd.read_csv(work / "data/cleaned" / method / "manifest.csv")
        assert len(cleaned) == len(df)
    shortcut = json.loads((work / "metrics/shortcut.json").read_text())
    variants = ["imagecond", "inpaint", "raw", "telea"]
    assert sorted(p.stem for p in (work / "reports/shortcut").glob("*.html")) == variants  # one report per variant
    assert (work / "reports/shortcut/evidently.js").is_file() and sorted(shortcut["evidently"]) == variants
    assert shortcut["evidently"]["telea"]["reference"] == "raw"
    real = shortcut["real_shortcut"]  # real cutouts pasted, real artifacts removed by the pipeline's remover
    assert real["removal_variant"] == "telea" and set(real["banks"]) == {"patches", "ruler", "ink"}
    assert sorted(real["variants"]) == variants and set(real["claim"]) == {"imagecond", "inpaint", "telea"}
    assert real["association"]["patches"]["direction"] == "benign"  # the generator's patches mark benign lesions
    assert {c["flip"] for c in real["claim"]["telea"].values() if c["direction"] == "benign"} <= {"flip_m2b"}
    for a, bank in real["banks"].items():
        figures = real["variants"]["telea"][a]
        assert "benign_p_gap" in figures["benign_p_gap"]
        if bank["n_cutouts"]:
            excess = figures["insertion_excess"]["shift_benign"]
            assert excess["low"] <= excess["mean"] <= excess["high"]
            assert "shift_benign" in figures["insertion_excess_minus_raw"]
            assert "flip_rate" in figures["insertion_excess_cleaned"]  # pasted, detected, cleaned, classified
        if real["n_removal"].get(a):
            assert "flip_rate" in figures["removal"]
    excess = shortcut["excess_over_natural"]["raw"]  # trap classifier minus natural one, paired over seeds
    assert excess["flip_rate"]["low"] <= excess["flip_rate"]["mean"] <= excess["flip_rate"]["high"]
    assert all("excess_flip_rate" in seed for seed in shortcut["classifiers"]["raw"].values())
    rows = load_benchmark("real_shortcut").trap_table(shortcut).splitlines()[2:]  # the benchmark's trap table
    assert sorted(r.split(" | ")[0].lstrip("| ") for r in rows) == variants
    assert all("n/a" not in r.split(" | ")[3] for r in rows), rows  # every variant's excess gap has an interval
    assert all("n/a" not in r.split(" | ")[7] for r in rows), rows  # and its trap gap behind the pipeline's cleaning
    assert "trap_gap_behind_cleaning" in excess
    for name in ("prepare", "train_diffusion", "train_imagecond", "train_segmenter", "imagecond_eval", "detect", "detection_eval", "clean",
                 "classifier", "shortcut"):
        data = json.loads((work / "metrics" / f"{name}.json").read_text())
        assert data, f"metrics/{name}.json is empty"


def test_mlflow_runs_and_registry(pipeline):
    work, *_ = pipeline
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlruns.db'}")
    for experiment in ("dermclean-diffusion", "dermclean-detector", "dermclean-classifier"):
        exp = client.get_experiment_by_name(experiment)
        assert exp is not None, f"no MLflow experiment {experiment}"
        runs = client.search_runs([exp.experiment_id])
        assert runs, f"no runs in {experiment}"
        assert all(r.data.tags.get("git_commit") for r in runs)
        assert all(r.data.tags.get("dvc_data_hash") for r in runs)
    names = {m.name for m in client.search_registered_models()}
    assert {"dermclean-detector", "dermclean-classifier-raw"} <= names
    raw = client.get_registered_model("dermclean-classifier-raw")
    assert "champion" in raw.aliases
    detector = client.get_registered_model("dermclean-detector")
    assert detector.aliases, "the detector has no alias"
    del mlflow
