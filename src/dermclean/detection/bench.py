"""``dermclean bench detect``: detector speed, next to the Wolleb et al. 2022 reference configuration.

Times the detector's model work (anomaly maps + per-type scores on ``(B,3,S,S)`` tensors, after one
warm-up batch) for the configured steps and batch size, and for the reference configuration of
Wolleb et al.'s code on the same model: L = T/2 (500 of 1000), every DDIM step, plain DDIM
inversion, one image at a time. The reference is slow, so it runs on ``reference_images`` images.
A benchmark, not a test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermclean.constants import DEFAULT_DETECTOR
from dermclean.data.images import list_images, load_rgb, to_tensor
from dermclean.data.manifest import image_paths, read_manifest
from dermclean.detection.detector import Detector
from dermclean.detection.storage import load_detector


def _tensors(images: Any, size: int, n_images: int) -> torch.Tensor:
    """``(N,3,S,S)`` from a tensor, a list of uint8 images, a folder, or a manifest CSV (its test split)."""
    if isinstance(images, torch.Tensor):
        return images[:n_images].float()
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_file() and path.suffix == ".csv":
            df = read_manifest(path)
            df = df[df["split"] == "test"] if (df["split"] == "test").any() else df
            paths = image_paths(df.head(n_images), path)
        else:
            paths = list_images(path)[:n_images]
        images = [load_rgb(p) for p in paths]
    arrays = [np.asarray(im) for im in list(images)[:n_images]]
    if not arrays:
        raise ValueError("bench detect: no images to time")
    return torch.stack([to_tensor(a, size) for a in arrays])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_detector(detector: Detector, x: torch.Tensor) -> dict[str, float]:
    """Seconds for ``x (N,3,S,S)`` in batches of ``config.batch_size`` (one warm-up batch first)."""
    bs = max(1, detector.config.batch_size)
    detector.anomaly_maps(x[:bs]), detector.type_scores(x[:bs])
    _sync(detector.device)
    start = time.perf_counter()
    for i in range(0, len(x), bs):
        detector.anomaly_maps(x[i:i + bs])
        detector.type_scores(x[i:i + bs])
    _sync(detector.device)
    seconds = time.perf_counter() - start
    return {"images": len(x), "seconds": seconds, "images_per_s": len(x) / seconds, "s_per_image": seconds / len(x)}


def reference_config(detector: Detector) -> dict[str, Any]:
    """Wolleb et al.'s reference: L = T/2, every DDIM step, plain inversion, batch 1."""
    t = detector.unet.module.config.num_train_timesteps
    return {"noise_level": t // 2, "steps": t // 2, "inversion_iters": 0, "batch_size": 1}


def bench_detect(model: str | os.PathLike[str] | Detector, images: Any, *, device: str | None = None,
                 batch_size: int | None = None, steps: int | None = None, reference: bool = True,
                 n_images: int = 16, reference_images: int = 2, cpu_bf16: bool | None = None) -> dict[str, Any]:
    """Images/s and s/image for the configured detector and (``reference``) the Wolleb configuration.

    ``cpu_bf16`` overrides the bundle's ``config.cpu_bf16`` (bf16 autocast on CPU) for both timings.
    """
    detector = model if isinstance(model, Detector) else load_detector(model, device=device)
    overrides = {k: v for k, v in {"batch_size": batch_size, "steps": steps}.items() if v}
    if cpu_bf16 is not None:
        overrides["cpu_bf16"] = bool(cpu_bf16)
    configured = detector.with_config(**overrides) if overrides else detector
    x = _tensors(images, configured.config.image_size, n_images)
    cfg = configured.config
    result: dict[str, Any] = {
        "device": str(configured.device),
        "device_name": torch.cuda.get_device_name(configured.device) if configured.device.type == "cuda" else "cpu",
        "image_size": cfg.image_size, "detector_kind": configured.detector_kind, "cpu_bf16": cfg.cpu_bf16,
        "configured": {"guidance": cfg.guidance if configured.detector_kind == "guided" else "imagecond",
                       "noise_level": _start_level(configured), "steps": cfg.steps,
                       "inversion_iters": cfg.inversion_iters, "batch_size": cfg.batch_size,
                       **time_detector(configured, x)},
    }
    if reference and configured.detector_kind == "guided":
        ref = configured.with_config(**reference_config(configured))
        result["reference"] = {"guidance": cfg.guidance, **reference_config(configured),
                               **time_detector(ref, x[:max(1, reference_images)])}
        result["speedup"] = result["reference"]["s_per_image"] / result["configured"]["s_per_image"]
    return result


def _start_level(detector: Detector) -> int:
    """Where sampling starts: L for a guided detector; the image-conditioned start (T = pure noise)."""
    if detector.detector_kind == "imagecond":
        return int(detector.config.imagecond_noise_level or detector.unet.module.config.num_train_timesteps)
    return int(detector.config.noise_level)


def bench_detect_cli(*, model: str | None, images: Path | None, device: str | None, batch_size: int | None,
                     n_images: int, reference: bool, reference_images: int,
                     cpu_bf16: bool | None = None) -> dict[str, Any]:
    """What ``dermclean bench detect`` runs: defaults (models/detector, the prepared test split), a table."""
    if model is None:
        model = "models/detector" if Path("models/detector/config.json").is_file() else DEFAULT_DETECTOR
    if images is None:
        images = Path("data/prepared/manifest.csv")
        if not images.is_file():
            raise FileNotFoundError("bench detect: no --images folder and no data/prepared/manifest.csv; run "
                                    "`make run` first or pass --images DIR")
    result = bench_detect(model, images, device=device, batch_size=batch_size, reference=reference,
                          n_images=n_images, reference_images=reference_images, cpu_bf16=cpu_bf16)
    print(format_bench(result))
    return result


def format_bench(result: dict[str, Any]) -> str:
    precision = "bf16 autocast" if result["device"] != "cpu" or result.get("cpu_bf16") else "fp32"
    lines = [f"device: {result['device']} ({result['device_name']}), {result['image_size']} px, {precision}",
             f"{'config':<11}{'L':>6}{'steps':>7}{'batch':>7}{'images':>8}{'img/s':>10}{'s/img':>10}"]
    for name in ("configured", "reference"):
        if name in result:
            r = result[name]
            lines.append(f"{name:<11}{r['noise_level']:>6}{r['steps']:>7}{r['batch_size']:>7}{r['images']:>8}"
                         f"{r['images_per_s']:>10.3f}{r['s_per_image']:>10.3f}")
    if "speedup" in result:
        lines.append(f"speed-up over the reference: {result['speedup']:.1f}x")
    return "\n".join(lines)
