"""Benchmark: where the removal bar's "+3 dB over Telea inside the mask" could come from.

On the removal evaluation's painted cases (:func:`dermclean.removal.evaluate.paint_cases`: clean images
of ``--split``, one training-style and one held-out-style artifact of each type, exact masks dilated
by ``removal.dilation``) it prints the in-mask PSNR (the removal evaluation's figure, over the dilated
mask) of:

* ``telea`` and ``imagecond``: the two methods as the ``clean`` stage runs them (the baseline and the
  image-conditioned model pasted inside the dilated mask);
* ``imagecond on painted pixels``: the model's output pasted only on the pixels the renderer changed,
  the input kept on the clean ring the dilation adds (an oracle: the painted pixels are not known at
  run time). It separates the model's fill from the ring it repaints;
* ``telea on painted pixels``: Telea told exactly the painted pixels (the same oracle), the most a
  Telea fill gains from a perfect mask;
* ``telea where imagecond changes``: Telea inside the pixels of the dilated mask where the
  image-conditioned output differs from the input by at least ``--tau`` (channel sum, 0-765), grown
  by 1 px: the model's own reading of which pixels are artifact, filled classically (no oracle).

Run from the repository root after ``dvc repro train_imagecond`` on the real set:

    python benchmarks/removal_headroom.py --split val --taus 6 12 24 48    # choose tau here
    python benchmarks/removal_headroom.py --split test --taus 24           # then report
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dermclean.config import load_params, params_parser, params_seed
from dermclean.constants import OUTLIER_CLASSES
from dermclean.data.images import load_rgb
from dermclean.data.manifest import clean_mask, image_paths, read_manifest
from dermclean.data.masks import dilate_mask
from dermclean.env import disable_telemetry
from dermclean.io import write_json
from dermclean.methods.classical.telea import telea_inpaint
from dermclean.removal.engine import make_remover, removal_config
from dermclean.removal.evaluate import paint_cases
from dermclean.removal.metrics import masked_psnr


def main(argv: list[str] | None = None) -> int:
    disable_telemetry()
    parser = params_parser(__doc__.splitlines()[0])
    parser.add_argument("--imagecond", type=Path, default=Path("models/imagecond"))
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--images", type=int, default=None, help="clean images painted (default: removal.eval_images)")
    parser.add_argument("--taus", type=float, nargs="+", default=[24.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.params, profile=args.profile)
    seed = params_seed(params)
    config = removal_config(params, seed=seed, methods=["imagecond", "telea"])  # as the clean stage builds it
    df = read_manifest(args.manifest)
    rows = df[(df["split"] == args.split).fillna(False).to_numpy() & clean_mask(df).to_numpy()]
    rows = rows.iloc[:args.images or config.eval_images or len(rows)]
    images = [(str(i), load_rgb(p)) for i, p in zip(rows["image_id"], image_paths(rows, args.manifest))]
    cases = paint_cases(images, dilation=config.dilation, seed=seed)
    remover = make_remover("imagecond", model=args.imagecond, config=config, device=args.device)
    model_out = remover.fill([c.corrupted for c in cases], [c.mask for c in cases])

    psnr: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for case, out in zip(cases, model_out):
        painted = np.abs(case.corrupted.astype(int) - case.original.astype(int)).sum(-1) > 0
        changed = np.abs(out.astype(int) - case.corrupted.astype(int)).sum(-1)
        fills = {"telea": telea_inpaint(case.corrupted, case.mask, radius=config.telea_radius),
                 "imagecond": out,
                 "imagecond on painted pixels": np.where(painted[..., None], out, case.corrupted),
                 "telea on painted pixels": telea_inpaint(case.corrupted, painted & case.mask,
                                                          radius=config.telea_radius)}
        for tau in args.taus:
            region = dilate_mask(changed >= tau, 1) & case.mask
            fills[f"telea where imagecond changes >= {tau:g}"] = telea_inpaint(case.corrupted, region,
                                                                               radius=config.telea_radius)
        for name, filled in fills.items():
            value = masked_psnr(filled, case.original, case.mask)
            psnr[name][case.kind].append(value)
            psnr[name]["all"].append(value)
    result = {"split": args.split, "n_images": len(images), "n_cases": len(cases), "dilation": config.dilation,
              "model_version": remover.version,
              "psnr_in": {name: {kind: float(np.mean(v)) for kind, v in kinds.items()} for name, kinds in psnr.items()}}
    base = result["psnr_in"]["telea"]["all"]
    print(f"{args.split}: {len(images)} images, {len(cases)} cases, dilation {config.dilation} px; in-mask PSNR (dB)")
    print(f"{'method':42s} {'all':>6s} " + " ".join(f"{k:>8s}" for k in OUTLIER_CLASSES) + "  vs telea")
    for name, kinds in result["psnr_in"].items():
        print(f"{name:42s} {kinds['all']:6.2f} " + " ".join(f"{kinds[k]:8.2f}" for k in OUTLIER_CLASSES)
              + f"  {kinds['all'] - base:+6.2f}")
    if args.out is not None:
        write_json(args.out, result)
    else:
        print(json.dumps({"model_version": remover.version}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
