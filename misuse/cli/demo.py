"""``misuse simulate`` and ``misuse demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from misuse.cli.common import JsonOpt, console, emit_json, handled, progress, ticker


def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the site's files to.")] = Path("sim"),
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same files.")] = 7,
    days: Annotated[int, typer.Option("--days", help="Days to simulate.")] = 4,
    start: Annotated[str, typer.Option("--start", help="First day (UTC date).")] = "2026-03-02",
    attack_day: Annotated[
        int | None, typer.Option("--attack-day", help="0-based day of the attacks (default: the last).")
    ] = None,
    attacks: Annotated[
        str | None,
        typer.Option("--attacks", help="Comma-separated attacks (default: all); '' for a clean site."),
    ] = None,
    scale: Annotated[float, typer.Option("--scale", help="Traffic volume multiplier.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Write a simulated IoT site (Zeek conn.log, auth.log, app events, ground truth) to a folder."""
    from misuse.simulate import simulate_site, write_site

    with handled():
        chosen = None if attacks is None else [a.strip() for a in attacks.split(",") if a.strip()]
        site = simulate_site(seed=seed, days=days, start=start, attack_day=attack_day, attacks=chosen, scale=scale)
        files = write_site(site, out)
        if as_json:
            emit_json({"files": {k: str(v) for k, v in files.items()}, "truth": site.truth.to_dict("records")})
            return
        for k, v in files.items():
            console.print(f"{k:<8} {v}")
        t = Table(title="injected incidents (ground truth)")
        for col in ("attack_id", "type", "start", "end", "description"):
            t.add_column(col, overflow="fold")
        for r in site.truth.itertuples():
            t.add_row(str(r.attack_id), str(r.type), str(r.start)[:19], str(r.end)[:19], str(r.description))
        console.print(t)


def _print_summary(d: dict[str, Any]) -> None:
    console.print(f"\n[bold]{d['title']}[/]: {d['alerts']} alert(s)")
    t = Table(title="alerts by type")
    t.add_column("misuse type")
    t.add_column("alerts", justify="right")
    for k, v in sorted(d["alerts_by_type"].items(), key=lambda kv: -kv[1]):
        t.add_row(k, str(v))
    console.print(t)
    m = d["metrics"]
    inc = m.get("incidents")
    if inc:
        console.print(
            f"incidents: recall {inc['recall']:.0%} ({sum(i['detected'] for i in inc['incidents'])}/"
            f"{len(inc['incidents'])}), alert precision {_pct(inc['precision'])}, "
            f"type right for {_pct(inc['type_accuracy'])} of detected"
        )
        for i in inc["incidents"]:
            mark = "[green]detected[/]" if i["detected"] else "[red]missed[/]"
            extra = f" as {i['first_alert_type']} after {i['delay_s']:.0f}s" if i["detected"] else ""
            console.print(f"  {i['attack_id']:<18} {i['type']:<14} {mark}{extra}")
    w = m.get("windows")
    if w:
        console.print(
            f"windows: {w['n']:,} scored ({w['positives']} malicious); at the training-set threshold recall "
            f"{_pct(w['recall'])}, false-positive rate {_pct(w['fpr'])}, precision {_pct(w['precision'])}; "
            f"ROC-AUC {_num(w['roc_auc'])}"
        )
    f = m.get("flows")
    if f:
        console.print(
            f"flows: {f['malicious_flows']:,} malicious / {f['benign_flows']:,} benign; recall {_pct(f['recall'])}, "
            f"false-positive rate {_pct(f['fpr'])}"
        )
    if "first_alert_delay_s" in m:
        console.print(f"first alert on the infected device {_num(m['first_alert_delay_s'])} s after infection")
    console.print(f"report: {d['report']}\nproject: {d['project']} (try: misuse alerts -p {d['project']} --explain)")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def demo(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="An IoT-23 folder: run on the real Mirai scenario 34-1 instead."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to put the project and the report.")] = Path(
        "demo-out"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation and the detector.")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Simulate -> ingest -> train -> detect -> report, and score the alerts against the ground truth."""
    from misuse.demo import run_iot23, run_synthetic

    with handled(), progress(not as_json) as prog:
        tick = ticker(prog, "events")
        if data is None:
            result = run_synthetic(out, seed=seed, tick=tick)
        else:
            result = run_iot23(data, out, seed=seed, tick=tick)
    d = result.to_dict()
    if as_json:
        emit_json(d)
    else:
        _print_summary(d)
