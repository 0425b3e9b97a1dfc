"""Promotion of trained models in the MLflow registry: the gates, what they read, the registry side.

- :mod:`~dermclean.tracking.promotion.gates`: the gates and the choice of aliases, pure functions over
  plain numbers (a :class:`Decision` says which gate passed or failed and why);
- :mod:`~dermclean.tracking.promotion.inputs`: the trained models' ``mlflow_run.json`` records and the
  metrics files the gates read (``detection_eval.json``, ``shortcut.json``);
- :mod:`~dermclean.tracking.promotion.registrar`: :func:`promote`, which registers each model's version,
  records its decision and moves ``champion`` / ``challenger`` (what the ``promote`` stage calls).
"""

from dermclean.tracking.promotion.gates import (
    AliasChoice, ClassifierGates, ClassifierMetrics, Decision, DetectorGates, DetectorMetrics, GateResult,
    Outcome, choose_aliases, classifier_decision, detector_decision,
)
from dermclean.tracking.promotion.inputs import (
    PromotionInputError, TrainedModel, classifier_metrics, detector_metrics, discover_models,
)
from dermclean.tracking.promotion.registrar import promote

__all__ = [
    "AliasChoice",
    "ClassifierGates",
    "ClassifierMetrics",
    "Decision",
    "DetectorGates",
    "DetectorMetrics",
    "GateResult",
    "Outcome",
    "PromotionInputError",
    "TrainedModel",
    "choose_aliases",
    "classifier_decision",
    "classifier_metrics",
    "detector_decision",
    "detector_metrics",
    "discover_models",
    "promote",
]
