"""dermclean.tracking against real MLflow stores: a local sqlite store and a real `mlflow server`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

import dermclean
from dermclean.classifier.model import KIND, ClassifierConfig, build_classifier
from dermclean.classifier.predict import predict_paths
from dermclean.data.images import save_png
from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.modelio import load_model_dir, save_model_dir
from dermclean.tracking import (ModelNotFound, configure_tracking, flatten_params, get_alias_version,
                                log_model_folder, register_model_version, resolve_model, set_alias, start_run)
from dermclean.tracking.lineage import data_hash, path_md5


@pytest.fixture
def isolated_mlflow(tmp_path, monkeypatch):
    """No tracking URI set, model cache in tmp; restores MLflow's global URI afterwards."""
    saved = tracking_utils._tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DERMCLEAN_MODEL_CACHE", str(tmp_path / "cache"))
    tracking_utils._tracking_uri = None
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(saved)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite database with its tables created once (migrations are the slow part)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("store")
    SqlAlchemyStore(f"sqlite:///{folder / 'mlruns.db'}", str(folder / "unused-artifacts"))
    return folder / "mlruns.db"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, empty_store):
    """A real `mlflow server` on 127.0.0.1 with a sqlite store and proxied artifacts."""
    shutil.copy(empty_store, tmp_path / "server.db")
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded 2-core host can take a minute
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tiny_unet(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = UNetConfig(sample_size=8, block_out_channels=[4, 8])
    return save_model_dir(path, kind="unet", config=config, module=DermUNet(config))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)


def test_server_run_model_registry_roundtrip(isolated_mlflow, mlflow_server, monkeypatch):
    tmp = isolated_mlflow
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.chdir(tmp)
    assert configure_tracking(tmp) == mlflow_server
    (tmp / "data").mkdir()
    (tmp / "data" / "a.txt").write_text("lesion")
    model_dir = _tiny_unet(tmp / "unet")
    params = {"profile": "tiny", "diffusion": {"train": {"lr": 0.001, "steps": 3}}, "sizes": [4, 8]}

    with start_run("dermclean-diffusion", "tiny-unet", params=params, data_paths=[tmp / "data"],
                   tags={"stage": "test"}) as run:
        mlflow.log_metric("loss", 0.5)
        uri = log_model_folder(model_dir)
    assert uri.startswith("models:/m-")

    logged = MlflowClient().get_run(run.info.run_id)
    assert logged.data.params == {"profile": "tiny", "diffusion.train.lr": "0.001",
                                  "diffusion.train.steps": "3", "sizes": "[4, 8]"}
    tags = logged.data.tags
    assert tags["git_commit"] == "unknown"  # tmp is not a git repository
    assert tags["dvc_data_hash"] == path_md5(tmp / "data") and tags["dvc_data_hash"].endswith(".dir")
    assert tags["dermclean_version"] == dermclean.__version__
    assert tags["profile"] == "tiny" and tags["stage"] == "test"

    version = register_model_version(uri, "dermclean-unet-test", tags={"kind": "unet"}, description="tiny")
    again = register_model_version(uri, "dermclean-unet-test", tags={"kind": "unet"}, description="tiny")
    assert again.version == version.version == "1"
    assert again.tags["kind"] == "unet" and again.run_id == run.info.run_id
    assert get_alias_version("dermclean-unet-test", "champion") is None
    set_alias("dermclean-unet-test", "champion", version.version)
    assert get_alias_version("dermclean-unet-test", "champion").version == "1"

    local = resolve_model("models:/dermclean-unet-test@champion")
    assert (local / "config.json").is_file() and local != model_dir
    original, restored = _weights(model_dir), _weights(local)
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    module, config, _ = load_model_dir(local)
    assert config.block_out_channels == [4, 8]

    with pytest.raises(ModelNotFound, match="dvc repro"):
        resolve_model("models:/dermclean-unet-test@missing")
    with pytest.raises(ModelNotFound, match="dvc repro"):
        resolve_model("models:/dermclean-nothing@champion")


def test_sqlite_default_pyfunc_and_cache(isolated_mlflow, empty_store, monkeypatch):
    tmp = isolated_mlflow
    repo = tmp / "repo"
    (repo / ".dvc").mkdir(parents=True)
    shutil.copy(empty_store, repo / "mlruns.db")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    uri = configure_tracking()
    assert uri == f"sqlite:///{repo / 'mlruns.db'}"
    assert configure_tracking(tmp / "other") == f"sqlite:///{tmp / 'other' / 'mlruns.db'}"  # not pinned by env
    assert configure_tracking(repo) == uri
    (repo / "manifest.csv").write_text("image_id\nx\n")
    model_dir = _tiny_unet(repo / "models" / "unet", seed=1)
    with start_run("dermclean-diffusion", "r", params={"seed": 1}, data_paths=["manifest.csv"]) as run:
        model_uri = log_model_folder(model_dir)
    experiment = MlflowClient().get_experiment_by_name("dermclean-diffusion")
    assert experiment.artifact_location == (repo / "mlartifacts" / "dermclean-diffusion").as_uri()
    assert list((repo / "mlartifacts").rglob("weights.pt"))
    assert MlflowClient().get_run(run.info.run_id).data.tags["dvc_data_hash"] == path_md5(repo / "manifest.csv")

    # the pyfunc model from code loads without unpickling and rebuilds the same weights
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    inner = pyfunc.unwrap_python_model()
    assert inner.kind == "unet"
    state = inner.module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in _weights(model_dir).items())
    with pytest.raises(TypeError, match="component logged for lineage"):
        pyfunc.predict(["a.png"])

    first = resolve_model(model_uri)
    assert resolve_model(model_uri.removeprefix("models:/")) == first  # bare m-<id>, served from the cache
    assert resolve_model(str(model_dir)) == model_dir
    with pytest.raises(ModelNotFound, match="--model PATH"):
        resolve_model(repo / "nowhere")
    with pytest.raises(RuntimeError, match="start_run"):
        log_model_folder(model_dir)


def test_pyfunc_classifier_predicts_like_the_library(isolated_mlflow, empty_store, monkeypatch):
    """kind "classifier" dispatches to dermclean.classifier.predict.predict_paths, device/batch from model_config."""
    import numpy as np
    import pandas as pd

    tmp = isolated_mlflow
    monkeypatch.chdir(tmp)
    shutil.copy(empty_store, tmp / "mlruns.db")
    configure_tracking(tmp)
    torch.manual_seed(0)
    config = ClassifierConfig(arch="resnet10", width=4, image_size=32)
    model_dir = save_model_dir(tmp / "clf", kind=KIND, config=config, module=build_classifier(config))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp / "images" / f"img{i}.png")
        save_png(paths[-1], rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    with start_run("dermclean-classifier", "tiny", params={}, data_paths=[tmp / "images"]):
        uri = log_model_folder(model_dir)
    pyfunc = mlflow.pyfunc.load_model(uri, model_config={"device": "cpu", "batch_size": 2})
    got = pyfunc.predict(pd.DataFrame({"path": [str(p) for p in paths]}))
    expected = predict_paths(model_dir, paths, device="cpu", batch_size=2)
    assert list(got["image"]) == ["img0.png", "img1.png", "img2.png"]
    np.testing.assert_allclose(got["p_malignant"], expected["p_malignant"], rtol=1e-6)
    assert list(pyfunc.predict([str(p) for p in paths])["image"]) == list(got["image"])  # a plain list works too
    with pytest.raises(ValueError, match="'path' column"):
        pyfunc.predict(pd.DataFrame({"file": ["x.png"]}))


def test_dvc_data_hash_matches_dvc(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / "b.png").write_bytes(b"\x89PNG fake bytes")
    (data / "labels.csv").write_text("image_id,melanoma\nb,0\n")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "data"], cwd=tmp_path, check=True,
                   capture_output=True)
    recorded = (tmp_path / "data.dvc").read_text()
    assert f"md5: {path_md5(data)}" in recorded

    lock = {"schema": "2.0", "stages": {"prepare": {"cmd": "x", "outs": [{"path": "data", "md5": path_md5(data)}]}}}
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))  # JSON is valid YAML
    hashed = data_hash(["data"], root=tmp_path)
    assert hashed.source == "dvc.lock" and hashed.value == path_md5(data)
    (data / "labels.csv").write_text("image_id,melanoma\nb,1\n")  # dvc.lock now stale
    stale = data_hash(["data"], root=tmp_path)
    assert stale.source == "content" and stale.value != hashed.value
    both = data_hash(["data", "data/labels.csv"], root=tmp_path)
    assert both.value.endswith(".dir") and set(both.paths) == {"data", "data/labels.csv"}
    with pytest.raises(FileNotFoundError, match="missing"):
        data_hash(["missing"], root=tmp_path)


def test_flatten_params():
    assert flatten_params({"a": {"b": {"c": 1}}, "d": None, "e": True, "f": [1, 2], "g": "x"}) == {
        "a.b.c": "1", "d": "null", "e": "true", "f": "[1, 2]", "g": "x"}
