"""data.readers: labels folder, Bissoto CSV, ISIC metadata; one test per bad labels file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.manifest import COLUMNS
from dermclean.data.readers import (LabelsError, merge_artifact_labels, read_bissoto_csv,
                                    read_folder, read_isic_metadata)

HEADER = "isic_id,image,diagnosis,melanoma,dark_corner,hair,gel_border,gel_bubble,ruler,ink,patches"


def _folder(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    folder = tmp_path / "mini-set"
    folder.mkdir(exist_ok=True)
    (folder / "labels.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder


GOOD = ["ISIC_0000000,images/ISIC_0000000.jpg,nevus,0,0,1,0,1,1,0,0",
        "ISIC_0000001,images/ISIC_0000001.jpg,,1,,,,,,,",
        "ISIC_0000002,images/ISIC_0000002.jpg,seborrheic_keratosis,0,1,0,0,0,0,1,1"]


def test_read_folder_builds_a_typed_manifest(tmp_path):
    folder = _folder(tmp_path, GOOD)
    df = read_folder(folder)
    assert list(df.columns) == list(COLUMNS)
    assert df["image_id"].tolist() == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    assert df["image_path"][0] == str((folder / "images/ISIC_0000000.jpg").resolve())
    assert df["melanoma"].tolist() == [0, 1, 0]
    assert df["diagnosis"].isna().tolist() == [False, True, False]
    assert df.loc[0, "ruler"] == 1 and df.loc[0, "hair"] == 1 and df.loc[0, "ink"] == 0
    assert df.loc[1, list(ARTIFACT_FLAGS)].isna().all()  # empty flags are unknown, not 0
    assert df.loc[2, "patches"] == 1 and df.loc[2, "dark_corner"] == 1
    assert set(df["source"]) == {"mini-set"} and df["split"].isna().all()


def test_read_folder_keeps_a_split_column(tmp_path):
    folder = _folder(tmp_path, [r + ",test" for r in GOOD[:1]] + [r + "," for r in GOOD[1:]], HEADER + ",split")
    df = read_folder(folder)
    assert df["split"].tolist()[0] == "test" and df["split"][1:].isna().all()


def test_missing_labels_csv_and_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty") as err:
        read_folder(tmp_path / "empty")
    assert "empty" in str(err.value) and "labels.csv" in str(err.value)
    (tmp_path / "nolabels").mkdir()
    (tmp_path / "nolabels" / "x.jpg").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="has no labels.csv"):
        read_folder(tmp_path / "nolabels")
    with pytest.raises(FileNotFoundError, match="absent"):
        read_folder(tmp_path / "absent")


def test_labels_with_no_rows(tmp_path):
    with pytest.raises(LabelsError, match="no rows"):
        read_folder(_folder(tmp_path, []))


def test_misspelled_column_gets_a_suggestion(tmp_path):
    folder = _folder(tmp_path, GOOD, HEADER.replace("melanoma", "melanoam"))
    with pytest.raises(LabelsError, match=r"'melanoma' \(did you mean 'melanoam'\?\)") as err:
        read_folder(folder)
    assert "labels.csv" in str(err.value)


def test_missing_column_is_named(tmp_path):
    header = HEADER.replace(",patches", "")
    folder = _folder(tmp_path, [r.rsplit(",", 1)[0] for r in GOOD], header)
    with pytest.raises(LabelsError, match="missing columns 'patches'"):
        read_folder(folder)


def test_duplicate_id_names_the_lines(tmp_path):
    folder = _folder(tmp_path, GOOD + [GOOD[0]])
    with pytest.raises(LabelsError, match=r"duplicate isic_id 'ISIC_0000000' \(lines 2, 5\)"):
        read_folder(folder)


@pytest.mark.parametrize("column,value,expected", [
    ("melanoma", "2", "expected 0 or 1"),
    ("melanoma", "", "expected 0 or 1"),
    ("ruler", "yes", "expected 0, 1 or empty"),
    ("diagnosis", "wart", "expected one of"),
])
def test_label_outside_its_set_names_the_line(tmp_path, column, value, expected):
    row = dict(zip(HEADER.split(","), GOOD[0].split(",")))
    row[column] = value
    bad = ",".join(row.values())
    folder = _folder(tmp_path, GOOD[1:] + [bad])
    with pytest.raises(LabelsError, match=expected) as err:
        read_folder(folder)
    assert f"column '{column}'" in str(err.value) and "line(s) 4" in str(err.value)


@pytest.mark.parametrize("bad_id", ["../escape", "sub/ISIC_1", "a\\b", "x..y"])
def test_id_with_path_separator_or_dotdot(tmp_path, bad_id):
    folder = _folder(tmp_path, GOOD[1:] + [GOOD[0].replace("ISIC_0000000,", f"{bad_id},", 1)])
    with pytest.raises(LabelsError, match="path separator or '..'") as err:
        read_folder(folder)
    assert repr(bad_id) in str(err.value) and "line(s) 4" in str(err.value)


def test_diagnosis_is_normalised(tmp_path):
    folder = _folder(tmp_path, [GOOD[0].replace("nevus", "Seborrheic Keratosis")])
    assert read_folder(folder)["diagnosis"][0] == "seborrheic_keratosis"


BISSOTO = "image;dark_corner;hair;gel_border;gel_bubble;ruler;ink;patches\n" \
          "ISIC_0000000.jpg;0;0;0;0;0;1;0\nISIC_0000002;1;1;0;0;0;0;0\n"


def test_bissoto_csv_and_merge(tmp_path):
    path = tmp_path / "bissoto.csv"
    path.write_text(BISSOTO)
    labels = read_bissoto_csv(path)
    assert labels["image_id"].tolist() == ["ISIC_0000000", "ISIC_0000002"]
    assert labels.loc[0, "ink"] == 1 and labels.loc[1, "hair"] == 1
    manifest = read_folder(_folder(tmp_path, GOOD))
    merged = merge_artifact_labels(manifest, labels)
    assert merged.loc[0, "ink"] == 1 and merged.loc[0, "ruler"] == 0  # overwritten from the CSV
    assert merged.loc[1, list(ARTIFACT_FLAGS)].isna().all()  # not covered: kept
    assert merged.loc[2, "patches"] == 0 and merged.loc[2, "dark_corner"] == 1
    assert list(merged.columns) == list(COLUMNS)


def test_bissoto_comma_separated_gets_a_hint(tmp_path):
    path = tmp_path / "b.csv"
    path.write_text(BISSOTO.replace(";", ","))
    with pytest.raises(LabelsError, match="must be ';'-separated"):
        read_bissoto_csv(path)


def test_isic_metadata(tmp_path):
    path = tmp_path / "dl" / "metadata.csv"
    path.parent.mkdir()
    pd.DataFrame({
        "isic_id": ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4", "ISIC_5"],
        "diagnosis_1": ["Malignant", "Benign", "Benign", "Benign", "Malignant"],
        "diagnosis_3": ["Melanoma Invasive", "Nevus", "Seborrheic keratosis", "", "Basal cell carcinoma"],
        "benign_malignant": ["malignant", "benign", "benign", "benign", "malignant"],
    }).to_csv(path, index=False)
    df = read_isic_metadata(path)
    assert df["melanoma"].tolist() == [1, 0, 0, 0, 0]
    assert df["diagnosis"].tolist()[:3] == ["melanoma", "nevus", "seborrheic_keratosis"]
    assert pd.isna(df["diagnosis"][3]) and df["diagnosis"][4] == "other"
    assert df["image_path"][0] == str((path.parent / "ISIC_1.jpg").resolve())
    assert df[list(ARTIFACT_FLAGS)].isna().all().all()


def test_isic_metadata_undecidable_rows_are_refused(tmp_path):
    path = tmp_path / "metadata.csv"
    pd.DataFrame({"isic_id": ["ISIC_1", "ISIC_2"], "benign_malignant": ["benign", "malignant"]}).to_csv(path, index=False)
    with pytest.raises(LabelsError, match=r"melanoma cannot be decided at line\(s\) 3"):
        read_isic_metadata(path)


@pytest.mark.realdata
def test_real_folder_counts(real_data):
    df = read_folder(real_data)
    assert len(df) == 2000 and df["image_id"].is_unique
    assert int(df["melanoma"].sum()) == 374
    assert int(df["ruler"].sum()) == 921 and int(df["ruler"].notna().sum()) == 1800
    assert int(df["ink"].sum()) == 290 and int(df["patches"].sum()) == 128
    assert int(df["diagnosis"].isna().sum()) == 201
    assert all(Path(p).is_file() for p in df["image_path"].head(20))
