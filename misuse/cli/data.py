"""``misuse ingest``, ``misuse alerts`` and ``misuse feedback``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from misuse.alerts.model import Alert
from misuse.cli.badinput import print_bad_records, print_skipped
from misuse.cli.common import (
    DEFAULT_PROJECT,
    EXIT_USAGE,
    BucketsOpt,
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    err_console,
    handled,
    open_store,
    progress,
    ticker,
)
from misuse.scale.partition import DEFAULT_BUCKETS
from misuse.store.duck import VERDICTS
from misuse.workflows import ingest_files

#: skipped files listed one per line; beyond this many, a count (``--json`` lists them all)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to read.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Name to store the events under.")] = "default",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="pcap, pcapng, zeek, zeek-json, cowrie, authlog, sea, csv, jsonl, "
            "events-jsonl (default: detected per file).",
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option("--mapping", "-m", help="Column mapping for csv/jsonl: a built-in name or a YAML file."),
    ] = None,
    append: Annotated[bool, typer.Option("--append", help="Add to the dataset instead of replacing it.")] = False,
    partitioned: Annotated[
        Path | None,
        typer.Option(
            "--partitioned", help="Write Parquet partitioned by entity to this folder (for train/detect --cluster)."
        ),
    ] = None,
    buckets: BucketsOpt = DEFAULT_BUCKETS,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Read files (pcap, Zeek, CSV/JSONL, auth logs, Cowrie, SEA) into the project store.

    With ``--partitioned DIR`` the events go to Parquet files partitioned by entity hash instead,
    ready for ``misuse train|detect --partitioned DIR --cluster ...``. Bad records are counted and
    set aside in a dead-letter file; they never stop the run. In a folder, files that are not data
    (README, Markdown, capinfos, unknown formats) are skipped and listed.
    """
    with handled():
        store = open_store(project, create=True)
        options = {"mapping": mapping} if mapping else None
        with progress(not as_json) as prog:
            kw = {"fmt": fmt, "options": options, "append": append, "tick": ticker(prog, "events")}
            if partitioned is None:
                result = ingest_files(store, paths, dataset, **kw)  # type: ignore[arg-type]
            else:
                from misuse.scale.workflows import ingest_partitioned

                result = ingest_partitioned(store, paths, partitioned, dataset, buckets=buckets, **kw)  # type: ignore[arg-type]
        where = f"dataset '{dataset}'"
        if as_json:
            extra = {} if partitioned is None else {"partitioned": str(partitioned), "buckets": buckets}
            emit_json({**result.to_dict(), **extra})
            return
        if partitioned is not None:
            where = f"{partitioned} ({buckets} entity partitions, {where})"
        console.print(f"[bold]{result.rows:,}[/] events from {len(result.files)} file(s) into {where}")
        print_skipped(result.skipped)
        print_bad_records(result.bad_records, result.dead_letter_file, result.first_bad)


def alerts(
    misuse_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this misuse type.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", "-e", help="Only this entity.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only alerts on this dataset.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (alerts, incidents or risks).")] = 50,
    explain: Annotated[bool, typer.Option("--explain", help="Show each alert's contributing features.")] = False,
    incidents: Annotated[
        bool,
        typer.Option(
            "--incidents",
            help="Group the stored alerts of every rule and detector by entity and cause (misuse type) into "
            "incidents: one line each with the alert count, time span and top contributions.",
        ),
    ] = False,
    risk: Annotated[
        bool,
        typer.Option(
            "--risk",
            help="Fused risk per entity and --window from stored rule and detector alerts, every contribution "
            "shown by rule title or detector name.",
        ),
    ] = False,
    window: Annotated[float, typer.Option("--window", help="--risk: seconds of one fusion window.")] = 3600.0,
    gap: Annotated[
        float, typer.Option("--gap", help="--incidents: alerts at most this many seconds apart join one incident.")
    ] = 3600.0,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules",
            "-r",
            help="Rule files or folders that raised the rule alerts, for their titles and confidences "
            "(default: the built-in IoT pack).",
        ),
    ] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """List stored alerts, with their explanations; or group them into incidents (--incidents), or fuse
    them into a risk per entity (--risk)."""
    with handled():
        store = open_store(project)
        if incidents or risk:
            found = store.alerts(misuse_type=misuse_type, entity=entity, dataset=dataset)
            _fused_views(found, incidents, risk, window, gap, rules, limit, as_json)
            return
        df = store.alerts(misuse_type=misuse_type, entity=entity, dataset=dataset, limit=limit)
        if as_json:
            emit_json(df.to_dict("records"))
            return
        if df.empty:
            console.print("no alerts")
            return
        table = Table(title=f"{len(df)} alert(s)")
        for col in ("alert_id", "window_start", "entity", "misuse_type", "severity", "score", "summary"):
            table.add_column(col, overflow="fold")
        for r in df.itertuples():
            table.add_row(
                r.alert_id,
                str(r.window_start)[:19],
                r.entity,
                r.misuse_type,
                r.severity,
                f"{r.score:.3f}",
                r.summary,
            )
        console.print(table)
        if explain:
            for r in df.itertuples():
                console.print(f"[bold]{r.alert_id}[/] {r.entity} ({r.misuse_type}):")
                for c in r.contributions:
                    basis = f"   ({c['baseline']})" if c.get("baseline") else ""
                    console.print(
                        f"   {c['feature']:<22} typical {_value(c.get('typical')):>12}   "
                        f"actual {_value(c.get('actual')):>12}{basis}",
                        highlight=False,
                        markup=False,
                    )


def _fused_views(
    df: pd.DataFrame,
    incidents: bool,
    risk: bool,
    window: float,
    gap: float,
    rule_paths: list[Path] | None,
    limit: int,
    as_json: bool,
) -> None:
    """``misuse alerts --incidents/--risk``: the stored alerts through group_incidents and fuse."""
    from misuse.rules import builtin_pack
    from misuse.rules.fusion import SEVERITY_ORDER, display_names, fuse, group_incidents
    from misuse.rules.model import load_rules

    loaded = [r for p in rule_paths for r in load_rules(p)] if rule_paths else builtin_pack()
    objs = [Alert.from_row(row) for row in df.to_dict("records")]
    names = display_names(objs, loaded)
    found = group_incidents(objs, gap=gap) if incidents else []
    found.sort(key=lambda i: (-SEVERITY_ORDER[i.severity], -len(i.alerts), i.start))
    risks = fuse(objs, window=window, confidences={r.id: r.confidence for r in loaded}, names=names) if risk else []
    if as_json:
        out: dict[str, object] = {}
        if incidents:
            out["incidents"] = [i.to_dict(names) for i in found[:limit]]
        if risk:
            out["risks"] = [r.to_dict() for r in risks[:limit]]
        emit_json(out)
        return
    if incidents:
        console.print(f"{len(found)} incident(s) from {len(objs)} alert(s)")
        for inc in found[:limit]:
            console.print(f"- [{inc.severity}] {inc.summary(names)}", highlight=False, markup=False, soft_wrap=True)
        _more(len(found) - limit, "incident(s)")
    if risk:
        console.print(f"{len(risks)} entity risk(s) over {window:g} s windows from {len(objs)} alert(s)")
        for r in risks[:limit]:
            console.print(f"  {r.summary(top=None)}", highlight=False, markup=False, soft_wrap=True)
        _more(len(risks) - limit, "risk(s)")


def _more(n: int, what: str) -> None:
    if n > 0:
        console.print(f"{n} more {what} (--limit)", highlight=False)


def _value(v: object) -> str:
    """A contribution's typical/actual value for the table: numbers to 4 significant digits, text as is."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return f"{v:.4g}"


def feedback(
    alert_id: Annotated[str, typer.Argument(help="The alert's id.")],
    verdict: Annotated[str, typer.Argument(help="true_positive or false_positive.")],
    note: Annotated[str, typer.Option("--note", help="Free text.")] = "",
    analyst: Annotated[str, typer.Option("--analyst", help="Who says so.")] = "",
    project: ProjectOpt = DEFAULT_PROJECT,
) -> None:
    """Record an analyst's verdict on an alert (and acknowledge it)."""
    if verdict not in VERDICTS:
        err_console.print(
            f"[bold red]error:[/] verdict {escape(repr(verdict))} is not one of {', '.join(VERDICTS)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_USAGE)
    with handled():
        store = open_store(project)
        store.add_feedback(alert_id, verdict, analyst=analyst, note=note)
        store.acknowledge(alert_id)
        console.print(f"recorded {verdict} for {alert_id}")
