"""DVC stage `detect`: build the detector bundles, fit thresholds on validation, detect over the manifest.

Reads the trained models (``--diffusion``: ``unet/`` + optional ``noisy_classifier/``; ``--imagecond``:
the image-conditioned model folder) and ``params["detection"]`` (profile applied, then
``sweep_best.yaml`` beside params.yaml when present). Writes ``--out-model`` (guided bundle),
``<out-model>_imagecond`` (when ``--imagecond`` is given), ``--out`` (maps/ masks/ scores.csv
run.json over every manifest image, keyed by image_id, from the bundle ``detection.pipeline_detector``
names: ``guided`` or ``imagecond``) and ``--metrics``; logs an MLflow run in ``dermclean-detector``
with both bundles. With ``detection.image_score: fitted`` or ``stacked`` the ``val_*`` image AUROCs are
in-sample (the image score was fitted on those labels; a stacked score's map model on the train
split's); the ``test_*`` ones are not.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from dermclean.config import from_dict, load_params, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb
from dermclean.data.manifest import image_paths, read_manifest
from dermclean.detection import DetectionConfig, build_detector, save_detector
from dermclean.detection.contract import detect_to_folder, run_info
from dermclean.detection.evaluate import fit_on_validation
from dermclean.detection.metrics import labelled_image_aurocs
from dermclean.env import disable_telemetry
from dermclean.io import write_json
from dermclean.tracking import log_model_folder, start_run
from dermclean.values import flat_metrics, json_ready

log = logging.getLogger("detect")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--diffusion", type=Path, required=True)
    p.add_argument("--imagecond", type=Path, default=None)
    p.add_argument("--out-model", type=Path, required=True)
    p.add_argument("--out-model-imagecond", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True)
    p.add_argument("--device", default=None)
    return p.parse_args()


def _split_aurocs(scores: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, float]:
    """Image AUROC per split from the scores of every manifest image (labelled rows only)."""
    df = manifest.merge(scores, on="image_id", suffixes=("", "_score"))
    out = {}
    for split in ("val", "test"):
        part = df[df["split"] == split]
        labels = part[list(OUTLIER_CLASSES)].to_numpy(dtype=float, na_value=np.nan)  # nullable Int8, <NA> unknown
        figures = labelled_image_aurocs(part["score"].to_numpy(float),
                                        part[[f"{k}_score" for k in OUTLIER_CLASSES]].to_numpy(float), labels)
        out.update({f"{split}_image_auroc_{k}": v for k, v in figures.items() if k != "images"})
    return out


def main() -> None:
    disable_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse()
    params = load_params(args.params, overrides=[args.params.parent / "sweep_best.yaml"])
    seed = params_seed(params)
    section = dict(params["detection"])
    chosen = section.pop("pipeline_detector", "guided")
    config = from_dict(DetectionConfig, section, where=f"{args.params}: detection")
    classifier_dir = args.diffusion / "noisy_classifier"
    classifier_dir = classifier_dir if (classifier_dir / "config.json").is_file() else None

    bundles: dict[str, tuple] = {}
    guided = build_detector(detector_kind="guided", unet_dir=args.diffusion / "unet", config=config,
                            classifier_dir=classifier_dir, device=args.device)
    bundles["guided"] = (guided, args.out_model)
    if args.imagecond is not None:
        ic_config = config.replace(steps=int(params.get("imagecond", {}).get("steps", config.steps)))
        imagecond = build_detector(detector_kind="imagecond", unet_dir=args.imagecond, config=ic_config,
                                   classifier_dir=classifier_dir, device=args.device)
        out_ic = args.out_model_imagecond or args.out_model.with_name(args.out_model.name + "_imagecond")
        bundles["imagecond"] = (imagecond, out_ic)
    if chosen not in bundles:
        raise ValueError(f"{args.params}: detection.pipeline_detector is {chosen!r}; expected one of "
                         f"{sorted(bundles)} (imagecond needs --imagecond)")

    metrics: dict[str, float | int | str] = {}
    for name, (detector, out) in bundles.items():
        detector.threshold, detector.image_scorer = fit_on_validation(detector, args.manifest, split="val", seed=seed)
        save_detector(detector, out, meta={"profile": params.get("profile"), "seed": seed,
                                           "manifest": str(args.manifest)})
        metrics[f"{name}_threshold"] = detector.threshold.value
        if detector.image_scorer is not None:
            w_classifier, w_map = detector.image_scorer.weights
            metrics.update({f"{name}_image_score_w_classifier": w_classifier, f"{name}_image_score_w_map": w_map})
            if detector.image_scorer.map_model is not None:
                metrics[f"{name}_map_model_n_train"] = detector.image_scorer.map_model.n_images
        log.info("%s detector saved to %s (threshold %.4f)", name, out, detector.threshold.value)

    manifest = read_manifest(args.manifest)
    paths = image_paths(manifest, args.manifest)
    items = ((iid, p.name, load_rgb(p)) for iid, p in zip(manifest["image_id"], paths))
    detector, bundle_dir = bundles[chosen]
    log.info("detecting over %d manifest images with the %s bundle", len(paths), chosen)
    info = run_info(detector, model=str(bundle_dir), device=detector.device, seconds=0.0, n_images=len(paths))
    scores, seconds = detect_to_folder(detector, items, args.out, n_total=len(paths), extra_columns=("image_id",),
                                       info=info)
    metrics.update(pipeline_detector=chosen, image_score=detector.image_score_kind, n_images=len(scores),
                   seconds_per_image=seconds / max(len(scores), 1))
    metrics["mean_mask_area"] = float(np.mean([(np.load(args.out / "maps" / f"{i}.npy") > detector.threshold.value).mean()
                                               for i in scores["image_id"]]))
    metrics.update(_split_aurocs(scores, manifest))
    _track(params, args, bundles, metrics)
    write_json(args.metrics, json_ready(metrics))


def _track(params: dict, args: argparse.Namespace, bundles: dict, metrics: dict) -> None:
    with start_run("dermclean-detector", "detect", params=params, data_paths=[args.manifest.parent],
                   tags={"stage": "detect"}) as run:
        mlflow.log_metrics(flat_metrics(metrics))
        for name, (_, out) in bundles.items():
            uri = log_model_folder(out, name="model" if name == "guided" else f"model_{name}")
            write_json(out / "mlflow_run.json", {"run_id": run.info.run_id, "model_uri": uri,
                                                  "experiment": "dermclean-detector", "bundle": name})


if __name__ == "__main__":
    main()
