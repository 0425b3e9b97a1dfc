"""Promotion gates (pure, hand-worked cases) and the promote stage against a real sqlite MLflow store."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from dermclean.diffusion.unet import DermUNet, UNetConfig
from dermclean.io import write_json
from dermclean.modelio import save_model_dir
from dermclean.tracking import configure_tracking, log_model_folder, start_run
from dermclean.tracking.promotion import (ClassifierGates, ClassifierMetrics, DetectorGates, DetectorMetrics,
                                          Outcome, PromotionInputError, choose_aliases, classifier_decision,
                                          classifier_metrics, detector_decision, detector_metrics, discover_models,
                                          promote)

REPO_ROOT = Path(__file__).resolve().parents[1]
GATES = ClassifierGates(max_flip_rate=0.2, max_auroc_drop=0.02)
RAW = ClassifierMetrics(id_auroc=0.85, trap_auroc=0.60, flip_rate=0.35)


# ---- gates -----------------------------------------------------------------------------------

def test_classifier_gates_hand_worked():
    good = classifier_decision(ClassifierMetrics(id_auroc=0.84, trap_auroc=0.70, flip_rate=0.10), RAW, gates=GATES)
    assert good.passed
    assert [g.name for g in good.gates] == ["trap_auroc", "flip_rate", "id_auroc"]
    assert "trap_auroc 0.7000 >= raw 0.6000" in good.reason and "flip_rate 0.1000 <= bound 0.2" in good.reason
    assert good.gates[2].threshold == pytest.approx(0.83)

    id_drop = classifier_decision(ClassifierMetrics(id_auroc=0.829, trap_auroc=0.70, flip_rate=0.10), RAW, gates=GATES)
    assert not id_drop.passed and [g.passed for g in id_drop.gates] == [True, True, False]
    assert id_drop.reason.startswith("failed gates: id_auroc 0.8290 < raw 0.8500 - 0.02; passed: trap_auroc")

    flips = classifier_decision(ClassifierMetrics(id_auroc=0.86, trap_auroc=0.61, flip_rate=0.21), RAW, gates=GATES)
    assert not flips.passed and [g.passed for g in flips.gates] == [True, False, True]

    trap = classifier_decision(ClassifierMetrics(id_auroc=0.86, trap_auroc=0.59, flip_rate=0.0), RAW, gates=GATES)
    assert [g.passed for g in trap.gates] == [False, True, True]

    boundary = classifier_decision(ClassifierMetrics(id_auroc=0.83, trap_auroc=0.60, flip_rate=0.2), RAW, gates=GATES)
    assert boundary.passed  # "not below" and "within" include equality

    missing = classifier_decision(ClassifierMetrics(id_auroc=0.9, trap_auroc=0.9, flip_rate=None), None, gates=GATES)
    assert not missing.passed and all(not g.passed for g in missing.gates) and "missing" in missing.reason


def test_excess_flip_gate_replaces_the_absolute_one():
    gates = ClassifierGates(max_excess_flip_rate=0.02)
    raw = ClassifierMetrics(id_auroc=0.80, trap_auroc=0.60, flip_rate=0.30)
    fragile = ClassifierMetrics(id_auroc=0.80, trap_auroc=0.70, flip_rate=0.25, excess_flip_rate=0.01)
    ok = classifier_decision(fragile, raw, gates=gates)
    assert ok.passed and "excess_flip_rate 0.0100 <= bound 0.02" in ok.reason  # 0.25 absolute: fragility
    shortcut = ClassifierMetrics(id_auroc=0.80, trap_auroc=0.70, flip_rate=0.05, excess_flip_rate=0.04)
    bad = classifier_decision(shortcut, raw, gates=gates)
    assert not bad.passed and "excess_flip_rate 0.0400 > bound 0.02" in bad.reason
    unknown = ClassifierMetrics(id_auroc=0.80, trap_auroc=0.70, flip_rate=0.05)
    assert not classifier_decision(unknown, raw, gates=gates).passed  # no natural classifier: cannot say


def test_detector_gates_hand_worked():
    champion = DetectorMetrics(pixel_ap=0.40, image_auroc=0.75)
    gates = DetectorGates()
    assert detector_decision(DetectorMetrics(pixel_ap=0.40, image_auroc=0.80), champion, gates=gates).passed
    worse_ap = detector_decision(DetectorMetrics(pixel_ap=0.39, image_auroc=0.90), champion, gates=gates,
                                 champion_version="3")
    assert not worse_ap.passed and "val pixel_ap 0.3900 < champion v3 0.4000" in worse_ap.reason
    slack = DetectorGates(max_pixel_ap_drop=0.02)
    assert detector_decision(DetectorMetrics(pixel_ap=0.39, image_auroc=0.75), champion, gates=slack).passed
    first = detector_decision(DetectorMetrics(pixel_ap=0.1, image_auroc=0.5), None, gates=gates)
    assert first.passed and "no champion yet" in first.reason
    assert not detector_decision(DetectorMetrics(pixel_ap=None, image_auroc=0.5), None, gates=gates).passed


def test_choose_aliases_never_drops_champion_without_better():
    def out(v, passed, rank):
        return Outcome(version=v, passed=passed, rank=rank)

    first = choose_aliases(current_champion=None, champion_rank=None,
                           outcomes=[out("1", True, (0.5, 0.8)), out("2", True, (0.6, 0.7)), out("3", False, (0.9, 0.9))])
    assert (first.champion, first.challenger) == ("2", "1")
    # a tie keeps the champion; a failing better-ranked version never takes it
    tie = choose_aliases(current_champion="2", champion_rank=(0.6, 0.7),
                         outcomes=[out("4", True, (0.6, 0.7)), out("5", False, (0.99, 0.99))])
    assert tie.champion == "2" and tie.challenger == "4" and "does not rank above" in tie.why
    none_pass = choose_aliases(current_champion="2", champion_rank=(0.6, 0.7), outcomes=[out("6", False, (0.1, 0.1))])
    assert none_pass.champion == "2" and none_pass.challenger == "6"
    better = choose_aliases(current_champion="2", champion_rank=(0.6, 0.7), outcomes=[out("7", True, (0.6, 0.71))])
    assert better.champion == "7" and better.challenger is None
    unknown = choose_aliases(current_champion="2", champion_rank=None, outcomes=[out("8", True, (0.9, 0.9))])
    assert unknown.champion == "2"
    # deciding again on the same numbers gives the same answer
    assert choose_aliases(current_champion="2", champion_rank=(0.6, 0.7),
                          outcomes=[out("2", True, (0.6, 0.7)), out("1", True, (0.5, 0.8))]).champion == "2"


# ---- inputs ----------------------------------------------------------------------------------

def test_metric_readers_accept_documented_layouts():
    preferred = {"guided": {"val": {"pixel_ap": 0.4, "image_auroc": {"mean": 0.7, "ci": [0.6, 0.8]}}},
                 "imagecond": {"val": {"pixel_ap": 0.5}}}
    assert detector_metrics(preferred, "guided") == DetectorMetrics(pixel_ap=0.4, image_auroc=0.7)
    assert detector_metrics(preferred, "imagecond") == DetectorMetrics(pixel_ap=0.5, image_auroc=None)
    assert detector_metrics({"val": {"pixel_ap": 0.3, "image_auroc": 0.6}}, "guided") == DetectorMetrics(
        pixel_ap=0.3, image_auroc=0.6)
    assert detector_metrics({"val": {"pixel_ap": 0.3}}, "imagecond") is None
    # the layout pipelines/evaluate_detection.py writes (test-split figures, and says so)
    evaluated = {"configured": "guided_cfg", "configured_pixel_ap": 0.2,
                 "detectors": {"guided_cfg": {"pixel_ap": 0.2, "image_auroc_any": 0.65},
                               "unguided": {"pixel_ap": 0.1}, "imagecond": {"pixel_ap": 0.3, "image_auroc_any": 0.7}}}
    assert detector_metrics(evaluated, "guided") == DetectorMetrics(pixel_ap=0.2, image_auroc=0.65, split="test")
    assert detector_metrics(evaluated, "imagecond") == DetectorMetrics(pixel_ap=0.3, image_auroc=0.7, split="test")
    on_test = detector_decision(DetectorMetrics(pixel_ap=0.3, image_auroc=0.7, split="test"),
                                DetectorMetrics(pixel_ap=0.2, image_auroc=0.65), gates=DetectorGates())
    assert on_test.passed and "test pixel_ap 0.3000 >= champion (val) 0.2000" in on_test.reason

    shortcut = {"classifiers": {"raw": {"seed0": {"id_auroc": 0.8, "trap_auroc": 0.6,
                                                  "flip_rate": {"benign_to_malignant": 0.3, "malignant_to_benign": 0.1}}}},
                "inpaint": {"seeds": {"1": {"auroc": 0.82, "auroc_trap": 0.7, "flip_rate": {"overall": 0.12}}}}}
    assert classifier_metrics(shortcut, "raw", 0) == ClassifierMetrics(id_auroc=0.8, trap_auroc=0.6, flip_rate=0.3)
    assert classifier_metrics(shortcut, "inpaint", 1) == ClassifierMetrics(id_auroc=0.82, trap_auroc=0.7, flip_rate=0.12)
    assert classifier_metrics(shortcut, "inpaint", 0) is None


def test_discover_models_and_bad_record(tmp_path):
    write_json(tmp_path / "detector" / "mlflow_run.json", {"run_id": "r1", "model_uri": "models:/m-1"})
    write_json(tmp_path / "classifiers" / "raw" / "seed2" / "mlflow_run.json", {"run_id": "r2", "model_uri": "models:/m-2"})
    found = discover_models(tmp_path)
    assert [(m.registered_name, m.tags) for m in found] == [
        ("dermclean-detector", {"kind": "guided"}), ("dermclean-classifier-raw", {"variant": "raw", "seed": "2"})]
    (tmp_path / "detector_imagecond").mkdir()
    (tmp_path / "detector_imagecond" / "mlflow_run.json").write_text('{"run_id": "r3"}')
    with pytest.raises(PromotionInputError, match="detector_imagecond/mlflow_run.json.*model_uri"):
        discover_models(tmp_path)


# ---- the promote stage against a real MLflow store -------------------------------------------

@pytest.fixture
def store(tmp_path, monkeypatch):
    saved = tracking_utils._tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    configure_tracking(tmp_path)
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(saved)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _train(store: Path, rel: str, experiment: str, seed: int) -> None:
    """Log a tiny model folder the way a training stage does and write its mlflow_run.json."""
    torch.manual_seed(seed)
    config = UNetConfig(sample_size=8, block_out_channels=[4, 8])
    model_dir = save_model_dir(store / "models" / rel / "model", kind="unet", config=config, module=DermUNet(config))
    with start_run(experiment, rel.replace("/", "-"), params={"seed": seed}, data_paths=[]) as run:
        uri = log_model_folder(model_dir)
    write_json(store / "models" / rel / "mlflow_run.json", {"run_id": run.info.run_id, "model_uri": uri})


PARAMS = {"promote": {"detector": {"max_pixel_ap_drop": 0.0, "max_image_auroc_drop": 0.0},
                      "classifier": {"max_flip_rate": 0.2, "max_auroc_drop": 0.02, "max_trap_auroc_drop": 0.0}}}


def _versions(name: str) -> dict[str, tuple]:
    return {mv.version: (mv.last_updated_timestamp, mv.description, dict(mv.tags))
            for mv in MlflowClient().search_model_versions(f"name = '{name}'")}


def _without_record(report: dict) -> dict:
    """Decisions without the record paths (absolute from the API, relative from the stage)."""
    return {name: {**entry, "versions": [{k: v for k, v in row.items() if k != "record"} for row in entry["versions"]]}
            for name, entry in report.items()}


def test_promote_registers_gates_and_is_idempotent(store):
    _train(store, "detector", "dermclean-detector", 0)
    _train(store, "detector_imagecond", "dermclean-detector", 1)
    for variant in ("raw", "inpaint"):
        for seed in (0, 1):
            _train(store, f"classifiers/{variant}/seed{seed}", "dermclean-classifier", seed)
    _train(store, "classifiers/telea/seed0", "dermclean-classifier", 5)  # no metrics for it
    write_json(store / "metrics" / "detection_eval.json",
               {"guided": {"val": {"pixel_ap": 0.40, "image_auroc": 0.70}},
                "imagecond": {"val": {"pixel_ap": 0.45, "image_auroc": 0.72}}})
    write_json(store / "metrics" / "shortcut.json", {"classifiers": {
        "raw": {"seed0": {"id_auroc": 0.85, "trap_auroc": 0.60, "flip_rate": 0.35},
                "seed1": {"id_auroc": 0.84, "trap_auroc": 0.58, "flip_rate": 0.30}},
        "inpaint": {"seed0": {"id_auroc": 0.84, "trap_auroc": 0.70, "flip_rate": 0.10},     # passes
                    "seed1": {"id_auroc": 0.80, "trap_auroc": 0.75, "flip_rate": 0.05}}}})  # id AUROC drop 0.04

    report = promote(PARAMS["promote"], models_dir=store / "models", metrics_dir=store / "metrics")
    models = report["registered_models"]
    detector = models["dermclean-detector"]
    rows = {r["kind"]: r for r in detector["versions"]}
    assert detector["champion"] == rows["imagecond"]["version"]  # both pass (no champion); imagecond ranks higher
    assert detector["challenger"] == rows["guided"]["version"]
    assert rows["guided"]["role"] == "challenger" and "passed its gates" in rows["guided"]["role_reason"]
    raw = models["dermclean-classifier-raw"]
    assert raw["champion"] == 1 and raw["versions"][0]["role"] == "champion"
    assert "first raw version" in raw["versions"][0]["role_reason"] and raw["versions"][1]["role"] == "challenger"
    inpaint = {r["seed"]: r for r in models["dermclean-classifier-inpaint"]["versions"]}
    assert inpaint["0"]["passed"] and not inpaint["1"]["passed"]
    assert "id_auroc 0.8000 < raw seed1 0.8400 - 0.02" in inpaint["1"]["reason"]
    assert models["dermclean-classifier-inpaint"]["champion"] == inpaint["0"]["version"]

    telea = models["dermclean-classifier-telea"]
    assert telea["champion"] is None and telea["challenger"] == 1
    assert "no metrics found for variant 'telea' seed0" in telea["versions"][0]["reason"]

    deploy = report["deploy"]  # the passing cleaned champion is what `classify` uses by default
    assert (deploy["variant"], deploy["source_version"]) == ("inpaint", inpaint["0"]["version"])
    client = MlflowClient()
    deployed = client.get_model_version_by_alias("dermclean-classifier", "champion")
    assert deployed.tags["variant"] == "inpaint" and deployed.tags["seed"] == "0"
    mv = client.get_model_version_by_alias("dermclean-classifier-inpaint", "champion")
    assert mv.tags["seed"] == "0" and mv.tags["promotion.passed"] == "true" and "trap_auroc 0.7000" in mv.description
    assert client.get_model_version_by_alias("dermclean-detector", "champion").tags["kind"] == "imagecond"

    # rerun through the stage script: nothing changes, neither the decisions nor any version (timestamps included)
    before = {name: _versions(name) for name in models}
    stage = runpy.run_path(str(REPO_ROOT / "pipelines" / "promote.py"))
    params_file = store / "params.yaml"
    params_file.write_text(yaml.safe_dump({**PARAMS, "profile": "tiny", "profiles": {"tiny": {}}}))
    assert stage["main"](["--params", str(params_file), "--models", "models", "--metrics-dir", "metrics",
                          "--out", "reports/promotion.json"]) == 0
    again = json.loads((store / "reports" / "promotion.json").read_text())
    assert _without_record(again["registered_models"]) == _without_record(report["registered_models"])
    assert {name: _versions(name) for name in models} == before
    assert again["deploy"] == report["deploy"]

    # a retrained, worse guided detector does not dethrone the champion; a better inpaint model does
    _train(store, "detector", "dermclean-detector", 2)
    _train(store, "classifiers/inpaint/seed1", "dermclean-classifier", 3)
    write_json(store / "metrics" / "detection_eval.json",
               {"guided": {"val": {"pixel_ap": 0.50, "image_auroc": 0.60}},
                "imagecond": {"val": {"pixel_ap": 0.45, "image_auroc": 0.72}}})
    shortcut = json.loads((store / "metrics" / "shortcut.json").read_text())
    shortcut["classifiers"]["inpaint"]["seed1"] = {"id_auroc": 0.84, "trap_auroc": 0.80, "flip_rate": 0.05}
    write_json(store / "metrics" / "shortcut.json", shortcut)
    third = promote(PARAMS["promote"], models_dir=store / "models", metrics_dir=store / "metrics")["registered_models"]
    new_guided = [r for r in third["dermclean-detector"]["versions"] if r["kind"] == "guided"][0]
    assert new_guided["version"] == 3 and not new_guided["passed"]
    assert "val image_auroc 0.6000 < champion v2 0.7200" in new_guided["reason"]
    assert third["dermclean-detector"]["champion"] == detector["champion"]
    assert third["dermclean-classifier-inpaint"]["champion"] == 3
    old = client.get_model_version("dermclean-classifier-inpaint", str(inpaint["0"]["version"]))
    assert old.tags["promotion.role"] == "challenger" and "superseded" in old.tags["promotion.role_reason"]
    deployed = client.get_model_version_by_alias("dermclean-classifier", "champion")
    assert deployed.tags["source_version"] == "3"  # follows the new inpaint champion
