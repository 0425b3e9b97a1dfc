"""The MLflow pyfunc wrapper around a dermclean model folder (loaded by ``model_code.py``).

The logged model's only artifact is the model folder (``artifacts/model_dir``: ``config.json`` +
``weights.pt`` + side JSON files). ``load_context`` reads ``config.json`` ``kind`` and rebuilds
from JSON and ``torch.load(weights_only=True)``; nothing is unpickled.

``predict(model_input)`` takes a DataFrame with a ``path`` column (or a list of paths) of images:

- ``kind == "detector"`` -> :func:`dermclean.detection.predict_paths` (Wolleb et al. 2022 anomaly
  maps and masks; one row per image);
- ``kind == "classifier"`` -> :func:`dermclean.classifier.predict.predict_paths` (``p_malignant``
  per image);
- other kinds (``unet``, ``noisy_classifier``, ``imagecond``) are components logged for lineage:
  they load (so a broken folder fails at load time), and ``predict`` refuses with a message saying
  how to use them.

``device`` and ``batch_size`` come from the model config:
``mlflow.pyfunc.load_model(uri, model_config={"device": "cuda", "batch_size": 64})``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from dermclean.classifier.predict import predict_paths as classify_paths
from dermclean.detection import predict_paths as detect_paths
from dermclean.modelio import load_model_dir, read_model_config

PREDICTING_KINDS = ("detector", "classifier")
DEFAULT_MODEL_CONFIG = {"device": "auto", "batch_size": 16}


def _predict_fn(kind: str):
    """The ``predict_paths(model_dir, paths, *, device, batch_size)`` of a predicting kind."""
    return detect_paths if kind == "detector" else classify_paths


def input_paths(model_input: Any) -> list[Path]:
    """Paths from a DataFrame with a ``path`` column, a list/Series of paths, or one path."""
    if isinstance(model_input, pd.DataFrame):
        if "path" not in model_input.columns:
            raise ValueError(f"predict input has columns {list(model_input.columns)}; expected a 'path' column")
        values = model_input["path"].tolist()
    elif isinstance(model_input, (str, Path)):
        values = [model_input]
    else:
        values = list(model_input)
    return [Path(str(v)) for v in values]


def to_frame(result: Any):
    """Return ``result`` as a DataFrame (records become rows)."""
    if isinstance(result, pd.DataFrame):
        return result
    rows = list(result)
    if rows and dataclasses.is_dataclass(rows[0]):
        rows = [dataclasses.asdict(r) for r in rows]
    return pd.DataFrame(rows)


class DermcleanModel(PythonModel):
    """pyfunc over a dermclean model folder; see the module docstring."""

    def load_context(self, context) -> None:
        self.model_dir = Path(context.artifacts["model_dir"])
        self.kind = read_model_config(self.model_dir).get("kind")
        self.settings = {**DEFAULT_MODEL_CONFIG, **(context.model_config or {})}
        self.module = None
        if self.kind in PREDICTING_KINDS:
            self.predict_paths = _predict_fn(self.kind)
        else:
            self.module, self.config, self.meta = load_model_dir(self.model_dir, device="cpu")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        # pd.DataFrame: MLflow infers no schema from it, so a plain list of paths is accepted too
        if self.kind not in PREDICTING_KINDS:
            raise TypeError(
                f"model kind {self.kind!r} is a component logged for lineage, not an image predictor; "
                f"predict works on 'detector' and 'classifier' models. Use the weights with "
                f"dermclean.modelio.load_model_dir(dermclean.tracking.resolve_model(uri)).")
        settings = {**self.settings, **(params or {})}
        device = None if settings.get("device") in (None, "", "auto") else settings["device"]
        result = self.predict_paths(self.model_dir, input_paths(model_input), device=device,
                                    batch_size=int(settings["batch_size"]))
        return to_frame(result)
