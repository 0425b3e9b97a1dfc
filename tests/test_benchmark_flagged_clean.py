"""benchmarks/flagged_clean.py: a segmenter's flagged clean area by type, acquisition effect and worst image."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark_module import load_benchmark
from dermclean.data.manifest import COLUMNS, write_manifest
from dermclean.methods.segment.model import SEGMENTER_KIND, Segmenter, SegmenterConfig
from dermclean.modelio import save_model_dir

SIDE = 32


def _manifest(root):
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    records = []
    # (id, split, ruler, hair, dark_corner): three clean val images, one labelled val image, one train
    for iid, split, ruler, hair, dark in [("a", "val", 0, 1, 0), ("b", "val", 0, 0, 1), ("c", "val", 0, 0, 0),
                                          ("d", "val", 1, 0, 0), ("e", "train", 0, 0, 0)]:
        image = np.clip(rng.normal(170, 5, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{iid}.png")
        row = {c: None for c in COLUMNS}
        row.update(image_id=iid, image_path=f"images/{iid}.png", diagnosis="nevus", melanoma=0, split=split,
                   source="test", ruler=ruler, ink=0, patches=0, hair=hair, dark_corner=dark, gel_bubble=0,
                   gel_border=0)
        records.append(row)
    write_manifest(pd.DataFrame(records), root / "manifest.csv")
    return root / "manifest.csv"


def _segmenter(folder, head_bias: list[float]) -> None:
    """A segmenter whose logits are ``head_bias`` at every pixel, whatever the image."""
    config = SegmenterConfig(image_size=SIDE, widths=[4, 8])
    model = Segmenter(config)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(head_bias))
    save_model_dir(folder / "model", kind=SEGMENTER_KIND, config=config, module=model)


@pytest.mark.parametrize("bias, flagged", [([-5.0, -5.0, 5.0], 1.0), ([-5.0, -5.0, -5.0], 0.0)])
def test_flagged_area_is_split_by_type_and_effect(tmp_path, bias, flagged):
    manifest = _manifest(tmp_path)
    _segmenter(tmp_path / "work", bias)
    (tmp_path / "result.json").write_text(json.dumps({"threshold": 0.5}))
    out, figure = tmp_path / "flagged.json", tmp_path / "flagged.png"
    assert load_benchmark("flagged_clean").main([
        "--manifest", str(manifest), "--work", str(tmp_path / "work"), "--result", str(tmp_path / "result.json"),
        "--split", "val", "--worst", "2", "--figure", str(figure), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    table = result["by_effect"]
    assert table["all"]["images"] == 3  # the clean val images only: not "d" (a ruler), not "e" (train)
    assert table["hair"]["images"] == 1 and table["dark_corner"]["images"] == 1 and table["none"]["images"] == 1
    assert table["all"]["any"] == pytest.approx(flagged) and table["all"]["patches"] == pytest.approx(flagged)
    assert table["all"]["ruler"] == 0.0 and table["all"]["ink"] == 0.0
    assert len(result["worst"]) == 2
    if flagged:
        assert result["worst_share"] == pytest.approx(2 / 3)
    with Image.open(figure) as png:
        assert png.size == (2 * SIDE, 2 * SIDE)  # each worst image beside its flagged pixels
        overlay = np.asarray(png.convert("RGB"))[:SIDE, SIDE:]
    assert np.all(overlay == (0, 0, 255)) == bool(flagged)  # patches drawn in blue where flagged
