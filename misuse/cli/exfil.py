"""``misuse exfil check``: bursts to new destinations, slow drips and DNS tunnels."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from misuse.cli.badinput import dead_letter_report, dead_letters, print_dead_letters, read_events
from misuse.cli.common import DEFAULT_PROJECT, JsonOpt, ProjectOpt, console, emit_json, handled, open_store
from misuse.cli.integrity import FilesArg, FormatOpt, MappingOpt, StoreOpt, TrainOpt, normal_only
from misuse.exfil import ExfilMonitor, to_alerts

exfil_app = typer.Typer(help="Exfiltration: outbound bursts, slow drips and DNS tunnelling per device.")


@exfil_app.command("check")
def check(
    files: FilesArg,
    train: TrainOpt,
    window: Annotated[float, typer.Option("--window", help="Short window, seconds.")] = 3600.0,
    long_window: Annotated[float, typer.Option("--long-window", help="Slow-drip window, seconds.")] = 86400.0,
    fmt: FormatOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Learn each device's destinations and volumes from --train (attack-labelled rows dropped), check FILES.

    Bad records of either are counted and set aside in ``<project>/deadletter/exfil-check.jsonl``.
    """
    with handled():
        dead = dead_letters(project, "exfil-check")
        monitor = ExfilMonitor(window=window, long_window=long_window)
        monitor.fit(normal_only(read_events(train, fmt, mapping, dead)))
        alerts = to_alerts(monitor.check(read_events(files, fmt, mapping, dead)))
        if store is not None and alerts:
            with open_store(store, create=True) as st:
                st.add_alerts(alerts, dataset="exfil", model="exfil")
        if as_json:
            emit_json({"alerts": [a.to_dict() for a in alerts], **dead_letter_report(dead)})
            return
        table = Table("device", "check", "from", "score", "what")
        for a in alerts:
            table.add_row(a.entity, a.detector, f"{a.window_start:%Y-%m-%d %H:%M}", f"{a.score:.1f}", a.summary)
        console.print(table)
        console.print(f"{len(alerts)} exfiltration alert(s)")
        print_dead_letters(dead)
