"""dermclean: find and remove shortcut artifacts from dermoscopic images with diffusion models.

The package is organised by capability:

- ``dermclean.data``: manifest schema, readers, image loading, procedural data, artifact renderers,
  splits and the Great Expectations gate.
- ``dermclean.diffusion``: the class-conditional UNet, the noise-aware classifier and the shared
  training machinery (EMA, checkpoints, resume, AMP).
- ``dermclean.detection``: Wolleb et al. 2022 anomaly maps (DDIM encode to L, guided decode),
  thresholds fitted on validation data, classical baselines and evaluation.
- ``dermclean.removal``: Baugh et al. 2024 image-conditioned model, RePaint-style inpainting, Telea.
- ``dermclean.classifier`` and ``dermclean.proof``: diagnosis classifiers and shortcut evidence.
- ``dermclean.tracking``: MLflow runs, pyfunc model-from-code packaging and registry aliases.
"""

from dermclean.env import disable_telemetry

disable_telemetry()

__version__ = "0.1.0"
