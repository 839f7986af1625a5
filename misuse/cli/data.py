"""``misuse ingest``, ``misuse alerts`` and ``misuse feedback``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

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
from misuse.workflows import IngestResult, ingest_files

#: skipped files listed one per line; beyond this many, a count (``--json`` lists them all)
SKIPPED_SHOWN = 10


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
        _print_skipped(result)
        if result.bad_records:
            console.print(
                f"[yellow]{result.bad_records:,} bad record(s) set aside[/] in {result.dead_letter_file}; "
                f"first: {result.first_bad}"
            )


def _print_skipped(result: IngestResult) -> None:
    for s in result.skipped[:SKIPPED_SHOWN]:
        console.print(f"skipped {s['file']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)
    more = len(result.skipped) - SKIPPED_SHOWN
    if more > 0:
        console.print(f"skipped {more} more file(s) that are not data (--json lists them)", highlight=False)


def alerts(
    misuse_type: Annotated[str | None, typer.Option("--type", "-t", help="Only this misuse type.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", "-e", help="Only this entity.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only alerts on this dataset.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 50,
    explain: Annotated[bool, typer.Option("--explain", help="Show each alert's contributing features.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """List stored alerts, with their explanations."""
    with handled():
        store = open_store(project)
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
