"""dermclean: find and remove shortcut artifacts from dermoscopic images with diffusion models.

The package is organised by capability:

- ``dermclean.data``: manifest schema, readers, image loading, procedural data, artifact renderers,
  splits and the Great Expectations gate.
- ``dermclean.diffusion``: the shared diffusion machinery: the UNet, schedulers, tiles and training
  (EMA, checkpoints, resume, AMP).
- ``dermclean.methods``: one package per method: ``guided`` (Wolleb et al. 2022: noise-aware
  classifier, DDIM encode to L and guided decode, RePaint fill), ``imagecond`` (Baugh et al. 2024)
  and ``classical`` (rules, Telea).
- ``dermclean.detection``: the detector bundle, thresholds fitted on validation data, image scores,
  the ``detect`` contract and evaluation; it consumes the methods.
- ``dermclean.removal``: removers at the input's resolution, cleaned datasets and removal
  evaluation; it consumes the methods. ``dermclean.clean``: the ``clean`` contract, above both.
- ``dermclean.classifier`` and ``dermclean.proof``: diagnosis classifiers and shortcut evidence.
- ``dermclean.tracking``: MLflow runs, pyfunc model-from-code packaging and registry aliases.
"""

from dermclean.env import disable_telemetry

disable_telemetry()

__version__ = "0.1.0"
