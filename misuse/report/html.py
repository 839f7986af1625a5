"""A self-contained HTML report of a detection run: metrics, alerts by type, each alert explained."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from misuse.alerts.model import Alert

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2430;background:#f7f8fa}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
.tiles{display:flex;gap:1rem;flex-wrap:wrap}.tile{background:#fff;border:1px solid #dde2ea;border-radius:8px;
padding:.8rem 1.2rem;min-width:9rem}.tile b{display:block;font-size:1.4rem}
table{border-collapse:collapse;background:#fff;margin:.5rem 0}td,th{border:1px solid #dde2ea;padding:.3rem .6rem;
font-size:.85rem;text-align:left;vertical-align:top}th{background:#eef1f5}
.sev-critical{color:#a40000;font-weight:bold}.sev-high{color:#d04a00;font-weight:bold}.sev-medium{color:#b58900}
.bar{height:.55rem;border-radius:3px;display:inline-block;vertical-align:middle}
.typ{background:#7aa6d8}.act{background:#e06c5a}
details{background:#fff;border:1px solid #dde2ea;border-radius:6px;margin:.4rem 0;padding:.4rem .8rem}
summary{cursor:pointer}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return escape(str(v))


def _bars(contribs: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in contribs:
        t, a = c.get("typical"), c.get("actual")
        vals = [abs(x) for x in (t, a) if isinstance(x, int | float) and math.isfinite(x)]
        top = max(vals) if vals else 1.0
        top = top or 1.0

        def width(x: Any, top: float = top) -> float:
            return 0.0 if not isinstance(x, int | float) or not math.isfinite(x) else 160 * abs(x) / top

        rows.append(
            f"<tr><td>{escape(str(c['feature']))}</td><td>{_fmt(t)} <span class='bar typ' style='width:"
            f"{width(t):.0f}px'></span></td><td>{_fmt(a)} <span class='bar act' style='width:{width(a):.0f}px'>"
            f"</span></td><td>{escape(str(c.get('baseline', '')))}</td></tr>"
        )
    head = "<tr><th>feature</th><th>typical</th><th>actual</th><th>baseline</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = []
    for k, v in metrics.items():
        if isinstance(v, dict):
            inner = {kk: vv for kk, vv in v.items() if not isinstance(vv, list | dict)}
            v = ", ".join(f"{kk}={_fmt(vv)}" for kk, vv in inner.items())
            rows.append(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>")
        elif not isinstance(v, list):
            rows.append(f"<tr><th>{escape(k)}</th><td>{_fmt(v)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def write_report(path: Path, title: str, alerts: Sequence[Alert], metrics: dict[str, Any]) -> Path:
    """Write the report and return its path."""
    by_type = Counter(a.misuse_type for a in alerts)
    by_sev = Counter(a.severity for a in alerts)
    tiles = [("alerts", len(alerts))] + [(t, n) for t, n in by_type.most_common()]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>",
        "<div class='tiles'>" + "".join(f"<div class='tile'><b>{n}</b>{escape(t)}</div>" for t, n in tiles) + "</div>",
        "<p>By severity: " + ", ".join(f"{escape(s)} {n}" for s, n in by_sev.most_common()) + "</p>",
        "<h2>Detection quality against ground truth</h2>",
        _metrics_table(metrics),
    ]
    incidents = metrics.get("incidents", {}).get("incidents") if isinstance(metrics.get("incidents"), dict) else None
    if incidents:
        parts.append(
            "<h2>Injected incidents</h2><table><tr><th>attack</th><th>type</th><th>detected</th>"
            "<th>alerts</th><th>first alert type</th><th>delay (s)</th></tr>"
        )
        for i in incidents:
            parts.append(
                f"<tr><td>{_fmt(i['attack_id'])}</td><td>{_fmt(i['type'])}</td><td>{_fmt(i['detected'])}</td>"
                f"<td>{_fmt(i['alerts'])}</td><td>{_fmt(i['first_alert_type'])}</td><td>{_fmt(i['delay_s'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append(f"<h2>Alerts ({len(alerts)})</h2>")
    for a in sorted(alerts, key=lambda a: (-a.score, a.window_start)):
        parts.append(
            f"<details><summary><span class='sev-{a.severity}'>{a.severity}</span> {escape(a.misuse_type)} "
            f"<b>{escape(a.entity)}</b> {a.window_start:%Y-%m-%d %H:%M} score {a.score:.3f}</summary>"
            f"<p>{escape(a.summary)}</p>{_bars(a.contributions)}"
            f"<p>evidence: {escape(', '.join(a.evidence[:10]))}{' ...' if len(a.evidence) > 10 else ''}</p></details>"
        )
    parts.append(f"<h2>Raw metrics</h2><pre>{escape(json.dumps(metrics, indent=1, default=str))}</pre>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
