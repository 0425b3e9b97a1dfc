"""evaluate_detector on a tiny manifest: painted held-out artifacts, human labels, synthetic masks, overrides."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermclean.constants import ARTIFACT_FLAGS
from dermclean.data.manifest import COLUMNS, write_manifest
from dermclean.detection.classical import ClassicalDetector
from dermclean.detection.evaluate import evaluate_detector, evaluate_detector_full, fit_threshold
from test_detection_contract import tiny_detector

ROWS = [  # (id, split, ruler, ink, patches)
    *[(f"v{i}", "val", 0, 0, 0) for i in range(4)], ("v_ink", "val", 0, 1, 0), ("v_patch", "val", 0, 0, 1),
    *[(f"t{i}", "test", 0, 0, 0) for i in range(4)], ("t_ruler", "test", 1, 0, 0), ("t_ink", "test", 0, 1, 0),
    ("t_patch", "test", 0, 0, 1), ("t_unknown", "test", None, 0, 0),
]


def _paint(image: np.ndarray, ruler: int, ink: int, patches: int) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros(image.shape[:2], np.uint8)
    if ruler:
        image[20:22, 2:46] = 25
        mask[20:22, 2:46] |= 1 << ARTIFACT_FLAGS.index("ruler")
    if ink:
        cv2.line(image, (4, 4), (40, 30), (130, 30, 170), 2)
        m = np.zeros_like(mask)
        cv2.line(m, (4, 4), (40, 30), 1, 2)
        mask[m > 0] |= 1 << ARTIFACT_FLAGS.index("ink")
    if patches:
        cv2.circle(image, (36, 36), 6, (40, 190, 70), -1)
        m = np.zeros_like(mask)
        cv2.circle(m, (36, 36), 6, 1, -1)
        mask[m > 0] |= 1 << ARTIFACT_FLAGS.index("patches")
    return image, mask


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    records = []
    for iid, split, ruler, ink, patches in ROWS:
        skin = np.clip(np.array([200, 150, 125]) + rng.normal(0, 5, (48, 48, 3)), 0, 255).astype(np.uint8)
        cv2.circle(skin, (24, 24), 9, (110, 70, 50), -1)  # a lesion
        image, mask = _paint(skin, ruler or 0, ink, patches)
        Image.fromarray(image).save(root / "images" / f"{iid}.png")
        Image.fromarray(mask).save(root / "masks" / f"{iid}.png")
        row = {c: None for c in COLUMNS}
        row.update(image_id=iid, image_path=f"images/{iid}.png", diagnosis="nevus", melanoma=0, split=split,
                   source="test", ruler=ruler, ink=ink, patches=patches, hair=0, dark_corner=0, gel_bubble=0,
                   gel_border=0)
        records.append(row)
    path = root / "manifest.csv"
    write_manifest(pd.DataFrame(records), path)
    return path


def test_classical_evaluation_on_test(manifest):
    det = ClassicalDetector()
    det.threshold = fit_threshold(det, manifest, split="val")
    assert "val clean" in det.threshold.fitted_on
    result = evaluate_detector_full(det, manifest, split="test", seed=0, n_examples=2)
    m = result.metrics
    assert (m["n_clean"], m["n_painted"], m["n_artifact_images"]) == (4, 4, 3)
    for key in ("pixel_ap", "pixel_auroc", "dice", "fp_area_clean", "pixel_ap_ruler", "pixel_ap_ink",
                "pixel_ap_patches", "pixel_ap_size_small", "image_auroc_any", "seconds_per_image"):
        assert key in m, key
    assert 0.0 <= m["pixel_ap"] <= 1.0 and 0.0 <= m["fp_area_clean"] <= 1.0
    assert m["image_auroc_any"] == pytest.approx(1.0)  # the rules see these hand-painted artifacts
    assert m["image_auroc_ink"] == pytest.approx(1.0) and m["n_images_ink"] == 1
    assert m["labelled_pixel_ap"] > 0.5  # synthetic masks beside the manifest used as ground truth
    assert m["threshold"] == det.threshold.value
    assert len(result.examples) == 2 and result.examples[0].gt_mask.shape == result.examples[0].image.shape[:2]


def test_guided_evaluation_with_overrides_refits_on_val(manifest):
    det = tiny_detector(classifier=False)
    overrides = {"noise_level": 100, "guidance_scale": 1.5, "guidance": "cfg", "steps": 2}
    m = evaluate_detector(det, manifest, split="val", seed=1, overrides=overrides)
    assert "val clean" in m["threshold_fitted_on"] and m["threshold"] != det.threshold.value
    assert m["fp_area_clean"] <= det.config.fpr_budget + 1e-9  # fitted on these very images
    assert m["seconds_per_image"] > 0 and not math.isnan(m["pixel_ap"])
    assert det.config.noise_level == 200, "the override must not change the detector passed in"


def test_split_without_rows_is_refused(manifest):
    with pytest.raises(ValueError, match="no rows with split 'train'"):
        evaluate_detector(ClassicalDetector(), manifest, split="train")
