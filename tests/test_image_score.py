"""The fitted image score: logistic regression on (classifier logit, log map peak), fitted on validation labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermclean.detection import load_detector, save_detector
from dermclean.detection.evaluate import fit_on_validation, fit_threshold
from dermclean.detection.image_score import ImageScore, _features
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
    x = _features(p_any, peak)
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
