"""Diagnosis classifiers (melanoma vs benign): a torchvision ResNet trained from scratch.

- :mod:`.model`: ``ClassifierConfig``, ``build_classifier`` (modelio kind ``"classifier"``);
- :mod:`.train`: ``train_classifier``, ``predict_proba``, ``LabelledImages``;
- :mod:`.metrics`: ``auroc``, ``fit_operating_threshold`` (on validation data);
- :mod:`.predict`: ``run_classify_dir`` (the ``classify`` contract), ``predict_paths``, ``load_classifier``.
"""

from dermclean.classifier.metrics import OperatingThreshold, auroc, fit_operating_threshold
from dermclean.classifier.model import KIND, ClassifierConfig, build_classifier

__all__ = ["KIND", "ClassifierConfig", "OperatingThreshold", "auroc", "build_classifier", "fit_operating_threshold"]
