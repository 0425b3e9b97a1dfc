"""Every profile of params.yaml builds the configurations the stages read, so none fails only when run."""

from pathlib import Path

import pytest
import yaml

from dermclean.classifier.augment import AUGMENTS
from dermclean.classifier.fit import classifier_config
from dermclean.classifier.train import LR_SCHEDULES
from dermclean.config import from_dict, load_params
from dermclean.detection.config import detection_config, fusion_settings, imagecond_detection_config
from dermclean.methods.imagecond.pairs import corruption_from_params
from dermclean.methods.imagecond.sample import sample_config
from dermclean.methods.segment.batches import SegmentDataConfig
from dermclean.methods.segment.fit import segment_section
from dermclean.methods.segment.model import SegmenterConfig
from dermclean.methods.segment.train import SegmentTrainConfig
from dermclean.removal.engine import removal_config
from dermclean.sweep.space import sweep_config_from_params

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(yaml.safe_load((REPO / "params.yaml").read_text())["profiles"])


def test_the_profiles_are_the_documented_four():
    assert PROFILES == ["cpu", "gpu", "quick", "tiny"]


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_builds_every_stage_configuration(profile):
    params = load_params(REPO / "params.yaml", profile=profile)
    config, pipeline = detection_config(params)
    assert pipeline in {"guided", "imagecond", "segment", "fused"}
    assert imagecond_detection_config(params).steps == sample_config(params).steps
    fusion_settings(params)
    corruption_from_params(params["imagecond"]["corruption"])
    removal_config(params)
    sweep_config_from_params(params)
    section = segment_section(params)
    from_dict(SegmenterConfig, section.get("model", {}), where="segment.model")
    from_dict(SegmentDataConfig, section.get("data", {}), where="segment.data")
    from_dict(SegmentTrainConfig, section.get("train", {}), where="segment.train")
    assert classifier_config(params).image_size >= 8
    assert params["classifier"]["augment"] in AUGMENTS
    assert params["classifier"]["lr_schedule"] in LR_SCHEDULES
    assert config.threshold_rule and config.image_score


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_real_data_profiles_share_the_methods_chosen_on_validation(profile):
    """What the cpu profile chose on validation, the gpu profile uses with its bigger models."""
    params = load_params(REPO / "params.yaml", profile=profile)
    config, pipeline = detection_config(params)
    assert (pipeline, config.threshold_rule, config.image_score) == ("fused", "upper_bound", "stacked")
    assert sample_config(params).noise_level is None  # the image-conditioned model samples from pure noise
    section = params["classifier"]
    assert (section["colour_constancy"], section["augment"], section["lr_schedule"]) == (True, "strong", "onecycle")
    assert params["segment"]["model"]["colour_constancy"] is True
