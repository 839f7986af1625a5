"""``misuse rules list|validate|run|export``: the signature and heuristic rules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from misuse.cli.common import JsonOpt, console, emit_json, handled
from misuse.ingest.formats import reader_for
from misuse.rules import builtin_pack
from misuse.rules.derive import Enricher
from misuse.rules.engine import RuleEngine
from misuse.rules.fusion import display_names, fuse, group_incidents
from misuse.rules.model import Rule, load_rules
from misuse.rules.sigma import export_sigma

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
    paths: Annotated[list[Path], typer.Argument(help="Event files (pcap, Zeek, auth.log, Cowrie, ...).")],
    rules: RulesOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="Input format (default: detected).")] = None,
    mapping: Annotated[
        str | None,
        typer.Option("--mapping", "-m", help="Column mapping for csv/jsonl: a built-in name or a YAML file."),
    ] = None,
    mqtt: Annotated[bool, typer.Option("--mqtt", help="Decode MQTT fields from pcap payloads.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run rules over files as a batch; print alerts, fused entity risks and incidents."""
    with handled():
        loaded = _load(rules)
        engine = RuleEngine(loaded, enricher=Enricher(), missing_fields="error")
        alerts = []
        options = {"mapping": mapping} if mapping else {}
        for path in paths:
            name, reader = reader_for(path, fmt, **options)
            frame = reader.read(path)
            if mqtt and name in ("pcap", "pcapng"):
                from misuse.rules.mqtt import annotate_mqtt

                frame = annotate_mqtt(frame, path)
            alerts.extend(engine.process(frame))
        names = display_names(alerts, loaded)
        risks = fuse(alerts, confidences={r.id: r.confidence for r in loaded}, names=names)
        incidents = group_incidents(alerts)
        if as_json:
            emit_json(
                {
                    "alerts": [a.to_dict() for a in alerts],
                    "risks": [r.to_dict() for r in risks],
                    "incidents": [i.to_dict(names) for i in incidents],
                }
            )
            return
        console.print(f"{engine.stats.events:,} events, {len(alerts)} alert(s), {len(incidents)} incident(s)")
        for inc in incidents[:50]:
            console.print(f"- [{inc.severity}] {inc.summary(names)}", highlight=False, markup=False, soft_wrap=True)
        for r in risks[:10]:
            console.print(f"  {r.summary()}", highlight=False, markup=False, soft_wrap=True)
