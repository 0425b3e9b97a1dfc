"""Shortcut risk: does an artifact type occur more (or less) often with one diagnosis than the other?

Per type, the 2 x 2 table of flagged / not flagged against label 1 / label 0 over the images with a
known label. The odds ratio is the conditional maximum-likelihood estimate with its exact 95 %
interval (Fisher's noncentral hypergeometric, ``scipy.stats.contingency.odds_ratio``), which stays
defined with a zero cell. ``risk`` is 1 where the interval excludes 1: the artifact is associated
with the label, so a classifier trained on these images can learn it as a shortcut.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats.contingency import odds_ratio

from dermclean.constants import OUTLIER_CLASSES

RISK_COLUMNS: tuple[str, ...] = ("artifact", "n_label1", "n_label0", "prevalence_label1", "prevalence_label0",
                                 "odds_ratio", "ci_low", "ci_high", "risk")
"""``shortcut_risk.csv``'s columns (a contract): ``n_label*`` count images with that label, the
prevalences are the flagged shares among them."""


def risk_row(artifact: str, present: pd.Series, label: pd.Series, *, level: float = 0.95) -> dict:
    """One row of :data:`RISK_COLUMNS` from 0/1 ``present`` and 0/1 ``label`` (missing in either: left out)."""
    known = present.notna().to_numpy() & label.notna().to_numpy()
    has, y = present.to_numpy()[known].astype(int) == 1, label.to_numpy()[known].astype(int) == 1
    n1, n0 = int(y.sum()), int((~y).sum())
    a, b = int((has & y).sum()), int((has & ~y).sum())
    row = {"artifact": artifact, "n_label1": n1, "n_label0": n0,
           "prevalence_label1": a / n1 if n1 else float("nan"), "prevalence_label0": b / n0 if n0 else float("nan"),
           "odds_ratio": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "risk": 0}
    if n1 and n0 and (a + b) and (a + b) < n1 + n0:
        result = odds_ratio([[a, n1 - a], [b, n0 - b]], kind="conditional")
        interval = result.confidence_interval(confidence_level=level)
        row.update(odds_ratio=float(result.statistic), ci_low=float(interval.low), ci_high=float(interval.high),
                   risk=int(interval.low > 1 or interval.high < 1))
    return row


def shortcut_risk(flags: pd.DataFrame, label: pd.Series, *, kinds: tuple[str, ...] = OUTLIER_CLASSES) -> pd.DataFrame:
    """The risk table from ``<kind>_flag`` columns (or plain ``<kind>`` columns of human labels)."""
    rows = []
    for kind in kinds:
        column = f"{kind}_flag" if f"{kind}_flag" in flags.columns else kind
        rows.append(risk_row(kind, flags[column].astype("Float64"), label.astype("Float64")))
    table = pd.DataFrame(rows, columns=list(RISK_COLUMNS))
    return table.astype({"n_label1": int, "n_label0": int, "risk": int})


def format_risk(table: pd.DataFrame) -> pd.DataFrame:
    """The table as strings for reports: prevalences in %, odds ratio with its interval."""
    def pct(x: float) -> str:
        return "–" if np.isnan(x) else f"{100 * x:.1f} %"

    def num(x: float) -> str:
        return "–" if np.isnan(x) else ("∞" if np.isinf(x) else f"{x:.3g}")

    return pd.DataFrame({
        "artifact": table["artifact"],
        "label 1: flagged": [f"{pct(p)} of {n}" for p, n in zip(table["prevalence_label1"], table["n_label1"])],
        "label 0: flagged": [f"{pct(p)} of {n}" for p, n in zip(table["prevalence_label0"], table["n_label0"])],
        "odds ratio [95 % CI]": [f"{num(o)} [{num(lo)}, {num(hi)}]"
                                 for o, lo, hi in zip(table["odds_ratio"], table["ci_low"], table["ci_high"])],
        "shortcut risk": np.where(table["risk"] == 1, "yes", "no"),
    })
