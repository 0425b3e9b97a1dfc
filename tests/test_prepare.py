"""data.prepare, the prepare stage, data.dataset and the (never run) isic-cli download command."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dermclean.data.dataset import ManifestDataset, collate_samples, load_split
from dermclean.data.download import DownloadConfig, download_isic, isic_download_command
from dermclean.data.manifest import image_paths, read_manifest
from dermclean.data.prepare import prepare_dataset, summarize_manifest

REPO = Path(__file__).resolve().parents[1]
HEADER = "isic_id,image,diagnosis,melanoma,dark_corner,hair,gel_border,gel_bubble,ruler,ink,patches"


def _raw_folder(root: Path, n: int = 12) -> Path:
    """A folder like isic2017-train-256 with ``n`` tiny images; row i has melanoma i%3==0, ruler i%2."""
    folder = root / "raw-set"
    (folder / "images").mkdir(parents=True)
    lines = [HEADER]
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "images" / f"ISIC_{i}.png")
        ruler = "" if i == n - 1 else str(i % 2)
        lines.append(f"ISIC_{i},images/ISIC_{i}.png,nevus,{int(i % 3 == 0)},0,0,0,0,{ruler},0,0")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def _params(**data) -> dict:
    return {"seed": 0, "data": {"splits": {"val": 0.25, "test": 0.25}, **data}}


def test_folder_source_points_at_the_raw_images_without_copying(tmp_path):
    raw = _raw_folder(tmp_path)
    before = sorted(p.name for p in (raw / "images").iterdir())
    out = tmp_path / "repo" / "data" / "prepared"
    (tmp_path / "repo").mkdir()
    df = prepare_dataset(_params(source="folder", folder="../raw-set"), repo_root=tmp_path / "repo", out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == [".dermclean.json", "manifest.csv"]  # nothing copied
    assert sorted(p.name for p in (raw / "images").iterdir()) == before
    manifest = read_manifest(out / "manifest.csv")
    assert manifest["image_path"][0] == "../../../raw-set/images/ISIC_0.png"
    assert image_paths(manifest, out / "manifest.csv")[0] == (raw / "images" / "ISIC_0.png").resolve()
    assert manifest["split"].notna().all() and set(manifest["split"]) <= {"train", "val", "test"}
    assert df["image_id"].tolist() == manifest["image_id"].tolist()
    assert [p.name for p in out.parent.iterdir()] == ["prepared"]  # no temporary left behind


def test_out_dir_is_replaced_and_kept_on_failure(tmp_path):
    _raw_folder(tmp_path)
    foreign = tmp_path / "someone-elses"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="did not write"):  # a folder this tool did not write is never replaced
        prepare_dataset(_params(source="folder", folder="raw-set"), repo_root=tmp_path, out_dir=foreign)
    assert (foreign / "notes.txt").read_text() == "keep"
    out = tmp_path / "prepared"
    prepare_dataset(_params(source="folder", folder="raw-set"), repo_root=tmp_path, out_dir=out)
    (out / "stale.txt").write_text("old")
    prepare_dataset(_params(source="folder", folder="raw-set"), repo_root=tmp_path, out_dir=out)
    assert not (out / "stale.txt").exists() and (out / "manifest.csv").is_file()
    manifest_before = (out / "manifest.csv").read_text()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_dataset(_params(source="folder", folder="nowhere"), repo_root=tmp_path, out_dir=out)
    assert (out / "manifest.csv").read_text() == manifest_before  # a failure leaves the old output whole


def test_bad_source_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data.source='kaggle'; expected one of \['synthetic', 'folder', 'isic'\]"):
        prepare_dataset(_params(source="kaggle"), repo_root=tmp_path, out_dir=tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_isic_source_without_download_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.download.enabled"):
        prepare_dataset(_params(source="isic", download={"out_dir": "dl"}), repo_root=tmp_path, out_dir=tmp_path / "p")


def test_synthetic_source(tmp_path):
    pytest.importorskip("dermclean.data.synthetic")
    params = {"seed": 1, "data": {"source": "synthetic", "splits": {"val": 0.2, "test": 0.2},
                                  "synthetic": {"n_images": 12, "size": 32}}}
    out = tmp_path / "prepared"
    df = prepare_dataset(params, repo_root=tmp_path, out_dir=out)
    assert len(df) == 12 and (out / "images").is_dir() and (out / "masks").is_dir()
    assert all(not Path(p).is_absolute() for p in df["image_path"])
    assert all(p.is_file() for p in image_paths(df, out / "manifest.csv"))


def test_summary_counts(tmp_path):
    _raw_folder(tmp_path)
    df = prepare_dataset(_params(source="folder", folder="raw-set"), repo_root=tmp_path, out_dir=tmp_path / "p")
    s = summarize_manifest(df)
    assert s["n_images"] == 12 and sum(s["splits"].values()) == 12
    assert s["melanoma"] == 4  # i = 0, 3, 6, 9
    assert s["flags"]["ruler"] == {"positive": 5, "labelled": 11}  # odd i < 11
    assert s["sources"] == {"raw-set": 12}


def _stage():
    spec = importlib.util.spec_from_file_location("prepare_stage", REPO / "pipelines" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_stage_writes_manifest_and_metrics(tmp_path, capsys):
    _raw_folder(tmp_path)
    params = (REPO / "params.yaml").read_text()
    params = params.replace("  source: synthetic", "  source: folder", 1).replace("  folder: data/raw", "  folder: raw-set", 1)
    (tmp_path / "params.yaml").write_text(params)
    argv = ["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "data" / "prepared"),
            "--metrics", str(tmp_path / "metrics" / "prepare.json")]
    assert _stage().main(argv) == 0
    metrics = json.loads((tmp_path / "metrics" / "prepare.json").read_text())
    assert metrics["n_images"] == 12 and metrics["melanoma"] == 4
    (tmp_path / "raw-set" / "labels.csv").write_text(HEADER + "\nISIC_0,images/ISIC_0.png,nevus,7,0,0,0,0,0,0,0\n")
    assert _stage().main(argv) == 1
    assert "column 'melanoma' has value(s) ['7'] at line(s) 2" in capsys.readouterr().err


def test_dataset_samples_batches_and_cache(tmp_path):
    _raw_folder(tmp_path)
    out = tmp_path / "p"
    prepare_dataset(_params(source="folder", folder="raw-set"), repo_root=tmp_path, out_dir=out)
    df = read_manifest(out / "manifest.csv")
    ds = ManifestDataset(df, out / "manifest.csv", size=16)
    assert len(ds) == 12
    s = ds[1]
    assert s.image.shape == (3, 16, 16) and s.image.min() >= -1 and s.image.max() <= 1
    assert s.labels.tolist() == [1.0, 0.0, 0.0] and s.melanoma == 0 and s.image_id == "ISIC_1" and s.index == 1
    assert math.isnan(ds[11].labels[0].item())  # unlabelled ruler -> NaN
    assert ds[1].image.data_ptr() == ds[1].image.data_ptr()  # decoded once, cached
    batch = next(iter(DataLoader(ds, batch_size=5, collate_fn=collate_samples)))
    assert batch.image.shape == (5, 3, 16, 16) and batch.labels.shape == (5, 3)
    assert batch.melanoma.dtype == torch.long and batch.melanoma.tolist() == [1, 0, 0, 1, 0]
    assert batch.image_id == [f"ISIC_{i}" for i in range(5)] and batch.index.tolist() == [0, 1, 2, 3, 4]

    val = load_split(out / "manifest.csv", "val", 8)
    expected = df.index[df["split"] == "val"].tolist()
    assert [val[i].index for i in range(len(val))] == expected
    with pytest.raises(ValueError, match="expected one of"):
        load_split(out / "manifest.csv", "holdout", 8)


def test_isic_download_command_and_guards(tmp_path, monkeypatch):
    config = DownloadConfig(enabled=True, search='diagnosis_3:"Melanoma Invasive"', collections="66,70", limit=50)
    assert isic_download_command(config, tmp_path / "dl") == [
        "isic", "image", "download", "--search", 'diagnosis_3:"Melanoma Invasive"', "--collections", "66,70",
        "--limit", "50", str(tmp_path / "dl")]
    assert isic_download_command(DownloadConfig(), "out") == ["isic", "image", "download", "out"]
    with pytest.raises(RuntimeError, match="disabled"):
        download_isic(DownloadConfig(), tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `isic` executable on this PATH
    with pytest.raises(RuntimeError, match=r"pip install 'dermclean\[isic\]'"):
        download_isic(config, tmp_path)


@pytest.mark.realdata
def test_real_folder_prepares(real_data, tmp_path):
    df = prepare_dataset(_params(source="folder", folder=str(real_data)), repo_root=tmp_path, out_dir=tmp_path / "p")
    s = summarize_manifest(df)
    assert s["n_images"] == 2000 and s["melanoma"] == 374 and s["flags"]["ruler"] == {"positive": 921, "labelled": 1800}
    assert abs(s["splits"]["test"] - 500) <= 30 and abs(s["splits"]["val"] - 500) <= 30
    assert all(p.is_file() for p in image_paths(df.head(10), tmp_path / "p" / "manifest.csv"))
