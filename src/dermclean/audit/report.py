"""The audit's HTML report: one self-contained file (inline CSS, SVG and base64 JPEG thumbnails), readable
offline.

Sections: the shortcut-risk table from the detector's flags (and, where the labels file carries
human artifact labels, the same table from them and how well the flags agree); prevalence bars per
class; a gallery of the highest-scoring images per type with their masks overlaid in red, so a
person can check the flags by eye.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from dermclean.audit.flags import mask_path
from dermclean.audit.risk import format_risk
from dermclean.constants import OUTLIER_CLASSES
from dermclean.io import atomic_path

THUMB = 180
OVERLAY = (220, 40, 40)
"""The mask overlay colour (RGB)."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2733;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5dbe3}
p.meta{color:#5b6776;font-size:13px;margin:0 0 12px}
table{border-collapse:collapse;font-size:14px;margin:6px 0}
th{background:#2b4c7e;color:#fff;text-align:left;padding:6px 10px}
td{padding:5px 10px;border-bottom:1px solid #e3e7ed} tr.risk td{background:#fdecea}
.bars{display:flex;gap:28px;flex-wrap:wrap} .bars figure{margin:0}
.bars figcaption{font-size:13px;font-weight:600;margin-bottom:2px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{width:%dpx;font-size:12px;color:#35414f} .card img{display:block;width:%dpx;border:1px solid #c6ced8}
.note{font-size:13px;color:#5b6776}
""" % (THUMB, THUMB)


def _table(frame: pd.DataFrame, *, highlight: pd.Series | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cls = ' class="risk"' if highlight is not None and bool(highlight.iloc[i]) else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _bars(risk: pd.DataFrame, label_column: str) -> str:
    """An SVG per type: flagged share among label 1 and label 0 images."""
    figures = []
    for _, row in risk.iterrows():
        parts, y = [], 4
        for name, value, colour in ((f"{label_column} = 1", row["prevalence_label1"], "#c0392b"),
                                    (f"{label_column} = 0", row["prevalence_label0"], "#2b4c7e")):
            width = 0.0 if np.isnan(value) else 170.0 * float(value)
            text = "–" if np.isnan(value) else f"{100 * value:.1f} %"
            parts.append(f'<text x="0" y="{y + 13}" font-size="12">{html.escape(name)}</text>'
                         f'<rect x="110" y="{y}" width="{max(width, 1):.1f}" height="18" fill="{colour}"/>'
                         f'<text x="{116 + width:.1f}" y="{y + 13}" font-size="12">{text}</text>')
            y += 24
        figures.append(f'<figure><figcaption>{html.escape(row["artifact"])}</figcaption>'
                       f'<svg width="330" height="{y + 4}" role="img">{"".join(parts)}</svg></figure>')
    return f'<div class="bars">{"".join(figures)}</div>'


def thumbnail(image_path: Path, mask_file: Path | None) -> str:
    """A base64 JPEG data URI: the image at :data:`THUMB` px wide, its mask overlaid in :data:`OVERLAY`."""
    with Image.open(image_path) as handle:
        image = handle.convert("RGB")
    scale = THUMB / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    rgb = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)
    if mask_file is not None and mask_file.is_file():
        with Image.open(mask_file) as handle:
            mask = np.asarray(handle.convert("L").resize(size, Image.NEAREST)) > 0
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.asarray(OVERLAY, dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _gallery(flags: pd.DataFrame, human: pd.DataFrame, images_dir: Path, detections: Path, n: int) -> str:
    sections = []
    for kind in OUTLIER_CLASSES:
        top = flags.sort_values(kind, ascending=False, kind="stable").head(n)
        cards = []
        for idx, row in top.iterrows():
            truth = ""
            if kind in human.columns and not pd.isna(human.loc[idx, kind]):
                truth = f" · human label {int(human.loc[idx, kind])}"
            flag = row[f"{kind}_flag"]
            flag_text = "–" if pd.isna(flag) else str(int(flag))
            uri = thumbnail(images_dir / row["image"], mask_path(detections, row["image"]))
            cards.append(f'<div class="card"><img src="{uri}" alt="{html.escape(row["image"])}">'
                         f'{html.escape(row["image"])}<br>p = {row[kind]:.3f} · flag {flag_text}{truth}</div>')
        sections.append(f"<h3>{kind}: the {len(top)} highest-scoring images</h3>"
                        f'<div class="gallery">{"".join(cards)}</div>')
    return "".join(sections)


def write_report(path: str | os.PathLike[str], *, risk: pd.DataFrame, flags: pd.DataFrame, human: pd.DataFrame,
                 images_dir: Path, detections: Path, summary: Mapping[str, Any], n_gallery: int = 8) -> None:
    """Write the report to ``path`` atomically (see module docstring)."""
    label_column = str(summary["label_column"])
    parts = [f"<h1>dermclean audit: {html.escape(str(summary['images_dir']))}</h1>",
             f'<p class="meta">{summary["n_images"]} images · {summary["n_labelled"]} with a {html.escape(label_column)} '
             f'label ({summary["n_label1"]} with 1) · detector {html.escape(str(summary["model"]))} · '
             f'{html.escape(str(summary["time"]))}</p>',
             "<h2>Shortcut risk (from the detector's flags)</h2>",
             _table(format_risk(risk), highlight=risk["risk"] == 1),
             '<p class="note">Odds of an artifact among label-1 images over its odds among label-0 images, with the '
             'exact 95 % interval; a shortcut risk where the interval excludes 1. Flags use operating points fitted '
             'on validation labels and saved in the detector bundle.</p>']
    human_risk = summary.get("human_risk")
    if human_risk:
        parts += ["<h2>The same from the human artifact labels</h2>",
                  _table(format_risk(pd.DataFrame(human_risk)), highlight=pd.DataFrame(human_risk)["risk"] == 1)]
    agreement = summary.get("agreement")
    if agreement:
        frame = pd.DataFrame([{"artifact": k, "image AUROC [95 % CI]": f"{v['auroc']:.3f} [{v['low']:.3f}, {v['high']:.3f}]",
                               "flag precision": f"{v['precision']:.3f}", "flag recall": f"{v['recall']:.3f}",
                               "images (with the artifact)": f"{v['images']} ({v['positives']})"}
                              for k, v in agreement.items()])
        parts += ["<h2>Flags against the human labels</h2>", _table(frame),
                  '<p class="note">AUROC of the detector\'s probability: images with the artifact against images '
                  'with none of ruler/ink/patches (bootstrap interval over images).</p>']
    parts += [f"<h2>Flagged share by {html.escape(label_column)}</h2>", _bars(risk, label_column),
              "<h2>Gallery</h2>", _gallery(flags, human, images_dir, detections, n_gallery)]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dermclean audit</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
