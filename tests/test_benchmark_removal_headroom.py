"""benchmarks/removal_headroom.py on three clean 48 px images and an untrained 16 px image-conditioned model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from dermclean.config import load_params
from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.images import save_png
from dermclean.data.manifest import write_manifest
from dermclean.diffusion.unet import DermUNet
from dermclean.methods.imagecond.model import imagecond_unet_config
from dermclean.modelio import save_model_dir
from dermclean.removal.engine import removal_config
from dermclean.removal.evaluate import evaluate_removal
from test_removal_imagecond import skin_images
from benchmark_module import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def _bench():
    return load_benchmark("removal_headroom")


def test_headroom_rows_agree_with_the_removal_evaluation(tmp_path):
    rows = []
    for i, img in enumerate(skin_images(3, size=48, seed=5)):
        save_png(tmp_path / "images" / f"s{i}.png", img)
        rows.append({"image_id": f"s{i}", "image_path": f"images/s{i}.png", "diagnosis": "nevus", "melanoma": 0,
                     **{f: 0 for f in ARTIFACT_FLAGS}, "split": "val", "source": "test"})
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    torch.manual_seed(0)
    cfg = imagecond_unet_config(sample_size=16, block_out_channels=[8, 16])
    save_model_dir(tmp_path / "imagecond", kind="unet", config=cfg, module=DermUNet(cfg), meta={})
    out = tmp_path / "headroom.json"
    assert _bench().main(["--params", str(REPO / "params.yaml"), "--profile", "tiny", "--manifest",
                          str(tmp_path / "manifest.csv"), "--imagecond", str(tmp_path / "imagecond"), "--split", "val",
                          "--taus", "12", "48", "--threads", "1", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    psnr = result["psnr_in"]
    assert set(psnr) == {"telea", "imagecond", "imagecond on painted pixels", "telea on painted pixels",
                         "telea where imagecond changes >= 12", "telea where imagecond changes >= 48"}
    # the baseline rows are the clean stage's removal evaluation on the same cases
    params = load_params(REPO / "params.yaml", profile="tiny")
    config = removal_config(params, seed=0, methods=["imagecond", "telea"])
    evaluation = evaluate_removal(tmp_path / "manifest.csv", split="val", methods=["imagecond", "telea"],
                                  guided_model=None, imagecond_model=tmp_path / "imagecond", config=config,
                                  device="cpu", seed=0)
    assert result["n_cases"] == evaluation["n_cases"]
    for method in ("telea", "imagecond"):
        assert psnr[method]["all"] == pytest.approx(evaluation["methods"][method]["all"]["all"]["psnr_in"])
    # told exactly the painted pixels, Telea keeps the clean ring of the dilated mask
    assert psnr["telea on painted pixels"]["all"] > psnr["telea"]["all"]
