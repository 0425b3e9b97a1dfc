"""Benchmark: leave-one-family-out for the image-conditioned detector.

Trains the image-conditioned model of ``--profile`` (its ``imagecond`` section, ``--steps`` overriding
the training steps) with ``imagecond.corruption.painter`` set to ``--painter`` and the families of fold
``--fold`` held out of training (``data.families.fold_exclusion``; with ``--painter styles``, the
pipeline's own recipe, no family is painted and every family counts as held out), fits the pixel
threshold on the clean validation images, then paints every family onto ``--n-images`` clean images
of ``--split`` and reports pixel AP per family, held-out families apart from the families it trained
on (:func:`dermclean.detection.family_eval.evaluate_families`). Run it for each fold and swap; choose
on ``val``, report ``test`` once (the trained model in ``--work`` is reused).

    python benchmarks/lofo_imagecond.py --manifest data/prepared/manifest.csv --fold 0 --out lofo_f0.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from dermclean.config import from_dict, load_params, params_seed
from dermclean.data.families import FAMILIES, family_names, fold_exclusion
from dermclean.detection.config import imagecond_detection_config
from dermclean.detection.storage import build_detector
from dermclean.detection.evaluate import fit_threshold
from dermclean.detection.family_eval import clean_split_images, evaluate_families
from dermclean.diffusion.train import TrainConfig
from dermclean.env import pick_device
from dermclean.io import write_json
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.methods.imagecond.pairs import corruption_from_params, load_clean_images
from dermclean.methods.imagecond.train import train_imagecond
from dermclean.modelio import save_model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--manifest", type=Path, default=Path("data/prepared/manifest.csv"))
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--painter", default="families", choices=["families", "both", "styles"],
                        help="styles: the pipeline's training (renderer styles, no family; --fold ignored)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--work", type=Path, required=True, help="folder for checkpoints and the model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(args.params, profile=args.profile)
    ic, seed, size = params["imagecond"], params_seed(params), int(params["data"]["image_size"])
    styles = args.painter == "styles"  # the pipeline's own recipe: no family painted, so every family is held out
    held = FAMILIES if styles else fold_exclusion(args.fold)
    held_names = family_names(held)
    corruption = corruption_from_params(ic, painter=args.painter, exclude_families=[] if styles else held_names)
    unet_cfg = imagecond_unet_config(sample_size=size, **ic["unet"])
    train = {"seed": seed, **ic["train"], **({"steps": args.steps} if args.steps else {})}
    train_cfg = from_dict(TrainConfig, train)
    device = pick_device(args.device)
    images = load_clean_images(args.manifest, split="train", size=unet_cfg.image_size)
    began = time.perf_counter()
    model = train_imagecond(images, unet_cfg, train_cfg, checkpoint_dir=args.work / "checkpoints", device=device,
                            seed=seed, corruption=corruption)
    train_seconds = time.perf_counter() - began
    save_model_dir(args.work / "model", kind="unet", config=unet_cfg, module=model,
                   meta={"fold": args.fold, "painter": args.painter, "exclude_families": held_names})
    config = imagecond_detection_config(params)
    detector = build_detector(detector_kind="imagecond", unet_dir=args.work / "model", config=config, device=device)
    detector.threshold = fit_threshold(detector, args.manifest, split="val", seed=seed)
    result = evaluate_families(detector, clean_split_images(args.manifest, args.split, args.n_images), seed=seed,
                               held_out=held_names)
    for r in result.results:
        print(f"{r.kind:8s} {r.family:16s} pixel AP {r.pixel_ap:.3f}  tolerant {r.tolerant_ap:.3f}"
              f"{'  (held out)' if r.held_out else ''}")
    print(f"false-positive area on clean images: {100 * result.fp_area_clean:.2f} %; train {train_seconds:.0f} s")
    write_json(args.out, {"profile": args.profile, "fold": args.fold, "painter": args.painter,
                          "train_steps": train_cfg.steps, "train_images": len(images), "train_seconds": train_seconds,
                          "split": args.split, **result.as_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
