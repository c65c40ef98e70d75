"""The lineage card: one self-contained HTML page (no scripts, no external resources) with a picture
of the chain model version → run → lakeFS tag/commit → split version → Feast service and views →
source tables, and the facts behind each box. MLflow's artifact viewer shows it as it is."""

from __future__ import annotations

from html import escape
from typing import Sequence

from mlv_spark.lineage.record import DataLineage

_BOX_W, _BOX_H, _GAP, _X = 620, 58, 26, 20


def _box(y: int, title: str, lines: Sequence[str], fill: str) -> str:
    text = "".join(
        f'<text x="{_X + 14}" y="{y + 38 + 15 * i}" font-size="12" fill="#333">{escape(line)}</text>'
        for i, line in enumerate(lines[:2]))
    return (f'<rect x="{_X}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="8" fill="{fill}" stroke="#555"/>'
            f'<text x="{_X + 14}" y="{y + 20}" font-size="14" font-weight="bold" fill="#111">{escape(title)}</text>{text}')


def _arrow(y: int) -> str:
    x = _X + _BOX_W // 2
    return (f'<line x1="{x}" y1="{y}" x2="{x}" y2="{y + _GAP - 4}" stroke="#555" stroke-width="2"/>'
            f'<polygon points="{x - 5},{y + _GAP - 9} {x + 5},{y + _GAP - 9} {x},{y + _GAP - 2}" fill="#555"/>')


def render_card(lineage: DataLineage, *, run_id: str, experiment: str = "", model: str | None = None,
                model_version: str | None = None, alias: str | None = None, lakefs_ui: str | None = None) -> str:
    """The card's HTML; `model`/`model_version` fill the top box once the run is promoted."""
    commit = lineage.lakefs_commit
    tag = lineage.lakefs_tag or (lineage.lakefs_ref if lineage.lakefs_ref != commit else None)
    boxes = [
        (f"model {model} version {model_version}" + (f" (@{alias})" if alias else "") if model else
         "model: not registered yet", ["registered by jobs/promote.py, which tags the exact commit below"] if not model
         else [f"lineage copied onto the model version as tags; reproduce: jobs/reproduce.py --model-name {model}"], "#e8f0fe"),
        (f"MLflow run {run_id}", [f"experiment {experiment}" if experiment else "", "params data/*, tags feast.*, inputs per split"], "#fef7e0"),
        (f"lakeFS {lineage.lakefs_repository} @ {tag or lineage.lakefs_ref}",
         [f"commit {commit}", "the data is read only at this commit"], "#e6f4ea"),
        (f"split version {lineage.split_version} (seed {lineage.split_seed})",
         [", ".join(f"{name}: {s.rows:,d} rows" for name, s in lineage.splits.items()),
          f"parameters {lineage.split_params_hash}"], "#fce8e6"),
        (f"Feast {lineage.feast_feature_service or 'feature references'} ({lineage.feast_project})",
         [f"views: {', '.join(lineage.feature_views)}", f"repo {lineage.feast_repo_path} @ {lineage.feast_repo_commit[:12]}"
          + (" (dirty)" if lineage.feast_repo_dirty else "")], "#f3e8fd"),
        ("source tables", [", ".join(t.name for t in lineage.source_tables)[:110],
                           f"labels: {', '.join(lineage.label_columns) or 'none'}"], "#eeeeee"),
    ]
    height = len(boxes) * (_BOX_H + _GAP)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_BOX_W + 2 * _X}" height="{height}" role="img" '
           f'aria-label="lineage chain">']
    for i, (title, lines, fill) in enumerate(boxes):
        y = 10 + i * (_BOX_H + _GAP)
        svg.append(_box(y, title, [line for line in lines if line], fill))
        if i < len(boxes) - 1:
            svg.append(_arrow(y + _BOX_H))
    svg.append("</svg>")
    rows = [
        ("lakeFS repository", lineage.lakefs_repository), ("lakeFS ref", lineage.lakefs_ref),
        ("lakeFS commit", commit), ("lakeFS tag", lineage.lakefs_tag or "—"),
        ("split version / seed", f"{lineage.split_version} / {lineage.split_seed}"),
        ("Feast feature service", lineage.feast_feature_service or "—"),
        ("Feast repo", f"{lineage.feast_repo_path} @ {lineage.feast_repo_commit}"),
        ("features", ", ".join(lineage.feature_refs)), ("labels", ", ".join(lineage.label_columns) or "none"),
        ("feature schema hash", lineage.feature_schema_hash),
        ("code", f"{lineage.code_commit}{' (dirty)' if lineage.code_dirty else ''}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in lineage.versions.items())),
    ]
    facts = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v))}</code></td></tr>" for k, v in rows)
    splits = "".join(f"<tr><td>{escape(name)}</td><td>{s.rows:,d}</td><td><code>{escape(s.fingerprint)}</code></td></tr>"
                     for name, s in lineage.splits.items())
    tables = "".join(
        f"<tr><td>{escape(t.name)}</td><td>{escape(t.format)}</td>"
        f"<td>{escape(str(t.iceberg_snapshot_id if t.iceberg_snapshot_id is not None else t.delta_version or '—'))}</td></tr>"
        for t in lineage.source_tables)
    link = (f'<p>Browse the data in lakeFS: <a href="{escape(lakefs_ui)}" target="_blank">{escape(lakefs_ui)}</a></p>'
            if lakefs_ui else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lineage of run {escape(run_id)}</title>
<style>body{{font-family:sans-serif;margin:16px;color:#222}}table{{border-collapse:collapse;margin:8px 0 16px}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}}th{{background:#f5f5f5}}
code{{font-size:12px;word-break:break-all}}</style></head>
<body><h2>Lineage: {escape(lineage.feast_feature_service or "training run")} — run {escape(run_id)}</h2>
{''.join(svg)}
<h3>Facts</h3><table>{facts}</table>
<h3>Splits (content fingerprints)</h3><table><tr><th>split</th><th>rows</th><th>fingerprint</th></tr>{splits}</table>
<h3>Source tables (secondary lineage: format versions at the commit)</h3>
<table><tr><th>table</th><th>format</th><th>snapshot / version</th></tr>{tables}</table>
{link}<p>Reproduce: <code>jobs/reproduce.py --model-name &lt;name&gt; --version &lt;n&gt;</code> rebuilds every split at the commit with
the Feast repo at its Git commit and compares the fingerprints.</p></body></html>
"""
