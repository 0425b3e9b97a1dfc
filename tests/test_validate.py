"""data.validate: the GX gate, one row per bad input, run once through Great Expectations."""

from __future__ import annotations

import importlib.util
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.manifest import COLUMNS, write_manifest
from dermclean.data.readers import read_folder
from dermclean.data.splits import assign_splits
from dermclean.data.validate import ValidationFailed, load_suite, validate_manifest

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "monitoring" / "expectations" / "manifest.json"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> None:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))


def _row(image_id: str, file: str, **values) -> dict:
    row = {"image_id": image_id, "image_path": f"images/{file}", "diagnosis": "nevus", "melanoma": "0",
           **{f: "0" for f in ARTIFACT_FLAGS}, "split": "train", "source": "test"}
    row.update(values)
    return row


def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = lambda h=40, w=40: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    for name in ("good0.png", "good1.png", "g2.png", "g3.png", "shared.png", "g5.png", "g6.png"):
        Image.fromarray(rgb()).save(folder / name)
    (folder / "corrupt.png").write_bytes(b"not an image" * 20)
    Image.fromarray(rgb(64, 64)).save(folder / "trunc.jpg")
    data = (folder / "trunc.jpg").read_bytes()
    (folder / "trunc.jpg").write_bytes(data[: len(data) // 2])
    Image.fromarray(rgb(16, 40)).save(folder / "small.png")
    rgba = Image.new("RGBA", (40, 40), (9, 9, 9, 255))
    rgba.putpixel((1, 1), (9, 9, 9, 0))
    rgba.save(folder / "alpha.png")
    Image.fromarray(np.full((40, 40), 999, np.uint16)).save(folder / "deep.png")
    Image.new("CMYK", (40, 40), (0, 200, 0, 0)).save(folder / "cmyk.jpg")
    Image.new("L", (40, 40), 50).save(folder / "grey.png")
    _png_header_only(folder / "huge.png", 9000, 9000)
    _png_header_only(folder / "bomb.png", 100_000, 100_000)


ROWS = [  # (what, row)
    ("good", _row("good0", "good0.png")),
    ("good", _row("good1", "good1.png", split="val", ruler=None, ink=None, diagnosis=None)),
    ("corrupt", _row("corrupt", "corrupt.png")),
    ("truncated", _row("trunc", "trunc.jpg")),
    ("missing", _row("missing", "nowhere.png")),
    ("dup", _row("twin", "g2.png")),
    ("dup", _row("twin", "g3.png")),
    ("melanoma", _row("mel2", "g5.png", melanoma="2")),
    ("flag", _row("flagyes", "g6.png", ruler="yes")),
    ("slash", _row("a/b", "good0.png")),
    ("dotdot", _row("..up", "good1.png", split="val")),
    ("small", _row("small", "small.png")),
    ("alpha", _row("alpha", "alpha.png")),
    ("deep", _row("deep", "deep.png")),
    ("split", _row("hold", "g5.png", split="holdout")),
    ("leak", _row("leakA", "shared.png", split="train")),
    ("leak", _row("leakB", "shared.png", split="test")),
    ("diagnosis", _row("wart", "g6.png", diagnosis="wart")),
    ("nomel", _row("nomel", "g2.png", melanoma=None)),
    ("good", _row("cmyk", "cmyk.jpg")),
    ("good", _row("grey", "grey.png")),
    ("huge", _row("huge", "huge.png")),
    ("bomb", _row("bomb", "bomb.png")),
]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    (root / "images").mkdir()
    _write_images(root / "images")
    df = pd.DataFrame([r for _, r in ROWS])
    result = validate_manifest(df, root / "manifest.csv", suite_path=SUITE, min_size=32, max_size=8192)
    return result


def _failures(result, what: str):
    rows = [i for i, (w, _) in enumerate(ROWS) if w == what]
    return [f for f in result.failures if f.row in rows]


def test_good_rows_pass_and_totals(gated):
    assert not gated.success
    good = [i for i, (w, _) in enumerate(ROWS) if w == "good"]
    assert [f for f in gated.failures if f.row in good] == []
    assert gated.statistics["n_rows"] == len(ROWS)
    assert gated.statistics["evaluated_expectations"] == len(load_suite(SUITE))


@pytest.mark.parametrize("what,column,text", [
    ("corrupt", "decodable", "not a readable image"),
    ("truncated", "decodable", "truncated"),
    ("missing", "file_exists", "nowhere.png not found"),
    ("melanoma", "melanoma", "melanoma is '2'; expected one of ['0', '1']"),
    ("flag", "ruler", "ruler is 'yes'"),
    ("slash", "image_id", "'a/b' contains a path separator"),
    ("dotdot", "image_id", "'..up' contains a path separator or '..'"),
    ("small", "height", "height is 16; expected between 32 and 8192"),
    ("small", "decodable", "below the size bound"),
    ("alpha", "decodable", "transparent"),
    ("deep", "decodable", "16-bit"),
    ("split", "split", "split is 'holdout'"),
    ("leak", "splits_disjoint", "more than one split"),
    ("diagnosis", "diagnosis", "diagnosis is 'wart'"),
    ("nomel", "melanoma", "melanoma is empty"),
    ("huge", "width", "width is 9000; expected between 32 and 8192"),
    ("huge", "decodable", "above the size bound"),
    ("bomb", "decodable", "decompression bomb"),
])
def test_each_bad_input_is_reported_on_its_row(gated, what, column, text):
    found = _failures(gated, what)
    assert found, f"no failure reported for {what}"
    messages = " | ".join(f.message for f in found)
    assert text in messages, messages
    assert all(f.image_id == ROWS[f.row][1]["image_id"] for f in found)
    assert column in {f.column for f in found}


def test_duplicate_ids_fail_uniqueness_on_both_rows(gated):
    found = _failures(gated, "dup")
    assert {f.row for f in found} == {5, 6}
    assert {f.expectation for f in found} == {"expect_column_values_to_be_unique"}


def test_raise_for_failures_lists_rows_then_a_count(gated):
    with pytest.raises(ValidationFailed) as err:
        gated.raise_for_failures(where="m.csv")
    text = str(err.value)
    assert text.startswith(f"m.csv: {len(gated.failures)} failed check(s)")
    assert "row 2 (line 4, id 'corrupt')" in text
    assert f"... and {len(gated.failures) - 20} more" in text
    assert err.value.failures == gated.failures


def test_clean_manifest_passes_and_missing_column_fails(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 36), (i, 2 * i, 3 * i)).save(tmp_path / "images" / f"x{i}.png")
    df = pd.DataFrame([_row(f"x{i}", f"x{i}.png", split=s) for i, s in enumerate(["train", "val", "test"])])
    ok = validate_manifest(df, tmp_path / "manifest.csv", suite_path=SUITE, min_size=32, max_size=8192)
    assert ok.success and ok.failures == [] and ok.statistics["n_failures"] == 0
    ok.raise_for_failures()
    bad = validate_manifest(df.drop(columns=["source"]), tmp_path / "manifest.csv", suite_path=SUITE,
                            min_size=32, max_size=8192)
    assert not bad.success
    assert any(f.row is None and "source" in f.message for f in bad.failures)


def test_suite_file_matches_the_manifest_schema():
    specs = load_suite(SUITE)
    (table,) = [s for s in specs if s["type"] == "expect_table_columns_to_match_set"]
    assert table["kwargs"]["column_set"] == list(COLUMNS)
    checked = {s["kwargs"].get("column") for s in specs}
    assert {"file_exists", "decodable", "width", "height", "splits_disjoint", *ARTIFACT_FLAGS} <= checked


def test_malformed_suite_is_refused(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"expectations": [{"type": "unique", "kwargs": {}}]}))
    with pytest.raises(ValueError, match="s.json: expectation 0"):
        load_suite(tmp_path / "s.json")


def _pipeline():
    spec = importlib.util.spec_from_file_location("validate_stage", REPO / "pipelines" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_writes_nothing_and_exits_1_on_a_bad_manifest(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "images" / "a.png")
    rows = [_row("a", "a.png"), _row("b", "gone.png", melanoma="1")]
    write_manifest(pd.DataFrame(rows), tmp_path / "manifest.csv")
    out = tmp_path / "reports" / "validation.json"
    argv = ["--params", str(REPO / "params.yaml"), "--manifest", str(tmp_path / "manifest.csv"),
            "--suite", str(SUITE), "--out", str(out)]
    assert _pipeline().main(argv) == 1
    assert "row 1 (line 3, id 'b')" in capsys.readouterr().err and not out.exists()
    write_manifest(pd.DataFrame(rows[:1]), tmp_path / "manifest.csv")
    assert _pipeline().main(argv) == 0
    report = json.loads(out.read_text())
    assert report["success"] and report["failures"] == [] and report["statistics"]["n_rows"] == 1


@pytest.mark.realdata
def test_real_sample_passes_the_gate(real_data, tmp_path):
    df = assign_splits(read_folder(real_data), val=0.2, test=0.2, seed=0).sample(50, random_state=0)
    result = validate_manifest(df, tmp_path / "manifest.csv", suite_path=SUITE, min_size=32, max_size=8192)
    assert result.success, result.summary()
    assert result.statistics["n_rows"] == 50
