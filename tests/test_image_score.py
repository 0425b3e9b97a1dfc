"""The fitted image score: logistic regression on (classifier logit, log map peak), fitted on validation labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dermclean.data.manifest import labelled_rows, read_manifest, write_manifest
from dermclean.detection import load_detector, save_detector
from dermclean.detection.contract import run_info
from dermclean.detection.evaluate import fit_on_validation, fit_threshold
from dermclean.detection.image_score import MAP_FEATURES, ImageScore, MapModel, map_features
from dermclean.detection.metrics import image_auroc
from test_detection_contract import tiny_detector
from test_detection_evaluate import manifest  # noqa: F401  (module fixture: a tiny labelled manifest)


def _two_views(n: int = 400, seed: int = 0):
    """Labels that each feature sees only part of: the classifier misses half the artifacts, the map the rest."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    seen_by_map = rng.random(n) < 0.5
    logit = rng.normal(0, 1, n) + 2.5 * y * ~seen_by_map
    peak = np.exp(rng.normal(0, 1, n) + 2.5 * y * seen_by_map)
    return 1 / (1 + np.exp(-logit)), peak, y


def test_fit_solves_the_penalised_likelihood_and_uses_both_features():
    p_any, peak, y = _two_views()
    score = ImageScore.fit(p_any, peak, y, l2=1.0, fitted_on="synthetic")
    assert score.weights[0] > 0 and score.weights[1] > 0
    assert (score.n_images, score.n_artifact) == (len(y), int(y.sum()))
    # the optimum of the penalised log-likelihood: the gradient vanishes (bias not penalised)
    x = ImageScore._design(None, p_any, peak, None)
    p = score.apply(p_any, peak)
    grad = np.r_[x.T @ (p - y) + np.asarray(score.weights), np.sum(p - y)]
    assert np.abs(grad).max() < 1e-6
    combined = image_auroc(p, y)
    assert combined > image_auroc(p_any, y) + 0.05 and combined > image_auroc(peak, y) + 0.05
    assert ((0 < p) & (p < 1)).all()


def test_round_trip_and_refusals():
    p_any, peak, y = _two_views(seed=1)
    score = ImageScore.fit(p_any, peak, y)
    again = ImageScore.from_dict(score.to_dict())
    assert again == score and np.array_equal(again.apply(p_any, peak), score.apply(p_any, peak))
    with pytest.raises(ValueError, match="both images with ruler/ink/patches and images with none"):
        ImageScore.fit(p_any, peak, np.zeros_like(y))
    with pytest.raises(ValueError, match="NaN"):
        ImageScore.fit(np.full(len(y), np.nan), peak, y)
    with pytest.raises(ValueError, match="missing 'bias'"):
        ImageScore.from_dict({"weights": [1, 1], "n_images": 2, "n_artifact": 1})
    with pytest.raises(ValueError, match="weights has 3 entries"):
        ImageScore.from_dict({**score.to_dict(), "weights": [1, 2, 3]})


def test_fit_on_validation_gives_the_threshold_and_the_image_score(manifest, tmp_path):  # noqa: F811
    det = tiny_detector()
    det.config = det.config.replace(image_score="fitted")
    det.threshold, det.image_scorer = None, None
    assert det.image_score_kind == "classifier", "unfitted, a fitted-score detector scores as auto does"
    threshold, scorer = fit_on_validation(det, manifest, split="val")
    assert threshold == fit_threshold(det, manifest, split="val")  # the same clean validation images
    assert (scorer.n_images, scorer.n_artifact) == (6, 2) and "val images" in scorer.fitted_on
    det.threshold, det.image_scorer = threshold, scorer
    assert det.image_score_kind == "fitted"

    x = torch.rand(3, 3, 16, 16) * 2 - 1
    maps, types = det.anomaly_maps(x), det.type_scores(x)
    p_any = (1 - torch.prod(1 - types, dim=1)).double().numpy()
    expected = scorer.apply(p_any, maps.flatten(1).amax(dim=1).double().numpy())
    assert np.allclose(det.image_scores(maps, types).numpy(), expected, atol=1e-6)
    assert not np.allclose(expected, p_any)

    assert det.with_config(batch_size=1).image_scorer is scorer  # same maps: kept
    moved = det.with_config(noise_level=100)
    assert moved.image_scorer is None and moved.image_score_kind == "classifier"  # new maps: dropped

    save_detector(det, tmp_path / "bundle")
    assert (tmp_path / "bundle" / "image_score.json").is_file()
    loaded = load_detector(tmp_path / "bundle", device="cpu")
    assert loaded.image_scorer == scorer and loaded.image_score_kind == "fitted"


def test_fit_on_validation_without_fitted_score_is_the_threshold_alone(manifest):  # noqa: F811
    det = tiny_detector()
    threshold, scorer = fit_on_validation(det, manifest, split="val")
    assert scorer is None and threshold == fit_threshold(det, manifest, split="val")


def test_fitted_score_needs_a_noisy_classifier(manifest):  # noqa: F811
    det = tiny_detector(classifier=False)
    det.config = det.config.replace(image_score="fitted")
    with pytest.raises(ValueError, match="needs a noisy classifier"):
        fit_on_validation(det, manifest, split="val")


def _line_or_blob(line: bool, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A noisy map with a thin line along the border (a ruler's trace) or a compact blob of the same peak."""
    m = rng.random((size, size)) * 0.05
    if line:
        row = int(rng.integers(0, 3))
        m[row, 2:size - 2] = 1.0
    else:
        r, c = rng.integers(10, size - 14, 2)
        m[r:r + 4, c:c + 4] = 1.0
    return m


def test_map_features_read_where_and_what_shape():
    rng = np.random.default_rng(0)
    line, blob = map_features(_line_or_blob(True, rng)), map_features(_line_or_blob(False, rng))
    f = dict(zip(MAP_FEATURES, line)), dict(zip(MAP_FEATURES, blob))
    assert line.shape == (len(MAP_FEATURES),) and np.isfinite(line).all()
    assert f[0]["peak"] == pytest.approx(f[1]["peak"])               # the peak alone cannot tell them apart
    assert f[0]["elongation"] > f[1]["elongation"] + 2                # a line is long, a blob compact
    assert f[0]["border_peak"] > f[0]["centre_peak"] + 2               # the line lies on the border band
    assert f[1]["centre_peak"] > f[1]["border_peak"] + 2
    assert f[0]["regions"] == pytest.approx(np.log(2)) and f[1]["regions"] == pytest.approx(np.log(2))
    assert np.isfinite(map_features(np.zeros((16, 16)))).all()       # an empty map: no regions, still finite
    with pytest.raises(ValueError, match="2-D map"):
        map_features(np.zeros(16))


def test_map_model_learns_the_shape_deterministically_and_round_trips():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 160)
    feats = np.stack([map_features(_line_or_blob(bool(v), rng)) for v in y])
    model = MapModel.fit(feats[:120], y[:120], seeds=2, fitted_on="synthetic")
    assert image_auroc(model.probability(feats[120:]), y[120:]) > 0.95   # held-out maps
    assert (model.n_images, model.n_artifact, len(model.members)) == (120, int(y[:120].sum()), 2)
    again = MapModel.fit(feats[:120], y[:120], seeds=2, fitted_on="synthetic")
    assert np.array_equal(again.probability(feats), model.probability(feats))   # seeded: the same networks
    loaded = MapModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(loaded.probability(feats), model.probability(feats), atol=1e-12)
    with pytest.raises(ValueError, match="both images with ruler/ink/patches"):
        MapModel.fit(feats, np.ones_like(y))
    with pytest.raises(ValueError, match=r"expected \(N, 12\)"):
        MapModel.fit(feats[:, :5], y)
    with pytest.raises(ValueError, match="seeds >= 1"):
        MapModel.fit(feats, y, seeds=0)
    with pytest.raises(ValueError, match="refit it"):
        MapModel.from_dict({**model.to_dict(), "features": ["q50"]})


def test_stacked_score_trains_on_train_and_combines_on_validation(manifest, tmp_path):  # noqa: F811
    df = read_manifest(manifest)
    df.loc[df["split"] == "test", "split"] = "train"   # the fixture's test rows become a labelled train split
    stacked_manifest = manifest.parent / "manifest_stacked.csv"
    write_manifest(df, stacked_manifest)
    det = tiny_detector()
    det.config = det.config.replace(image_score="stacked")
    det.threshold, det.image_scorer = None, None
    assert det.image_score_kind == "classifier", "unfitted, a stacked-score detector scores as auto does"
    threshold, scorer = fit_on_validation(det, stacked_manifest, split="val")
    assert threshold == fit_threshold(det, stacked_manifest, split="val")
    assert scorer.kind == "stacked" and (scorer.n_images, scorer.n_artifact) == (6, 2)
    # the map model saw the 7 train rows with complete labels (t_unknown's ruler label is missing)
    assert (scorer.map_model.n_images, scorer.map_model.n_artifact) == (7, 3)
    assert "train images" in scorer.map_model.fitted_on and "val images" in scorer.fitted_on
    det.threshold, det.image_scorer = threshold, scorer
    assert det.image_score_kind == "stacked"

    x = torch.rand(3, 3, 16, 16) * 2 - 1
    maps, types = det.anomaly_maps(x), det.type_scores(x)
    p_any = (1 - torch.prod(1 - types, dim=1)).double().numpy()
    feats = np.stack([map_features(m) for m in maps.numpy()])
    expected = scorer.apply(p_any, None, feats)
    assert np.allclose(det.image_scores(maps, types).numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="needs the maps' map_features"):
        scorer.apply(p_any, maps.flatten(1).amax(dim=1).double().numpy())
    assert det.with_config(noise_level=100).image_score_kind == "classifier"  # new maps: dropped

    save_detector(det, tmp_path / "bundle")
    loaded = load_detector(tmp_path / "bundle", device="cpu")
    assert loaded.image_score_kind == "stacked"
    assert np.allclose(loaded.image_scores(maps, types).numpy(), expected, atol=1e-9)
    dets = loaded.detect([np.asarray(i) for i in (x.permute(0, 2, 3, 1).numpy() * 127.5 + 127.5).astype(np.uint8)])
    assert all(d.map_features.shape == (len(MAP_FEATURES),) for d in dets)

    info = run_info(loaded, model=str(tmp_path / "bundle"), device="cpu", seconds=1.0, n_images=3)
    assert info["image_score"] == "stacked" and info["image_score_fit"]["weights"] == list(scorer.weights)
    assert info["image_score_fit"]["map_model"]["n_images"] == 7            # provenance, not the networks
    assert "members" not in info["image_score_fit"]["map_model"]


def test_labelled_rows_keeps_complete_labels_only():
    df = pd.DataFrame({"image_id": list("abcd"), "ruler": pd.array([0, 1, None, 0], dtype="Int8"),
                       "ink": pd.array([0, 0, 0, 0], dtype="Int8"), "patches": pd.array([0, 0, 1, 1], dtype="Int8")})
    rows, has_artifact = labelled_rows(df)
    assert list(rows["image_id"]) == ["a", "b", "d"] and has_artifact.tolist() == [False, True, True]
