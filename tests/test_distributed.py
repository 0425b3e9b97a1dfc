"""detect and clean on a real Ray cluster: a head and a worker node on 127.0.0.1, one CPU each.

Both nodes are started here (``ray start --block``, each in a session of its own) and stopped by
their own processes, never by ``ray stop`` (other Ray processes may run on this machine). The outputs
through the cluster are compared with one process's on 40 images of 32-40 px, with the tiny
untrained detector bundle of ``test_detection_contract``; the worker node is killed halfway through
a run, and the same command completes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_detection_contract import tiny_detector
from test_folder_runs import write_images
from typer.testing import CliRunner

from dermclean.audit import run_audit
from dermclean.clean import run_clean_dir
from dermclean.cli import app
from dermclean.detection import run_detect_dir, save_detector
from dermclean.detection.operating_points import OperatingPoint, OperatingPoints
from dermclean.distributed import PROGRESS_FILE
from dermclean.errors import EXIT_INPUT, EXIT_USAGE
from dermclean.io import partial_path

VENV_BIN = Path(sys.executable).parent
N_IMAGES, BATCH = 40, 2
# a node that stops answering is declared dead within ~2 s (Ray's default is ~15 s or more)
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}


@dataclass
class Cluster:
    """A head and worker nodes on 127.0.0.1; ``worker`` is the latest worker node's ``ray start`` process."""

    port: int
    temp_dir: Path
    env: dict[str, str]
    nodes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def worker(self) -> subprocess.Popen:
        return self.nodes[-1]

    def start_worker(self) -> None:
        log = self.temp_dir / f"worker{len(self.nodes)}.log"
        self.nodes.append(_start_node([f"--address={self.address}", "--num-cpus=1"], log, self.env))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_node(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``ray start ... --block`` in a session of its own, waiting until the node says it runs."""
    with open(log, "w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "ray"), "start", *args, "--num-gpus=0",
                                 "--object-store-memory=100000000", "--node-ip-address=127.0.0.1", "--block"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.time() > deadline:
            _stop_node(proc)
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    return proc


def _stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM (``ray start --block`` then stops its node), then SIGKILL whatever is left of its session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    _kill_session(proc.pid)
    proc.wait()


def _session(sid: int) -> dict[int, str]:
    """The processes of session ``sid``: pid -> command line (a Ray worker's shows what it runs)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
            if int(fields[3]) == sid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_text().replace("\0", " ")
        except (OSError, IndexError, ValueError):
            continue
    return found


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (a node started here: ``ray start``, its raylet and the
    actors' workers, which run in process groups of their own), as a machine that dies would."""
    for pid in _session(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("ray", path=str(VENV_BIN)) is None:
        pytest.skip("the ray CLI is not installed beside this Python")
    temp_dir = Path(tempfile.mkdtemp(prefix="rayd", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **FAST_HEALTH_CHECKS}
    env.pop("RAY_ADDRESS", None)
    found = Cluster(port=_free_port(), temp_dir=temp_dir, env=env)
    mp = pytest.MonkeyPatch()
    try:
        found.nodes.append(_start_node(["--head", f"--port={found.port}", "--num-cpus=1", "--include-dashboard=false",
                                        f"--temp-dir={temp_dir}"], temp_dir / "head.log", env))
        found.start_worker()
        mp.setenv("RAY_AUTH_MODE", "disabled")
        mp.delenv("RAY_ADDRESS", raising=False)
        yield found
    finally:
        mp.undo()
        for node in reversed(found.nodes):
            _stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Images, the detector bundle, and one process's detect and clean outputs to compare with."""
    root = tmp_path_factory.mktemp("distributed")
    images = write_images(root / "images", [f"img{i:02d}.png" for i in range(N_IMAGES)])
    save_detector(tiny_detector(), root / "detector")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor (num_cpus=1): the same float reductions, so the same maps
    try:
        run_detect_dir(images, root / "detect", model=root / "detector", device="cpu", batch_size=BATCH,
                       progress=False)
        run_clean_dir(images, root / "clean", method="telea", detector=root / "detector", dilation=1, device="cpu",
                      batch_size=BATCH, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"images": images, "detector": root / "detector", "detect": root / "detect", "clean": root / "clean"}


def assert_same_detection(out: Path, reference: Path) -> None:
    """Same rows in the same order (scores within 1e-6), masks pixel for pixel, maps within 1e-6."""
    got, want = pd.read_csv(out / "scores.csv"), pd.read_csv(reference / "scores.csv")
    assert list(got["image"]) == list(want["image"]) and got["image"].is_unique
    np.testing.assert_allclose(got.drop(columns="image").to_numpy(float), want.drop(columns="image").to_numpy(float),
                               atol=1e-6, rtol=0)
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(p.name for p in (reference / "masks").iterdir())
    for mask in (reference / "masks").iterdir():
        np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / mask.name)), np.asarray(Image.open(mask)))
        stem = mask.stem
        np.testing.assert_allclose(np.load(out / "maps" / f"{stem}.npy"), np.load(reference / "maps" / f"{stem}.npy"),
                                   atol=1e-6, rtol=0)
    assert json.loads((out / "run.json").read_text())["n_images"] == N_IMAGES


def test_detect_on_the_cluster_equals_one_process(cluster, data, tmp_path, monkeypatch):
    images = tmp_path / "images"
    shutil.copytree(data["images"], images)
    (images / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")  # last: the batches stay the same
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)  # no --address: the environment variable decides
    out, skipped = run_detect_dir(images, tmp_path / "out", model=data["detector"], device="cpu", batch_size=BATCH,
                                  progress=False, on_error="skip")
    assert [Path(s.file).name for s in skipped] == ["zz_broken.png"]
    assert pd.read_csv(out / "errors.csv")["file"].map(lambda f: Path(f).name).tolist() == ["zz_broken.png"]
    assert_same_detection(out, data["detect"])
    run = json.loads((out / "run.json").read_text())
    assert (run["address"], run["workers"], run["device"], run["n_resumed"]) == (cluster.address, 2, "cpu", 0)
    assert run["n_skipped"] == 1


def test_a_bad_image_on_the_cluster_is_one_line_and_nothing_is_written(cluster, data, tmp_path):
    images = write_images(tmp_path / "images", ["b.png", "c.png"])
    (images / "a_truncated.png").write_bytes((images / "b.png").read_bytes()[:60])
    result = CliRunner().invoke(app, [str(a) for a in ("detect", images, "--out", tmp_path / "out", "--model",
                                                       data["detector"], "--device", "cpu", "--address",
                                                       cluster.address, "--no-progress")])
    assert result.exit_code == EXIT_INPUT and "a_truncated.png" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_clean_on_the_cluster_equals_one_process(cluster, data, tmp_path):
    result = run_clean_dir(data["images"], tmp_path / "out", method="telea", detector=data["detector"], dilation=1,
                           device="cpu", batch_size=BATCH, progress=False, address=cluster.address, workers=2)
    out, reference = result.out_dir, data["clean"]
    names = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*.png"))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == names and len(names) == 2 * N_IMAGES
    for name in names:
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), np.asarray(Image.open(reference / name)))
    run, want = (json.loads((folder / "run.json").read_text()) for folder in (out, reference))
    assert run["images"] == want["images"] and run["workers"] == 2 and run["address"] == cluster.address


@contextlib.contextmanager
def _head_cpu_held(cluster: Cluster) -> Iterator[Callable[[], None]]:
    """Join the cluster from this process and hold the head node's CPU with an idle actor, so that a run's
    first actor starts on the worker node; yields the function that frees the CPU. The runs inside join
    through this process's Ray."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    class Holder:  # defined here so that Ray ships it by value (the workers cannot import this test module)
        def ping(self) -> bool:
            return True

    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
        holder = ray.remote(num_cpus=1)(Holder).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=head, soft=False)).remote()
        ray.get(holder.ping.remote())
        yield lambda: ray.kill(holder)
    finally:
        ray.shutdown()


def _detect_killing_the_worker_node(cluster: Cluster, data: dict[str, Path], out: Path, *extra: str,
                                    after_kill: Callable[[], None] = lambda: None):
    """``dermclean detect`` through the cluster, SIGKILLing every process of the worker node once the
    progress file lists a batch and the node's actor is running another (then ``after_kill``); the CLI
    result and command line."""
    progress = partial_path(out) / PROGRESS_FILE
    args = [str(a) for a in ("detect", data["images"], "--out", out, "--model", data["detector"], "--device", "cpu",
                             "--batch-size", BATCH, "--address", cluster.address, "--no-progress", *extra)]
    killed_after: list[int] = []

    def kill_mid_batch() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            busy = any("_Worker.run" in cmd for cmd in _session(cluster.worker.pid).values())  # its process title
            if busy and progress.is_file() and (lines := len(progress.read_text().splitlines())) >= 1:
                _kill_session(cluster.worker.pid)
                killed_after.append(lines)
                after_kill()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_mid_batch, daemon=True)
    killer.start()
    result = CliRunner().invoke(app, args)
    killer.join(timeout=5)
    assert killed_after and killed_after[0] < N_IMAGES // BATCH, ("the run ended before the kill", result.output)
    assert "Traceback" not in result.output, result.output
    return result, args


def test_worker_node_killed_mid_batch_the_batch_goes_to_another_actor(cluster, data, tmp_path):
    """The worker node's actor starts first (the head's CPU held); it dies mid-batch with its node, the
    head's CPU is freed, and the head's actor does the lost batch and the rest: the run succeeds."""
    out = tmp_path / "out"
    with _head_cpu_held(cluster) as free_head:
        result, _ = _detect_killing_the_worker_node(cluster, data, out, after_kill=free_head)
    assert result.exit_code == 0, result.output
    assert_same_detection(out, data["detect"])
    run = json.loads((out / "run.json").read_text())
    assert run["retried_batches"] >= 1 and run["workers"] == 2 and not partial_path(out).exists()
    cluster.start_worker()  # for the next test


def test_every_worker_lost_stops_cleanly_and_the_same_command_resumes(cluster, data, tmp_path):
    """With the head's CPU held, the run's one actor lives on the worker node; killing that node ends the
    run (exit 2, build kept); with the head free again, the same command does only what is left."""
    out = tmp_path / "out"
    with _head_cpu_held(cluster) as free_head:
        result, args = _detect_killing_the_worker_node(cluster, data, out, "--workers", "1")
        assert result.exit_code == EXIT_USAGE and "again to resume" in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and not out.exists()  # beside Ray's own note that the node died
        done = len((partial_path(out) / PROGRESS_FILE).read_text().splitlines())
        free_head()
        rerun = CliRunner().invoke(app, args)
        assert rerun.exit_code == 0, rerun.output
    assert_same_detection(out, data["detect"])
    run = json.loads((out / "run.json").read_text())
    assert run["n_resumed"] == done * BATCH and 0 < done < N_IMAGES // BATCH and run["workers"] == 1


def test_audit_on_the_cluster_flags_as_one_process(cluster, data, tmp_path):
    detector = tiny_detector()
    detector.operating_points = OperatingPoints(points={k: OperatingPoint(threshold=0.5, precision=1.0, recall=1.0,
                                                                          f1=1.0, n_positive=1, n_negative=1)
                                                        for k in ("ruler", "ink", "patches", "any")})
    save_detector(detector, tmp_path / "bundle")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"image_id": [f"img{i:02d}" for i in range(N_IMAGES)], "melanoma": [i % 2 for i in range(N_IMAGES)]}
                 ).to_csv(labels, index=False)
    reference = run_audit(data["images"], labels, tmp_path / "reference", model=str(tmp_path / "bundle"),
                          detections=data["detect"], progress=False)
    result = CliRunner().invoke(app, ["audit", str(data["images"]), "--labels", str(labels), "--out",
                                      str(tmp_path / "report"), "--model", str(tmp_path / "bundle"), "--address",
                                      cluster.address, "--device", "cpu", "--batch-size", str(BATCH), "--no-progress"])
    assert result.exit_code == 0, result.output
    got, want = pd.read_csv(tmp_path / "report" / "flags.csv"), pd.read_csv(reference.out_dir / "flags.csv")
    assert list(got.columns) == list(want.columns) and list(got["image"]) == list(want["image"])
    np.testing.assert_allclose(got.drop(columns="image").to_numpy(float), want.drop(columns="image").to_numpy(float),
                               atol=1e-6, rtol=0)
    assert json.loads((tmp_path / "report" / "detections" / "run.json").read_text())["address"] == cluster.address
