"""Sweep plumbing without Ray running: the search space from params, sweep_best.yaml, overhead, figure, child runs."""

from __future__ import annotations

import math

import optuna
import pytest
import yaml

from dermclean.config import load_params
from dermclean.sweep import (
    SweepConfig, build_search_space, measure_overhead, sweep_config_from_params, write_best_params,
)
from dermclean.sweep.mlflow_log import ChildRunLogger
from dermclean.sweep.plots import plot_ap_surface
from dermclean.sweep.space import SweepConfigError, default_point

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(space, n: int = 40, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space(study.ask()) for _ in range(n)]


def test_space_types_and_ranges():
    space = build_search_space({"noise_level": {"low": 100, "high": 400, "step": 100},
                                "guidance_scale": {"low": 0.5, "high": 20.0},
                                "guidance": ["cfg", "none"], "steps": [4, 8]})
    points = sample(space)
    for p in points:
        assert set(p) == {"guidance", "noise_level", "guidance_scale", "steps"}
        assert isinstance(p["noise_level"], int) and p["noise_level"] in (100, 200, 300, 400)
        assert isinstance(p["steps"], int) and p["steps"] in (4, 8)
        assert p["guidance"] in ("cfg", "none") and isinstance(p["guidance_scale"], float)
        if p["guidance"] == "none":
            assert p["guidance_scale"] == 0.0  # unguided: s is not sampled
        else:
            assert 0.5 <= p["guidance_scale"] <= 20.0
    assert {p["guidance"] for p in points} == {"cfg", "none"}
    assert {p["noise_level"] for p in points} == {100, 200, 300, 400}  # both ends reachable
    scales = [p["guidance_scale"] for p in points if p["guidance"] == "cfg"]
    # log-uniform: about as many draws below the geometric mean sqrt(0.5 * 20) = 3.16 as above it
    assert 0.2 < sum(s < math.sqrt(10.0) for s in scales) / len(scales) < 0.8


def test_space_contains_and_default_point():
    space = build_search_space({"noise_level": {"low": 100, "high": 700, "step": 50}, "steps": [8, 16]})
    assert space.contains(default_point({"guidance": "cfg", "noise_level": 400, "guidance_scale": 3.0, "steps": 8}))
    assert not space.contains({"guidance": "cfg", "noise_level": 420, "guidance_scale": 3.0, "steps": 8})
    assert not space.contains({"guidance": "cfg", "noise_level": 400, "guidance_scale": 3.0, "steps": 25})
    none = default_point({"guidance": "none", "noise_level": 400, "guidance_scale": 3.0, "steps": 8})
    assert none["guidance_scale"] == 0.0 and space.contains(none)


@pytest.mark.parametrize("raw, message", [
    ({"noise_level": {"low": 500, "high": 100}}, "noise_level"),
    ({"guidance_scale": {"low": 0.0, "high": 10.0}}, "log-uniformly"),
    ({"guidance": ["cfg", "magic"]}, "guidance"),
    ({"steps": []}, "steps"),
    ({"temperature": [1, 2]}, "unknown keys"),
    ({"noise_level": [100, 200]}, "expected a mapping"),
])
def test_space_refuses_bad_params(raw, message):
    with pytest.raises(SweepConfigError, match=message):
        build_search_space(raw)


def test_sweep_config_from_repo_params(repo_root):
    """Every profile's sweep section parses, and its space holds that profile's default detection values."""
    for profile in ("tiny", "cpu", "gpu"):
        params = load_params(repo_root / "params.yaml", profile=profile)
        cfg = sweep_config_from_params(params)
        assert isinstance(cfg, SweepConfig) and cfg.num_samples >= 1 and cfg.split == "val"
        expected_seed = params["sweep"]["seed"] if params["sweep"]["seed"] is not None else params["seed"]
        assert cfg.seed == expected_seed
        assert cfg.space.contains(default_point(params["detection"])), profile
    assert sweep_config_from_params(load_params(repo_root / "params.yaml", profile="gpu")).resources["gpu"] == 1
    with pytest.raises(SweepConfigError, match="unknown keys"):
        sweep_config_from_params({"seed": 0, "sweep": {"trials": 3}})


def test_best_params_override_params_yaml(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({
        "profile": "tiny", "seed": 0,
        "detection": {"guidance": "cfg", "noise_level": 400, "guidance_scale": 3.0, "steps": 8, "fpr_budget": 0.01},
        "profiles": {"tiny": {}, "cpu": {"detection": {"steps": 25}}}}))
    best = tmp_path / "sweep_best.yaml"
    write_best_params(best, {"guidance": "none", "noise_level": 250, "guidance_scale": 0.0, "steps": 16,
                             "pixel_ap": 0.7})
    assert yaml.safe_load(best.read_text()) == {"detection": {"guidance": "none", "noise_level": 250,
                                                              "guidance_scale": 0.0, "steps": 16}}
    for profile in ("tiny", "cpu"):  # the sweep's values win over params.yaml and its profile
        merged = load_params(params_file, profile=profile, overrides=[best])
        assert merged["detection"] == {"guidance": "none", "noise_level": 250, "guidance_scale": 0.0, "steps": 16,
                                       "fpr_budget": 0.01}
    assert load_params(params_file, overrides=[tmp_path / "absent.yaml"])["detection"]["noise_level"] == 400
    with pytest.raises(ValueError, match="lacks"):
        write_best_params(best, {"guidance": "cfg"})


def test_overhead_hand_worked():
    # 2 slots for 10 s = 20 slot-seconds; trials used 8 + 9 = 17; idle 3
    timing = measure_overhead(wall_s=10.0, trial_durations=[8.0, 9.0], concurrency=2)
    assert timing.trial_s_sum == 17.0 and timing.n_trials == 2
    assert timing.overhead_fraction == pytest.approx(3 / 20)
    assert timing.overhead_vs_trial_time == pytest.approx(3 / 17)
    assert measure_overhead(wall_s=5.0, trial_durations=[5.0], concurrency=1).overhead_fraction == 0.0
    assert timing.orchestration_vs_trial_time is None  # no finish times: no drain to leave out


def test_overhead_leaves_the_final_drain_out_of_orchestration():
    # 2 slots for 18 s. Slot A runs a 10 s trial over [1, 11]; slot B a 6 s one over [1, 7], then a
    # 10 s one over [7.5, 17.5]. From 11 A has nothing left to start: 6.5 slot-s of drain. Idle in
    # all 36 - 26 = 10 slot-s; the other 3.5 are start-up (2), B's gap (0.5) and the end of fit (1).
    timing = measure_overhead(wall_s=18.0, trial_durations=[10.0, 6.0, 10.0], concurrency=2,
                              finish_times=[11.0, 7.0, 17.5])
    assert timing.overhead_vs_trial_time == pytest.approx(10 / 26)
    assert timing.drain_idle_s == pytest.approx(6.5)
    assert timing.orchestration_vs_trial_time == pytest.approx(3.5 / 26)


def test_figure_is_written(tmp_path):
    from PIL import Image

    rows = [{"noise_level": 100 + 100 * i, "guidance_scale": s, "guidance": g, "steps": 8, "pixel_ap": ap}
            for i, (s, g, ap) in enumerate([(1.0, "cfg", 0.2), (10.0, "cfg", 0.5), (0.0, "none", 0.1),
                                            (3.0, "classifier", 0.4), (5.0, "cfg", math.nan)])]
    out = plot_ap_surface(rows, tmp_path / "sweep_ap.png", best=rows[1], default=rows[0])
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 500
    with pytest.raises(ValueError, match="no trial"):
        plot_ap_surface([{**rows[0], "pixel_ap": None}], tmp_path / "x.png")


def test_child_runs_one_per_trial(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("dermclean-detector", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp, run_name="sweep-test")
    logger = ChildRunLogger(tracking_uri=uri, experiment_id=exp, parent_run_id=parent.info.run_id,
                            sweep_name="sweep-test", tags={"git_commit": "abc"})
    config = {"guidance": "cfg", "noise_level": 300, "guidance_scale": 2.5, "steps": 8}
    logger.log_trial(trial_id="t1", config=config, result={"pixel_ap": 0.3, "duration_s": 2.0,
                                                            "image_auroc": math.nan}, failed=False)
    logger.log_trial(trial_id="t1", config=config, result={"pixel_ap": 0.3, "duration_s": 2.0}, failed=False)
    logger.log_trial(trial_id="t2", config={**config, "guidance": "none", "guidance_scale": 0.0}, result={},
                     failed=True)
    import pickle

    assert pickle.loads(pickle.dumps(logger)).parent_run_id == parent.info.run_id  # Tune stores callbacks
    children = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["ray_trial_id"] for r in children) == ["t1", "t2"]
    t1 = next(r for r in children if r.data.tags["ray_trial_id"] == "t1")
    assert t1.data.params == {"guidance": "cfg", "noise_level": "300", "guidance_scale": "2.5", "steps": "8"}
    assert t1.data.metrics == {"pixel_ap": 0.3, "duration_s": 2.0} and t1.info.status == "FINISHED"
    assert t1.data.tags["git_commit"] == "abc" and t1.info.run_name.startswith("trial-t1-L300")
    assert next(r for r in children if r.data.tags["ray_trial_id"] == "t2").info.status == "FAILED"
