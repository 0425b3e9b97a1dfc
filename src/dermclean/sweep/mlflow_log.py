"""MLflow child runs of a sweep, logged from the Ray Tune driver.

One parent run per sweep (opened by :func:`dermclean.sweep.run.run_sweep` with
:func:`dermclean.tracking.start_run`) and one child run per trial, tagged ``mlflow.parentRunId``, with
the swept values as params (``noise_level``, ``guidance_scale``, ``guidance``, ``steps``) and the
trial's metrics (``pixel_ap``, ``image_auroc``, ``dice``, ``seconds_per_image``, ``duration_s``), so
the MLflow UI's compare view plots L and s against pixel AP.

Why the driver logs rather than the trial: the driver is the one process that always reaches the
tracking store (a local sqlite file has one writer; on a cluster the workers need no route to the
tracking server), and a child run appears only once its trial has *completed*, so a resumed sweep
never holds half-logged trials. A trial re-run after an interruption replaces its earlier child run
(matched by the ``ray_trial_id`` tag), so each trial has exactly one child run.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from dermclean.sweep.space import SWEPT_KEYS
from dermclean.sweep.trial import REPORTED_METRICS
from dermclean.values import is_finite

TRIAL_METRICS: tuple[str, ...] = (*REPORTED_METRICS, "duration_s", "effective_noise_level", "effective_steps")
"""The numbers a trial reports that become child-run metrics (when present and finite)."""


class ChildRunLogger(Callback):
    """Ray Tune callback: one MLflow child run per finished (or failed) trial.

    ``tags`` are added to every child (e.g. the lineage tags of the parent). The MLflow client is
    created lazily and dropped when pickled, because Tune stores its callbacks with the experiment.
    """

    def __init__(self, *, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 sweep_name: str, tags: dict[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self.tags = dict(tags or {})
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial(trial_id=trial.trial_id, config=trial.config, result=trial.last_result or {},
                       failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial(trial_id=trial.trial_id, config=trial.config, result=trial.last_result or {},
                       failed=True)

    def log_trial(self, *, trial_id: str, config: dict[str, Any], result: dict[str, Any], failed: bool) -> str:
        """Create the child run of ``trial_id`` (replacing an earlier one); return its run id."""
        from mlflow.entities import Metric, Param

        client = self.client
        for old in client.search_runs(
                [self.experiment_id],
                filter_string=(f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
                               f"and tags.ray_trial_id = '{trial_id}'")):
            client.delete_run(old.info.run_id)
        now_ms = int(time.time() * 1000)
        duration = result.get("duration_s")
        start_ms = now_ms - int(1000 * duration) if is_finite(duration) else now_ms
        tags = {**self.tags, "mlflow.parentRunId": self.parent_run_id, "ray_trial_id": trial_id,
                "sweep": self.sweep_name, "trial_status": "error" if failed else "ok"}
        run = client.create_run(self.experiment_id, start_time=start_ms, tags=tags,
                                run_name=trial_run_name(trial_id, config))
        params = [Param(key, str(config[key])) for key in SWEPT_KEYS if key in config]
        metrics = [Metric(key, float(result[key]), now_ms, 0) for key in TRIAL_METRICS
                   if is_finite(result.get(key))]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        client.set_terminated(run.info.run_id, status="FAILED" if failed else "FINISHED", end_time=now_ms)
        return run.info.run_id


def trial_run_name(trial_id: str, config: dict[str, Any]) -> str:
    """``trial-<id>-L400-s3-cfg-8`` : readable in the MLflow run list."""
    parts = [f"trial-{trial_id}"]
    if "noise_level" in config:
        parts.append(f"L{int(config['noise_level'])}")
    if "guidance_scale" in config:
        parts.append(f"s{float(config['guidance_scale']):.3g}")
    parts += [str(config[k]) for k in ("guidance", "steps") if k in config]
    return "-".join(parts)
