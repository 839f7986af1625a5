"""``misuse rules list|validate|run|export``: the signature and heuristic rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from misuse.cli.badinput import print_bad_records, print_skipped
from misuse.cli.common import JsonOpt, console, emit_json, handled
from misuse.ingest.base import DeadLetter
from misuse.rules import builtin_pack
from misuse.rules.derive import Enricher
from misuse.rules.engine import RuleEngine
from misuse.rules.fusion import display_names, fuse, group_incidents
from misuse.rules.model import Rule, load_rules
from misuse.rules.sigma import export_sigma
from misuse.workflows import IngestResult, plan_readers

app = typer.Typer(help="Sigma-style rules: list, validate, run over files, export as Sigma YAML.", no_args_is_help=True)
RulesOpt = Annotated[
    list[Path] | None,
    typer.Option("--rules", "-r", help="Rule files or folders (default: the built-in IoT pack)."),
]


def _load(paths: list[Path] | None, with_pack: bool = True) -> list[Rule]:
    rules: list[Rule] = builtin_pack() if with_pack and not paths else []
    for p in paths or []:
        rules.extend(load_rules(p))
    return rules


@app.command("list")
def list_rules(rules: RulesOpt = None, as_json: JsonOpt = False) -> None:
    """List rules with their level, misuse type and ATT&CK ids."""
    with handled():
        loaded = _load(rules)
        if as_json:
            emit_json(
                [
                    {
                        "id": r.id,
                        "title": r.title,
                        "level": r.level,
                        "misuse_type": r.misuse_type,
                        "attack": r.attack_ids,
                        "kind": "correlation" if r.correlation else "detection",
                    }
                    for r in loaded
                ]
            )
            return
        table = Table("title", "level", "type", "kind", "ATT&CK")
        for r in loaded:
            table.add_row(
                r.title,
                r.level,
                r.misuse_type,
                r.correlation.type if r.correlation else "detection",
                " ".join(r.attack_ids),
            )
        console.print(table)


@app.command("validate")
def validate(paths: Annotated[list[Path], typer.Argument(help="Rule files or folders.")]) -> None:
    """Load and check rule files; errors name the file, line and field (exit code 3)."""
    with handled():
        loaded = _load(paths, with_pack=False)
        RuleEngine(loaded)  # references and cycles
        console.print(f"{len(loaded)} rule(s) valid")


@app.command("export")
def export(
    rules: RulesOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse rules using project extensions.")] = False,
) -> None:
    """Write rules as Sigma YAML documents to stdout."""
    with handled():
        typer.echo(export_sigma(_load(rules), strict=strict), nl=False)


@app.command("run")
def run(
    paths: Annotated[list[Path], typer.Argument(help="Event files or folders (pcap, Zeek, auth.log, Cowrie, ...).")],
    rules: RulesOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Input format (default: detected).")] = None,
    mapping: Annotated[
        str | None,
        typer.Option("--mapping", "-m", help="Column mapping for csv/jsonl: a built-in name or a YAML file."),
    ] = None,
    mqtt: Annotated[bool, typer.Option("--mqtt", help="Decode MQTT fields from pcap payloads.")] = False,
    dead_letter: Annotated[
        Path | None,
        typer.Option("--dead-letter", help="Append the bad records to this JSONL file (as misuse ingest does)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run rules over files as a batch; print alerts, fused entity risks and incidents.

    Files are read as ``misuse ingest`` reads them: in a folder, files that are not data are
    skipped and listed; bad records are counted, reported (the first one named) and set aside
    (in ``--dead-letter FILE`` if given); they never stop the run. A rule whose group-by field names
    no column of the events is an error naming the rule's file, line and field.
    """
    with handled():
        loaded = _load(rules)
        engine = RuleEngine(loaded, enricher=Enricher(), missing_fields="error")
        plan, skipped = plan_readers(paths, fmt, {"mapping": mapping} if mapping else None)
        dead = DeadLetter(path=dead_letter)
        read = IngestResult(dataset="", skipped=skipped, dead_letter_file=str(dead_letter) if dead_letter else None)
        alerts = []
        for path, name, reader in plan:
            frame = reader.read(path, dead=dead)
            read.files.append(str(path))
            read.formats[str(path)] = name
            read.rows += len(frame)
            if mqtt and name in ("pcap", "pcapng"):
                from misuse.rules.mqtt import annotate_mqtt

                frame = annotate_mqtt(frame, path)
            alerts.extend(engine.process(frame))
        read.bad_records, read.first_bad = dead.count, dead.first()
        titles = {r.id: r.title for r in loaded}
        ungrouped = {
            titles.get(rid, rid): {"hits": n, "reason": engine.stats.ungrouped_reason[rid]}
            for rid, n in engine.stats.ungrouped.items()
        }
        names = display_names(alerts, loaded)
        risks = fuse(alerts, confidences={r.id: r.confidence for r in loaded}, names=names)
        incidents = group_incidents(alerts)
        if as_json:
            emit_json(
                {
                    "input": {k: v for k, v in read.to_dict().items() if k != "dataset"},
                    "alerts": [a.to_dict() for a in alerts],
                    "risks": [r.to_dict() for r in risks],
                    "incidents": [i.to_dict(names) for i in incidents],
                    "ungrouped": ungrouped,
                }
            )
            return
        console.print(f"{engine.stats.events:,} events, {len(alerts)} alert(s), {len(incidents)} incident(s)")
        _print_input_problems(read)
        for title, u in ungrouped.items():
            console.print(
                f"{u['hits']:,} hit(s) of '{title}' not correlated: {u['reason']}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        for inc in incidents[:50]:
            console.print(f"- [{inc.severity}] {inc.summary(names)}", highlight=False, markup=False, soft_wrap=True)
        for r in risks[:10]:
            console.print(f"  {r.summary()}", highlight=False, markup=False, soft_wrap=True)


def _print_input_problems(read: IngestResult) -> None:
    """Skipped files and bad records, in the words of ``misuse ingest``."""
    print_skipped(read.skipped)
    keep = "" if read.dead_letter_file else " (--dead-letter FILE keeps them)"
    print_bad_records(read.bad_records, read.dead_letter_file, read.first_bad, hint=keep)
