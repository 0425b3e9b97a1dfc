"""The sweep's figure: validation pixel AP over noise level L and guidance scale s.

Two panels (matplotlib, Agg backend, nothing opens a window):

- left: every finished trial at (L, s), coloured by pixel AP, one marker per guidance kind;
  unguided trials (``none``, s = 0) sit on a separate row below the log-scaled s axis; the best
  trial is ringed, the params.yaml default is crossed;
- right: a heatmap of the best pixel AP in each (L, log s) cell, over guided trials.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermclean.io import atomic_path
from dermclean.values import is_finite

_MARKERS = {"cfg": "o", "classifier": "s", "none": "^"}


def plot_ap_surface(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], *,
                    metric: str = "pixel_ap", best: dict[str, Any] | None = None,
                    default: dict[str, Any] | None = None, title: str = "") -> Path:
    """Draw ``rows`` (trial records with ``noise_level``, ``guidance_scale``, ``guidance`` and ``metric``).

    Rows whose metric is missing or not finite (failed trials) are left out. Writes a PNG atomically.
    Over 60 lines: one matplotlib figure drawn panel by panel, read top to bottom.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if is_finite(r.get(metric))]
    if not done:
        raise ValueError(f"no trial has a finite {metric!r}; nothing to plot")
    values = np.array([float(r[metric]) for r in done])
    vmin, vmax = float(values.min()), float(values.max())
    if vmax - vmin < 1e-12:
        vmin, vmax = vmin - 0.5e-3, vmax + 0.5e-3
    guided = [r for r in done if r["guidance"] != "none"]
    scales = [float(r["guidance_scale"]) for r in guided]
    s_lo, s_hi = (min(scales), max(scales)) if scales else (1.0, 10.0)
    none_y = s_lo / 3.0  # the row for unguided (s = 0) trials, below every guided one

    def y_of(row: dict[str, Any]) -> float:
        return none_y if row["guidance"] == "none" else float(row["guidance_scale"])

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(11, 4.4))
    cmap = plt.get_cmap("viridis")
    for kind, marker in _MARKERS.items():
        sel = [r for r in done if r["guidance"] == kind]
        if sel:
            sc = ax.scatter([r["noise_level"] for r in sel], [y_of(r) for r in sel], c=[r[metric] for r in sel],
                            cmap=cmap, vmin=vmin, vmax=vmax, marker=marker, s=70, edgecolors="k",
                            linewidths=0.5, label=kind)
    if best is not None:
        ax.scatter([best["noise_level"]], [y_of(best)], s=260, facecolors="none", edgecolors="red",
                   linewidths=2, label="best")
    if default is not None:
        ax.scatter([default["noise_level"]], [y_of(default)], s=120, marker="x", c="red", label="params default")
    ax.set_yscale("log")
    ax.axhline(math.sqrt(none_y * s_lo), color="grey", lw=0.5, ls=":")
    ax.set_xlabel("noise level L (of T)")
    ax.set_ylabel("guidance scale s (log); bottom row: none, s = 0")
    ax.set_title("trials")
    ax.legend(fontsize=7, loc="best")
    fig.colorbar(sc, ax=ax, label=metric)

    if guided:
        levels = sorted({int(r["noise_level"]) for r in guided})
        n_s = max(1, min(6, len(guided) // 2))
        edges = np.geomspace(s_lo, s_hi * 1.0001, n_s + 1) if s_hi > s_lo else np.array([s_lo * 0.9, s_hi * 1.1])
        grid = np.full((len(edges) - 1, len(levels)), np.nan)
        for r in guided:
            i = min(int(np.searchsorted(edges, float(r["guidance_scale"]), side="right")) - 1, len(edges) - 2)
            j = levels.index(int(r["noise_level"]))
            grid[i, j] = np.nanmax([grid[i, j], float(r[metric])])
        im = hx.imshow(grid, origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        hx.set_xticks(range(len(levels)), [str(v) for v in levels], rotation=45, fontsize=7)
        hx.set_yticks(range(len(edges) - 1), [f"{a:.3g}-{b:.3g}" for a, b in zip(edges[:-1], edges[1:])],
                      fontsize=7)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                light = (v - vmin) / (vmax - vmin) > 0.6  # viridis is light at the top
                hx.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="k" if light else "w")
        fig.colorbar(im, ax=hx, label=f"best {metric} in cell")
    hx.set_xlabel("noise level L")
    hx.set_ylabel("guidance scale s (bins, log)")
    hx.set_title("guided trials: best per cell")
    fig.suptitle(title or f"validation {metric} over (L, s)")
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
