"""Every detector side by side on the test split, thresholds from validation (the ``evaluate_detection`` stage).

Detectors: the guided bundle as configured; the same models with classifier-free guidance and with
classifier guidance (when the bundle has a noisy classifier), and unguided (s = 0) reconstruction;
the classical rule baseline; the image-conditioned, segmenter and fused bundles when given. Each variant whose maps
differ from the saved bundle gets its threshold refitted on the validation split. The detectors share
a :class:`~dermclean.detection.memo.MapMemo`, so the fused bundle's members read the maps the
image-conditioned and segmenter bundles made of the same images. Figures: a grid
of image / map / mask / ground truth per detector and per-type PR curves. The promote stage gates
detectors on the validation figures computed here, never on the test split reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.storage import load_detector
from dermclean.detection.evaluate import EvaluationResult, evaluate_detector_full, fit_threshold
from dermclean.detection.figures import save_grid, save_pr_curves
from dermclean.detection.memo import remembering
from dermclean.methods.classical.rules import ClassicalConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The metrics file's content, the per-detector results and the figure files written."""

    metrics: dict[str, Any]
    results: dict[str, EvaluationResult]
    summary: dict[str, Any]
    figures: list[Path]


def variants(detector: Path, detector_imagecond: Path | None, manifest: Path, *, seed: int,
             device: str | None = None, detector_segment: Path | None = None,
             detector_fused: Path | None = None) -> tuple[str, dict[str, Any]]:
    """The configured variant's name and name -> detector; the guided bundle's own configuration keeps
    its validation threshold."""
    guided = load_detector(detector, device=device)
    cfg = guided.config
    out = {}
    for guidance in ("cfg", "classifier"):
        if guidance == "classifier" and guided.classifier is None:
            log.warning("no noisy classifier in %s: classifier guidance not evaluated", detector)
            continue
        scale = cfg.guidance_scale if cfg.guidance == guidance else (cfg.guidance_scale or 1.0)
        out[f"guided_{guidance}"] = guided.with_config(guidance=guidance, guidance_scale=scale)
    out["unguided"] = guided.with_config(guidance="none", guidance_scale=0.0)
    classical = ClassicalDetector(config=ClassicalConfig(fpr_budget=cfg.fpr_budget))
    classical.threshold = fit_threshold(classical, manifest, split="val", seed=seed)
    out["classical"] = classical
    for name, folder in (("imagecond", detector_imagecond), ("segment", detector_segment), ("fused", detector_fused)):
        if folder is not None and (folder / "config.json").is_file():
            out[name] = load_detector(folder, device=device)
    configured = "unguided" if cfg.guidance == "none" or cfg.guidance_scale == 0 else f"guided_{cfg.guidance}"
    return configured, out


def summarize(results: dict[str, EvaluationResult], configured: str) -> dict[str, Any]:
    ap = {n: r.metrics.get("pixel_ap", float("nan")) for n, r in results.items()}
    best_guided = max((v for n, v in ap.items() if n.startswith("guided_")), default=float("nan"))
    baselines = [ap[n] for n in ("classical", "unguided") if n in ap]
    return {"configured_pixel_ap": ap.get(configured, float("nan")), "best_guided_pixel_ap": best_guided,
            "guided_beats_baselines": bool(baselines) and all(best_guided > b for b in baselines)}


def compare_detectors(detector: Path, detector_imagecond: Path | None, manifest: Path, plots: Path, *, seed: int,
                      device: str | None = None, detector_segment: Path | None = None,
                      detector_fused: Path | None = None) -> Comparison:
    """Evaluate every variant on test (figures into ``plots``) and the gated bundles on validation."""
    configured, detectors = variants(detector, detector_imagecond, manifest, seed=seed, device=device,
                                     detector_segment=detector_segment, detector_fused=detector_fused)
    results: dict[str, EvaluationResult] = {}
    with remembering(detectors.values()) as memo:
        for name, found in detectors.items():
            log.info("evaluating %s on the test split", name)
            results[name] = evaluate_detector_full(found, manifest, split="test", seed=seed)
        gated = {"guided": detectors[configured], "imagecond": detectors.get("imagecond")}
        val = {kind: evaluate_detector_full(d, manifest, split="val", seed=seed).metrics
               for kind, d in gated.items() if d is not None}
    log.info("maps computed %d times, reused %d times", memo.misses, memo.hits)
    plots.mkdir(parents=True, exist_ok=True)
    figures = [save_grid(r, plots / f"grid_{n}.png", title=n) for n, r in results.items()]
    figures.append(save_pr_curves(results, plots / "pr_curves.png"))
    summary = summarize(results, configured)
    metrics = {"configured": configured, **summary, "detectors": {n: r.metrics for n, r in results.items()}, "val": val}
    return Comparison(metrics=metrics, results=results, summary=summary, figures=[f for f in figures if f is not None])
