"""A real sweep on a real Ray head (``ray start --head`` on 127.0.0.1), joined by address.

Tiny everything: an untrained DermUNet [8, 16] at 16 px in a detector bundle, a synthetic manifest of
32 px images, 2 DDIM steps. The trials call the detection stage's own ``evaluate_detector``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from dermclean.config import from_dict, load_params
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.detection import DetectionConfig, build_detector, save_detector
from dermclean.detection.evaluate import fit_threshold
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.modelio import save_model_dir
from dermclean.sweep import run_sweep

VENV_BIN = Path(sys.executable).parent
DETECTION = {"guidance": "cfg", "noise_level": 200, "guidance_scale": 2.0, "steps": 2, "smoothing_sigma": 1.0,
             "fpr_budget": 0.05, "batch_size": 8}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs, started and stopped by its own process id (not ``ray stop``)."""
    if shutil.which("ray", path=str(VENV_BIN)) is None:
        pytest.skip("the ray CLI is not installed beside this Python")
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayt", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    log = Path(temp_dir) / "head.log"
    with open(log, "w") as out:
        head = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
                                 "--include-dashboard=false", "--node-ip-address=127.0.0.1",
                                 f"--temp-dir={temp_dir}", "--block"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start --head failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        mp = pytest.MonkeyPatch()
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.delenv("RAY_ADDRESS", raising=False)
        yield f"127.0.0.1:{port}"
        mp.undo()
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` shuts its processes down on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A repo-like folder: params.yaml, a tiny manifest (val: 6 clean + 2 ruler images), a detector bundle."""
    root = tmp_path_factory.mktemp("sweep_repo")
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir(parents=True)
    rows = []
    for i in range(8):
        skin = np.array([200, 150, 120]) + rng.integers(-20, 20, 3)
        img = np.clip(skin + rng.normal(0, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
        ruler = int(i >= 6)
        if ruler:
            img[4:7, :, :] = 20
        Image.fromarray(img).save(root / "data" / "images" / f"img{i}.png")
        rows.append({"image_id": f"img{i}", "image_path": f"images/img{i}.png", "diagnosis": "nevus",
                     "melanoma": 0, **{f: 0 for f in ARTIFACT_FLAGS}, "ruler": ruler, "split": "val",
                     "source": "test"})
    manifest = root / "data" / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)

    torch.manual_seed(0)
    unet_cfg = UNetConfig(sample_size=16, block_out_channels=[8, 16])
    save_model_dir(root / "models" / "unet", kind="unet", config=unet_cfg, module=DermUNet(unet_cfg))
    detector = build_detector(detector_kind="guided", unet_dir=root / "models" / "unet",
                              config=from_dict(DetectionConfig, {**DETECTION, "image_size": 16}), device="cpu")
    detector.threshold = fit_threshold(detector, manifest, split="val", seed=0)
    save_detector(detector, root / "models" / "detector")
    params = {"profile": "tiny", "seed": 0, "detection": DETECTION,
              "sweep": {"num_samples": 3, "max_concurrent": 2, "resources": {"cpu": 1}, "max_images": 2,
                        "storage_path": "ray_results", "include_default": True,
                        "space": {"noise_level": {"low": 100, "high": 300, "step": 100},
                                  "guidance_scale": {"low": 0.5, "high": 8.0},
                                  "guidance": ["cfg", "classifier", "none"], "steps": [2]}},
              "profiles": {"tiny": {}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _children(uri: str, parent_id: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dermclean-detector")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_sweep_on_a_ray_head_by_address(ray_head, workspace, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{workspace / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = load_params(workspace / "params.yaml")
    result = run_sweep(params, repo_root=workspace, detector_dir=workspace / "models" / "detector",
                       manifest_path=workspace / "data" / "manifest.csv", out_dir=workspace / "reports" / "sweep",
                       out_params=workspace / "sweep_best.yaml", address=ray_head, resume=False)

    assert result.extra["address"] == ray_head and not result.resumed
    assert len(result.trials) == 3 and all(t.status == "ok" for t in result.trials)
    assert {t.guidance for t in result.trials} <= {"cfg", "none"}  # no noisy classifier in the bundle
    first = result.trials[0]
    assert first.is_default and first.detection == {k: DETECTION[k] for k in first.detection}
    for t in result.trials:
        assert 0.0 <= t.pixel_ap <= 1.0 and t.n_images == 2 and t.duration_s > 0 and t.seconds_per_image > 0
        assert t.noise_level in (100, 200, 300) and t.effective_steps == 2
    assert result.best.pixel_ap == max(t.pixel_ap for t in result.trials)
    assert result.best_config == result.best.detection and result.best_metric == result.best.pixel_ap
    assert 0.0 <= result.overhead_fraction < 1.0 and result.timing.concurrency == 2
    # the drain (slots idle with no trial left) is part of the idle time; Ray's timestamps are whole seconds
    timing = result.timing
    assert 0.0 <= timing.drain_idle_s <= timing.wall_s * timing.concurrency - timing.trial_s_sum + 1.0
    assert 0.0 <= timing.orchestration_vs_trial_time <= timing.overhead_vs_trial_time

    # sweep_best.yaml overrides params.yaml's detection values; the threshold was refitted for it
    best_file = workspace / "sweep_best.yaml"
    assert yaml.safe_load(best_file.read_text()) == {"detection": result.best.detection}
    merged = load_params(workspace / "params.yaml", overrides=[best_file])["detection"]
    assert {k: merged[k] for k in result.best.detection} == result.best.detection
    assert merged["fpr_budget"] == DETECTION["fpr_budget"]
    assert result.threshold["n_images"] == 6 and "val clean" in result.threshold["fitted_on"]
    assert (workspace / "reports" / "sweep" / "sweep_ap.png").stat().st_size > 1000
    summary = yaml.safe_load((workspace / "reports" / "sweep" / "summary.json").read_text())
    assert len(summary["trials"]) == 3 and summary["timing"]["overhead_fraction"] == result.overhead_fraction

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.run_name == result.name and result.name.startswith("sweep-")
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_pixel_ap"] == result.best.pixel_ap
    assert parent.data.tags.get("git_commit") and parent.data.tags.get("dvc_data_hash")
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "sweep")}
    assert {"sweep/sweep_best.yaml", "sweep/sweep_ap.png", "sweep/summary.json"} <= artifacts
    children = _children(uri, result.parent_run_id)
    assert sorted(c.data.tags["ray_trial_id"] for c in children) == sorted(t.trial_id for t in result.trials)
    for child in children:
        assert {"noise_level", "guidance_scale", "guidance", "steps"} <= set(child.data.params)
        assert {"pixel_ap", "image_auroc", "dice", "seconds_per_image", "duration_s"} <= set(child.data.metrics)


@pytest.mark.slow
def test_interrupted_sweep_resumes(ray_head, workspace, tmp_path, monkeypatch):
    """Ctrl-C the sweep after its first trial, resume it: every trial runs once, none is logged twice."""
    uri = f"sqlite:///{workspace / 'mlruns.db'}"
    storage = tmp_path / "ray_results"
    params_file = tmp_path / "params.yaml"
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    # enough trials (each ~0.2 s here) that the interrupt always lands before the sweep is done
    n_trials = 16
    params["sweep"].update(num_samples=n_trials, max_concurrent=1)
    params_file.write_text(yaml.safe_dump(params))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    files = {"params_path": str(params_file), "manifest_path": str(workspace / "data" / "manifest.csv"),
             "detector_dir": str(workspace / "models" / "detector"), "out_dir": str(tmp_path / "out"),
             "best_path": str(tmp_path / "sweep_best.yaml"), "storage_path": str(storage), "address": ray_head}
    # the `dermclean sweep` entry point in a process of its own; SweepInterrupted ends it with status 1
    cmd = [sys.executable, "-c", "import json, sys; from dermclean.sweep.run import sweep_from_files; "
           "sweep_from_files(**json.loads(sys.argv[1]))", json.dumps(files)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(storage.glob("sweep-*/*/result.json")) or not any(
            p.stat().st_size for p in storage.glob("sweep-*/*/result.json")):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the sweep ended before its first trial:\n{proc.communicate()[0][-3000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1 and "--resume" in output, output[-3000:]
    assert not (tmp_path / "sweep_best.yaml").exists()
    (experiment,) = storage.glob("sweep-*")
    done_before = len([p for p in experiment.glob("*/result.json") if p.stat().st_size])
    assert 1 <= done_before < n_trials

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = run_sweep(load_params(params_file), repo_root=tmp_path, detector_dir=workspace / "models" / "detector",
                       manifest_path=workspace / "data" / "manifest.csv", out_dir=tmp_path / "out",
                       out_params=tmp_path / "sweep_best.yaml", address=ray_head, resume=True, storage_path=storage)
    assert result.resumed and result.name == experiment.name
    assert len(result.trials) == n_trials and all(t.status == "ok" for t in result.trials)
    assert len({t.trial_id for t in result.trials}) == n_trials
    assert result.timing.n_trials <= n_trials - done_before + 1  # this session ran only what was left (and the in-flight)
    children = _children(uri, result.parent_run_id)
    assert sorted(c.data.tags["ray_trial_id"] for c in children) == sorted(t.trial_id for t in result.trials)
    assert (tmp_path / "sweep_best.yaml").is_file()
