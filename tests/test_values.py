"""dermclean.values on hand-worked cases."""

from __future__ import annotations

import json
import math

import numpy as np

from dermclean.config import params_seed
from dermclean.values import finite_or_none, flat_metrics, flatten, is_finite, json_ready, plain


def test_is_finite():
    assert is_finite(1) and is_finite(0.5) and is_finite("2.5") and is_finite(np.float32(3))
    assert not any(is_finite(v) for v in (None, math.nan, math.inf, -math.inf, "x", [1], {}))


def test_plain_and_finite_or_none():
    assert type(plain(np.float32(0.5))) is float and type(plain(np.int64(3))) is int
    assert plain(np.bool_(True)) is True and plain("a") == "a"
    assert finite_or_none(math.nan) is None and finite_or_none(np.float64(math.inf)) is None
    assert finite_or_none(1.5) == 1.5 and finite_or_none("nan") == "nan" and finite_or_none(None) is None


def test_json_ready_nested():
    value = {"a": {"b": math.nan, 1: np.float32(0.25)}, "c": [np.int64(2), (math.inf, "x")], "d": np.bool_(False)}
    ready = json_ready(value)
    assert ready == {"a": {"b": None, "1": 0.25}, "c": [2, [None, "x"]], "d": False}
    json.dumps(ready, allow_nan=False)


def test_flatten_and_flat_metrics():
    nested = {"a": {"b": {"c": 1}}, "d": None, "e": [1, 2]}
    assert flatten(nested) == {"a.b.c": 1, "d": None, "e": [1, 2]}
    assert flatten({"x": {"y": 2}}, prefix="p.") == {"p.x.y": 2}
    results = {"m": {"ap": 0.5, "n": 3, "nan": math.nan, "name": "telea", "ok": True}, "inf": math.inf}
    assert flat_metrics(results, prefix="eval.") == {"eval.m.ap": 0.5, "eval.m.n": 3.0, "eval.m.ok": 1.0}


def test_params_seed():
    assert params_seed({"seed": 3}) == 3 and params_seed({"seed": "4"}) == 4 and params_seed({}) == 0
