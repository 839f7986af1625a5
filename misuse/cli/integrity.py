"""``misuse integrity check``: telemetry tampering checks from normal readings to new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from misuse.cli.badinput import dead_letter_report, dead_letters, print_dead_letters, read_events
from misuse.cli.common import DEFAULT_PROJECT, JsonOpt, ProjectOpt, console, emit_json, handled, open_store
from misuse.events import is_malicious_label
from misuse.integrity import IntegrityMonitor, reading_scores, to_alerts

integrity_app = typer.Typer(help="Telemetry integrity: injected, replayed, frozen or impossible values.")
TrainOpt = Annotated[list[Path], typer.Option("--train", "-t", help="Normal readings to learn from (repeat).")]
FilesArg = Annotated[list[Path], typer.Argument(help="Files to check.")]
FormatOpt = Annotated[str | None, typer.Option("--format", "-f", help="Input format (default: detected).")]
MappingOpt = Annotated[str | None, typer.Option("--mapping", "-m", help="Column mapping for csv/jsonl.")]
StoreOpt = Annotated[Path | None, typer.Option("--store-alerts", help="Project folder whose store receives alerts.")]


def normal_only(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label is benign or unknown (limits are learned from normal data only)."""
    return frame[~frame["label"].map(is_malicious_label).astype(bool)]


@integrity_app.command("check")
def check(
    files: FilesArg,
    train: TrainOpt,
    fmt: FormatOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Learn per-device limits from --train (attack-labelled rows dropped), then check FILES.

    Bad records of either are counted and set aside in ``<project>/deadletter/integrity-check.jsonl``.
    """
    with handled():
        dead = dead_letters(project, "integrity-check")
        monitor = IntegrityMonitor().fit(normal_only(read_events(train, fmt, mapping, dead)))
        flags = monitor.check(read_events(files, fmt, mapping, dead))
        alerts = to_alerts(flags)
        if store is not None and alerts:
            with open_store(store, create=True) as st:
                st.add_alerts(alerts, dataset="integrity", model="integrity")
        scores = reading_scores(flags)
        if as_json:
            emit_json(
                {
                    "readings": len(scores),
                    "flagged": int(scores["flagged"].sum()) if len(scores) else 0,
                    "alerts": [a.to_dict() for a in alerts],
                    **dead_letter_report(dead),
                }
            )
            return
        table = Table("device", "check", "from", "to", "score", "what")
        for a in alerts:
            table.add_row(
                a.entity,
                a.detector,
                f"{a.window_start:%Y-%m-%d %H:%M:%S}",
                f"{a.window_end:%H:%M:%S}",
                f"{a.score:.1f}",
                a.summary,
            )
        console.print(table)
        console.print(f"{int(scores['flagged'].sum()) if len(scores) else 0:,} of {len(scores):,} readings flagged")
        print_dead_letters(dead)
