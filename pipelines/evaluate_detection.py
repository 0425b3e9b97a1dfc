"""DVC stage `evaluate_detection`: every detector side by side on the test split (thresholds from val).

Detectors: the guided bundle as configured; the same models with classifier-free guidance and with
classifier guidance (when the bundle has a noisy classifier), and unguided (s = 0) reconstruction;
the classical rule baseline; the image-conditioned bundle when ``--detector-imagecond`` is given.
Each variant whose maps differ from the saved bundle gets its threshold refitted on the validation
split. Writes ``--out-metrics`` (one block per detector), figures into ``--plots`` (grid of image /
map / mask / ground truth per detector, per-type PR curves) and logs both to MLflow.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mlflow

from dermclean.config import load_params, params_seed
from dermclean.detection import load_detector
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.evaluate import EvaluationResult, evaluate_detector_full, fit_threshold
from dermclean.detection.figures import save_grid, save_pr_curves
from dermclean.env import disable_telemetry
from dermclean.io import write_json
from dermclean.methods.classical.rules import ClassicalConfig
from dermclean.tracking import start_run
from dermclean.values import flat_metrics, json_ready

log = logging.getLogger("evaluate_detection")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--detector", type=Path, required=True)
    p.add_argument("--detector-imagecond", type=Path, default=None)
    p.add_argument("--out-metrics", type=Path, required=True)
    p.add_argument("--plots", type=Path, required=True)
    p.add_argument("--device", default=None)
    return p.parse_args()


def variants(args: argparse.Namespace, seed: int) -> dict:
    """name -> detector; the guided bundle's own configuration keeps its validation threshold."""
    guided = load_detector(args.detector, device=args.device)
    cfg = guided.config
    out = {}
    for guidance in ("cfg", "classifier"):
        if guidance == "classifier" and guided.classifier is None:
            log.warning("no noisy classifier in %s: classifier guidance not evaluated", args.detector)
            continue
        scale = cfg.guidance_scale if cfg.guidance == guidance else (cfg.guidance_scale or 1.0)
        out[f"guided_{guidance}"] = guided.with_config(guidance=guidance, guidance_scale=scale)
    out["unguided"] = guided.with_config(guidance="none", guidance_scale=0.0)
    classical = ClassicalDetector(config=ClassicalConfig(fpr_budget=cfg.fpr_budget))
    classical.threshold = fit_threshold(classical, args.manifest, split="val", seed=seed)
    out["classical"] = classical
    if args.detector_imagecond is not None and (args.detector_imagecond / "config.json").is_file():
        out["imagecond"] = load_detector(args.detector_imagecond, device=args.device)
    configured = "unguided" if cfg.guidance == "none" or cfg.guidance_scale == 0 else f"guided_{cfg.guidance}"
    return {"configured": configured, "detectors": out}


def main() -> None:
    disable_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse()
    params = load_params(args.params, overrides=[args.params.parent / "sweep_best.yaml"])
    seed = params_seed(params)
    found = variants(args, seed)
    results: dict[str, EvaluationResult] = {}
    for name, detector in found["detectors"].items():
        log.info("evaluating %s on the test split", name)
        results[name] = evaluate_detector_full(detector, args.manifest, split="test", seed=seed)
    args.plots.mkdir(parents=True, exist_ok=True)
    figures = [save_grid(r, args.plots / f"grid_{n}.png", title=n) for n, r in results.items()]
    figures.append(save_pr_curves(results, args.plots / "pr_curves.png"))
    summary = _summary(results, found["configured"])
    # The promote stage gates detectors on validation figures, never on the test split reported here.
    gated = {"guided": found["detectors"][found["configured"]], "imagecond": found["detectors"].get("imagecond")}
    val = {kind: evaluate_detector_full(d, args.manifest, split="val", seed=seed).metrics
           for kind, d in gated.items() if d is not None}
    out = {"configured": found["configured"], **summary, "detectors": {n: r.metrics for n, r in results.items()},
           "val": val}
    write_json(args.plots / "detection_eval.json", json_ready(out))
    _track(params, args, results, [f for f in figures if f is not None], summary)
    write_json(args.out_metrics, json_ready(out))


def _summary(results: dict[str, EvaluationResult], configured: str) -> dict:
    ap = {n: r.metrics.get("pixel_ap", float("nan")) for n, r in results.items()}
    best_guided = max((v for n, v in ap.items() if n.startswith("guided_")), default=float("nan"))
    baselines = [ap[n] for n in ("classical", "unguided") if n in ap]
    return {"configured_pixel_ap": ap.get(configured, float("nan")), "best_guided_pixel_ap": best_guided,
            "guided_beats_baselines": bool(baselines) and all(best_guided > b for b in baselines)}


def _track(params: dict, args: argparse.Namespace, results: dict, figures: list[Path], summary: dict) -> None:
    with start_run("dermclean-detector", "evaluate_detection", params=params, data_paths=[args.manifest.parent],
                   tags={"stage": "evaluate_detection"}):
        mlflow.log_metrics(flat_metrics({name: result.metrics for name, result in results.items()}))
        mlflow.log_metrics(flat_metrics(summary))
        for figure in figures:
            mlflow.log_artifact(str(figure), artifact_path="figures")


if __name__ == "__main__":
    main()
