"""Removal: take artifacts out inside a (dilated) mask without touching any other pixel.

- :mod:`~dermclean.removal.imagecond`: the image-conditioned model of Baugh et al. 2024 (training
  data from painted artifacts with held-out styles, training, restoration, difference-map detector);
- :mod:`~dermclean.removal.engine`: methods at the input's resolution (paste inside the mask only);
- :func:`run_clean_dir`: the ``clean`` contract; :func:`build_cleaned_dataset`: cleaned datasets;
- :mod:`~dermclean.removal.metrics` / :func:`evaluate_removal`: masked PSNR/SSIM on painted pairs.

Heavy submodules are imported on first use so ``import dermclean.removal`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "run_clean_dir": "dermclean.removal.clean_dir",
    "build_cleaned_dataset": "dermclean.removal.datasets",
    "evaluate_removal": "dermclean.removal.evaluate",
    "RemovalConfig": "dermclean.removal.engine",
    "METHODS": "dermclean.removal.engine",
    "make_remover": "dermclean.removal.engine",
    "train_imagecond": "dermclean.removal.imagecond",
    "imagecond_restore": "dermclean.removal.imagecond",
    "imagecond_anomaly_map": "dermclean.removal.imagecond",
    "load_imagecond": "dermclean.removal.imagecond",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dermclean.removal' has no attribute {name!r}")
