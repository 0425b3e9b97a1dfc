"""Removal: take artifacts out inside a (dilated) mask without touching any other pixel.

- :mod:`~dermclean.removal.engine`: the fill methods of :mod:`dermclean.methods` (RePaint with the
  guided model, the image-conditioned model, Telea) at the input's resolution (paste inside the mask
  only), and :func:`load_imagecond`;
- :func:`build_cleaned_dataset`: cleaned datasets (the ``clean`` contract, with masks from the
  detector, is :mod:`dermclean.clean`);
- :mod:`~dermclean.removal.metrics` / :func:`evaluate_removal`: masked PSNR/SSIM on painted pairs.

Heavy submodules are imported on first use so ``import dermclean.removal`` stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "build_cleaned_dataset": "dermclean.removal.datasets",
    "evaluate_removal": "dermclean.removal.evaluate",
    "RemovalConfig": "dermclean.removal.engine",
    "METHODS": "dermclean.removal.engine",
    "make_remover": "dermclean.removal.engine",
    "load_imagecond": "dermclean.removal.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dermclean.removal' has no attribute {name!r}")
