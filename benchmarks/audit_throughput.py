"""Benchmark: `dermclean detect` throughput in one process and on a local Ray cluster, and a projection
for an ISIC-2020-size archive on GPU workers.

Measures, over the first ``--n-images`` images of ``--images`` (``--maps none``, as an audit runs):

- images/s and peak memory (summed resident memory of the command's process tree, and of the Ray
  cluster's processes, sampled every 0.2 s) for one process (torch's default threads, and one
  thread), and for Ray with 1 and 2 worker actors (one thread each) on a head started here
  (``ray start --head --num-cpus 2`` on 127.0.0.1);
- the Ray overhead per image: (Ray wall time with one worker - one-process one-thread wall time) / images;
- the per-image cost of what an archive adds on the CPU: decoding a ``6000 x 4000`` JPEG original,
  resizing it to the model's side, bringing the map back to input size for the mask, and writing
  the mask as PNG (one synthetic image, ``--io-repeats`` times).

The projection for ``--archive-images`` (ISIC 2020: 33,126) on 1, 4 and 16 GPU workers is on paper:
a GPU worker's per-image time is the larger of its model time (the ``gpu`` profile's segmenter
forward FLOPs, counted here, at ``--gpu-tflops`` sustained, in batches of the ``gpu`` profile's
``detection.batch_size``) and its CPU time for the large-original I/O above (one process per
worker). Both assumptions are printed beside the figures.

    python benchmarks/audit_throughput.py --model runs/audit_real/detector_segment \\
        --images ../shared/data/isic2017-train-256/images --work runs/throughput --out throughput.json
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from dermclean.config import load_params
from dermclean.data.images import list_images, resize_map
from dermclean.io import write_json

ISIC_2020 = 33_126


class PeakMemory:
    """Peak summed RSS (bytes) of processes and all their descendants, sampled in a thread."""

    def __init__(self, roots: list[int]) -> None:
        self.roots, self.peak, self._stop = roots, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        seen, total = set(), 0
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                for proc in [root, *root.children(recursive=True)]:
                    if proc.pid not in seen:
                        seen.add(proc.pid)
                        total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(0.2)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _input_folder(images: Path, n: int, work: Path) -> Path:
    """A folder of links to the first ``n`` images (the benchmark never copies or touches the originals)."""
    folder = work / "inputs"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    paths = list_images(images)[:n]
    for p in paths:
        (folder / p.name).symlink_to(p.resolve())
    return folder


def _detect(folder: Path, out: Path, model: str, extra: list[str], roots: list[int], threads: int | None = None) -> dict:
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "dermclean", "detect", str(folder), "--out", str(out), "--model", model,
           "--maps", "none", "--no-progress", *extra]
    began = time.perf_counter()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    with PeakMemory([proc.pid, *roots]) as memory:
        output, _ = proc.communicate()
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"detect failed ({proc.returncode}):\n{output[-3000:]}")
    n = len(list((out / "masks").glob("*.png")))
    return {"images": n, "wall_s": wall, "images_per_s": n / wall, "peak_rss_mb": memory.peak / 2**20}


def _ray_head(port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}",
                             "--num-cpus=2", "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--block"],
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None or time.time() > deadline:
            raise SystemExit(f"ray start failed:\n{log.read_text()[-2000:]}")
        time.sleep(1)
    return head


def _stop(head: subprocess.Popen) -> None:
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


def archive_io_seconds(repeats: int, side: int) -> dict:
    """CPU seconds per image to decode a 6000 x 4000 JPEG, resize it to ``side``, bring a map back to input size
    and threshold it, and write the mask as PNG."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)
    big = Image.fromarray(base).resize((6000, 4000), Image.BILINEAR)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    mask = np.zeros((4000, 6000), dtype=np.uint8)
    mask[100:400, 200:3000] = 255
    small_map = rng.random((side, side)).astype(np.float32)
    times = {"decode": [], "resize": [], "map_to_input_size": [], "mask_png": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        image.load()
        t1 = time.perf_counter()
        image.resize((side, side), Image.BILINEAR)
        t2 = time.perf_counter()
        full = resize_map(small_map, (4000, 6000)) > 0.5
        t3 = time.perf_counter()
        Image.fromarray(mask).save(io.BytesIO(), format="PNG")
        t4 = time.perf_counter()
        times["decode"].append(t1 - t0)
        times["resize"].append(t2 - t1)
        times["map_to_input_size"].append(t3 - t2)
        times["mask_png"].append(t4 - t3)
        del full
    out = {k: float(np.median(v)) for k, v in times.items()}
    out["total"] = sum(out.values())
    out["jpeg_mb"] = len(data) / 2**20
    return out


def gpu_flops_per_image(params_path: Path) -> tuple[float, int, int]:
    """Forward FLOPs of the ``gpu`` profile's segmenter per image, its input side and the profile's batch size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dermclean.config import from_dict
    from dermclean.methods.segment.model import Segmenter, SegmenterConfig

    params = load_params(params_path, profile="gpu")
    config = from_dict(SegmenterConfig, params["segment"]["model"], where="segment.model")
    model = Segmenter(config).eval()
    x = torch.zeros(1, 3, config.image_size, config.image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops()), int(config.image_size), int(params["detection"]["batch_size"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="detector bundle folder")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--io-repeats", type=int, default=5)
    parser.add_argument("--gpu-tflops", type=float, default=100.0, help="assumed sustained bf16 TFLOP/s of a GPU worker")
    parser.add_argument("--archive-images", type=int, default=ISIC_2020)
    parser.add_argument("--runs", default="single,single_1thread,ray_1,ray_2",
                        help="which timed runs (comma-separated); the projection always runs")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    folder = _input_folder(args.images, args.n_images, args.work)
    extra = ["--batch-size", str(args.batch_size), "--device", "cpu"]
    runs, results = args.runs.split(","), {}
    for name, threads in (("single", None), ("single_1thread", 1)):
        if name in runs:
            results[name] = _detect(folder, args.work / name, args.model, extra, [], threads=threads)
            print(f"{name}:", results[name], flush=True)
    ray_runs = [int(r.split("_")[1]) for r in runs if r.startswith("ray_")]
    if ray_runs:
        port = _free_port()
        head = _ray_head(port, args.work / "ray_head.log")
        try:
            idle = PeakMemory([head.pid])
            results["ray_idle_rss_mb"] = idle._total() / 2**20
            for workers in ray_runs:
                results[f"ray_{workers}"] = _detect(folder, args.work / f"ray{workers}", args.model,
                                                    [*extra, "--address", f"127.0.0.1:{port}", "--workers",
                                                     str(workers)], [head.pid])
                print(f"ray, {workers} worker(s):", results[f"ray_{workers}"], flush=True)
        finally:
            _stop(head)
    if "ray_1" in results and "single_1thread" in results:
        n = results["single_1thread"]["images"]
        results["ray_overhead_s_per_image"] = (results["ray_1"]["wall_s"] - results["single_1thread"]["wall_s"]) / n
    flops, side, batch = gpu_flops_per_image(args.params)
    io_cost = archive_io_seconds(args.io_repeats, side)
    model_s = flops / (args.gpu_tflops * 1e12)
    per_image = max(model_s, io_cost["total"])
    results["projection"] = {
        "archive_images": args.archive_images, "gpu_segmenter_gflops_per_image": flops / 1e9, "input_side": side,
        "gpu_batch_size": batch, "assumed_gpu_tflops": args.gpu_tflops, "gpu_model_s_per_image": model_s,
        "cpu_io_s_per_image": io_cost, "s_per_image_per_worker": per_image,
        "wall_hours": {w: args.archive_images * per_image / w / 3600 for w in (1, 4, 16)},
    }
    print("projection:", results["projection"], flush=True)
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
