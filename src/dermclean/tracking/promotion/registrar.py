"""The registry side of promotion: register trained models, move ``champion`` / ``challenger`` aliases.

For every model found by :func:`~dermclean.tracking.promotion.inputs.discover_models` it registers
a version (idempotent: the same ``model_uri`` reuses its version), gates it
(:mod:`dermclean.tracking.promotion.gates`) and records on the version:

- tags ``promotion.passed``, ``promotion.reason`` (each gate with its numbers),
  ``promotion.metrics`` (the figures gated, JSON), ``promotion.role`` and ``promotion.role_reason``;
- a description with the same reason and role.

A version that already carries a decision for the same metrics keeps it, and a role only changes
when the alias does, so rerunning with the same inputs changes nothing. A champion is replaced only
by a version that passes and ranks strictly above it. The raw classifier is the reference: its
first version becomes champion when it has none.

Last, the classifier users should deploy: the champion of the best-ranked cleaned variant whose
champion passed its gates (the raw champion when none did) is registered again, from the same
model, as ``dermclean-classifier`` and made its champion: what ``dermclean classify`` uses by default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from dermclean.config import from_dict
from dermclean.tracking.promotion.gates import (
    AliasChoice, ClassifierGates, ClassifierMetrics, Decision, DetectorGates, DetectorMetrics, Outcome,
    choose_aliases, classifier_decision, detector_decision)
from dermclean.tracking.promotion.inputs import (
    CLASSIFIER_MODEL, RAW_VARIANT, TrainedModel, classifier_metrics, detector_metrics, discover_models, read_metrics_file)
from dermclean.tracking.registry import get_alias_version, register_model_version, set_alias

MAX_TAG = 5000
DEPLOY_MODEL = "dermclean-classifier"
"""The registered model whose champion ``dermclean classify`` uses by default."""
CLASSIFIER_PREFIX = CLASSIFIER_MODEL.format(variant="")


def _metrics_json(metrics: DetectorMetrics | ClassifierMetrics | None) -> str:
    return json.dumps(asdict(metrics) if metrics is not None else None, sort_keys=True)


def _recorded_metrics(mv: ModelVersion | None, cls: type):
    if mv is None or "promotion.metrics" not in mv.tags:
        return None
    data = json.loads(mv.tags["promotion.metrics"])
    return cls(**data) if isinstance(data, dict) else None


def _raw_reference(shortcut: dict[str, Any], seed: int, seeds: list[int]) -> tuple[ClassifierMetrics | None, str]:
    same = classifier_metrics(shortcut, RAW_VARIANT, seed)
    if same is not None:
        return same, f"raw seed{seed}"
    others = [m for s in seeds if (m := classifier_metrics(shortcut, RAW_VARIANT, s)) is not None]
    if not others:
        return None, "raw"

    def mean(name: str) -> float | None:
        values = [getattr(m, name) for m in others if getattr(m, name) is not None]
        return sum(values) / len(values) if values else None

    return ClassifierMetrics(id_auroc=mean("id_auroc"), trap_auroc=mean("trap_auroc"),
                             flip_rate=mean("flip_rate")), "raw (mean over seeds)"


class _Promoter:
    def __init__(self, *, gates: Mapping[str, Any] | None, metrics_dir: Path) -> None:
        section = gates or {}
        self.detector_gates = from_dict(DetectorGates, section.get("detector"), where="params promote.detector")
        self.classifier_gates = from_dict(ClassifierGates, section.get("classifier"), where="params promote.classifier")
        self.metrics_dir = metrics_dir
        self.detection = read_metrics_file(metrics_dir / "detection_eval.json")
        self.shortcut = read_metrics_file(metrics_dir / "shortcut.json")
        self.client = MlflowClient()

    def metrics_of(self, model: TrainedModel):
        if model.variant:
            return classifier_metrics(self.shortcut, model.variant, model.seed)
        return detector_metrics(self.detection, model.kind)

    def decide(self, model: TrainedModel, metrics, champion: ModelVersion | None, seeds: list[int]) -> Decision:
        if model.variant == RAW_VARIANT:
            return Decision(passed=True,
                            note="reference model trained on raw data; cleaned variants are gated against it")
        if metrics is None:
            where = (f"variant {model.variant!r} seed{model.seed} in {self.metrics_dir / 'shortcut.json'}"
                     if model.variant else f"kind {model.kind!r} in {self.metrics_dir / 'detection_eval.json'}")
            return Decision(passed=False, note=f"no metrics found for {where}")
        if model.variant:
            raw, label = _raw_reference(self.shortcut, model.seed, seeds)
            return classifier_decision(metrics, raw, gates=self.classifier_gates, raw_label=label)
        reference = _recorded_metrics(champion, DetectorMetrics) if champion else None
        return detector_decision(metrics, reference, gates=self.detector_gates,
                                 champion_version=str(champion.version) if champion else None)

    def promote_model(self, name: str, models: list[TrainedModel]) -> dict[str, Any]:
        metrics_cls = ClassifierMetrics if models[0].variant else DetectorMetrics
        seeds = sorted({m.seed for m in models if m.seed is not None})
        champion = get_alias_version(name, "champion")
        versions: dict[str, tuple[TrainedModel, ModelVersion]] = {}
        outcomes: list[Outcome] = []
        for model in models:
            mv = register_model_version(model.model_uri, name, tags=model.tags)
            metrics = self.metrics_of(model)
            if mv.tags.get("promotion.passed") and mv.tags.get("promotion.metrics") == _metrics_json(metrics):
                passed = mv.tags["promotion.passed"] == "true"
            else:
                decision = self.decide(model, metrics, champion, seeds)
                passed = decision.passed
                mv = self._record(mv, {"promotion.passed": str(passed).lower(),
                                       "promotion.reason": decision.reason[:MAX_TAG],
                                       "promotion.metrics": _metrics_json(metrics)})
            versions[str(mv.version)] = (model, mv)
            outcomes.append(Outcome(version=str(mv.version), passed=passed, rank=metrics.rank() if metrics else None))
        if models[0].variant == RAW_VARIANT:
            choice = self._raw_choice(name, champion, outcomes)
        else:
            recorded = _recorded_metrics(champion, metrics_cls)
            choice = choose_aliases(current_champion=str(champion.version) if champion else None,
                                    champion_rank=recorded.rank() if recorded else None, outcomes=outcomes)
        self._apply(name, choice, champion, versions)
        return self._report(name, versions)

    def _raw_choice(self, name: str, champion: ModelVersion | None, outcomes: list[Outcome]) -> AliasChoice:
        if champion is not None:
            current, why = str(champion.version), f"v{champion.version} stays the raw reference champion"
        else:
            every = self.client.search_model_versions(f"name = '{name}'")
            current = str(min(int(v.version) for v in every))
            why = f"v{current} is the first raw version: the reference every cleaned variant is gated against"
        rest = [o for o in outcomes if o.version != current]
        runner = max(rest, key=lambda o: (o.rank or (), -int(o.version)), default=None)
        return AliasChoice(champion=current, challenger=runner.version if runner else None, why=why)

    def _record(self, mv: ModelVersion, tags: dict[str, str]) -> ModelVersion:
        for key, value in tags.items():
            if mv.tags.get(key) != value:
                self.client.set_model_version_tag(mv.name, mv.version, key, value)
        fresh = self.client.get_model_version(mv.name, mv.version)
        tags = fresh.tags
        description = (f"Promotion: {tags.get('promotion.reason', '')}\n"
                       f"Role: {tags.get('promotion.role', 'undecided')} — {tags.get('promotion.role_reason', '')}")
        if fresh.description != description:
            self.client.update_model_version(mv.name, mv.version, description=description)
            fresh = self.client.get_model_version(mv.name, mv.version)
        return fresh

    def _apply(self, name: str, choice: AliasChoice, old: ModelVersion | None,
               versions: dict[str, tuple[TrainedModel, ModelVersion]]) -> None:
        if choice.champion is not None:
            set_alias(name, "champion", choice.champion)
        if choice.challenger is not None:
            set_alias(name, "challenger", choice.challenger)
        dethroned = str(old.version) if old is not None and choice.champion != str(old.version) else None
        if dethroned is not None and dethroned not in versions:
            self._record(self.client.get_model_version(name, dethroned),
                         {"promotion.role": "challenger",
                          "promotion.role_reason": f"superseded as champion: {choice.why}"})
        for version, (model, mv) in versions.items():
            role = "champion" if version == choice.champion else "challenger"
            if mv.tags.get("promotion.role") == role:
                continue
            if role == "champion":
                reason = choice.why
            elif version == dethroned:
                reason = f"superseded as champion: {choice.why}"
            elif mv.tags.get("promotion.passed") != "true":
                reason = "did not pass its gates"
            else:
                reason = f"passed its gates; champion is v{choice.champion} ({choice.why})"
            versions[version] = (model, self._record(mv, {"promotion.role": role, "promotion.role_reason": reason}))

    def _report(self, name: str, versions: dict[str, tuple[TrainedModel, ModelVersion]]) -> dict[str, Any]:
        champion, challenger = get_alias_version(name, "champion"), get_alias_version(name, "challenger")
        rows = []
        for version, (model, _) in sorted(versions.items(), key=lambda kv: int(kv[0])):
            mv = self.client.get_model_version(name, version)
            rows.append({"version": int(version), "run_id": model.run_id, "model_uri": model.model_uri,
                         "record": str(model.record), **model.tags,
                         "passed": mv.tags.get("promotion.passed") == "true",
                         "reason": mv.tags.get("promotion.reason", ""),
                         "metrics": json.loads(mv.tags.get("promotion.metrics", "null")),
                         "role": mv.tags.get("promotion.role"),
                         "role_reason": mv.tags.get("promotion.role_reason", "")})
        return {"champion": int(champion.version) if champion else None,
                "challenger": int(challenger.version) if challenger else None, "versions": rows}


def choose_deployable(names: list[str]) -> dict[str, Any] | None:
    """The classifier to deploy among the registered ``names``: the champion (a ``ModelVersion``) of the
    best-ranked cleaned variant whose champion passed its gates, else the raw champion; with why."""
    best, raw = None, None
    for name in sorted(n for n in names if n.startswith(CLASSIFIER_PREFIX)):
        variant, champion = name[len(CLASSIFIER_PREFIX):], get_alias_version(name, "champion")
        if champion is None:
            continue
        if variant == RAW_VARIANT:
            raw = {"variant": variant, "mv": champion, "why": "no cleaned variant's champion passed its gates"}
            continue
        metrics = _recorded_metrics(champion, ClassifierMetrics)
        rank = metrics.rank() if metrics is not None else None
        if champion.tags.get("promotion.passed") == "true" and rank is not None and (best is None or rank > best["rank"]):
            best = {"variant": variant, "mv": champion, "rank": rank,
                    "why": f"best-ranked cleaned variant whose champion passed its gates ({name} v{champion.version})"}
    return best or raw


def _register_deployable(choice: Mapping[str, Any]) -> dict[str, Any]:
    """Register the chosen champion again as ``dermclean-classifier`` and make it that model's champion."""
    source = choice["mv"]
    mv = register_model_version(source.source, DEPLOY_MODEL,
                                tags={"variant": choice["variant"], "source_version": str(source.version),
                                      "seed": source.tags.get("seed", ""), "deploy.reason": choice["why"]})
    set_alias(DEPLOY_MODEL, "champion", mv.version)
    return {"model": DEPLOY_MODEL, "version": int(mv.version), "variant": choice["variant"],
            "source_version": int(source.version), "why": choice["why"]}


def promote(gates: Mapping[str, Any] | None, *, models_dir: str | Path, metrics_dir: str | Path) -> dict[str, Any]:
    """Register every trained model under ``models_dir`` and set aliases; return the decisions report.

    ``gates``: params.yaml's ``promote`` section (``detector`` and ``classifier`` gate values; a missing
    one takes the default of :class:`DetectorGates` / :class:`ClassifierGates`). Needs MLflow configured
    (:func:`dermclean.tracking.configure_tracking`). The report maps each registered model name to its
    champion, challenger and one row per version of this run.
    """
    promoter = _Promoter(gates=gates, metrics_dir=Path(metrics_dir))
    by_name: dict[str, list[TrainedModel]] = {}
    for model in discover_models(models_dir):
        by_name.setdefault(model.registered_name, []).append(model)
    report = {name: promoter.promote_model(name, models) for name, models in sorted(by_name.items())}
    choice = choose_deployable(list(report))
    return {"gates": {"detector": asdict(promoter.detector_gates), "classifier": asdict(promoter.classifier_gates)},
            "registered_models": report, "deploy": _register_deployable(choice) if choice else None}
