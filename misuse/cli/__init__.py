"""The ``misuse`` command line: ``misuse --help`` lists the commands."""

from __future__ import annotations

import typer

from misuse.cli import (
    data,
    demo,
    devices,
    evaluate,
    exfil,
    federate,
    firmware,
    integrity,
    models,
    policy,
    profile,
    scale,
    serve,
)
from misuse.cli import rules as rules_cli

app = typer.Typer(
    name="misuse",
    help="Detect the misuse of IoT devices and of the systems people operate through them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("ingest")(data.ingest)
app.command("alerts")(data.alerts)
app.command("feedback")(data.feedback)
app.command("train")(models.train)
app.command("detect")(models.detect)
app.command("simulate")(demo.simulate)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.add_typer(serve.token_app, name="token")
app.add_typer(profile.profile_app, name="profile")
app.add_typer(federate.federate_app, name="federate")
app.add_typer(rules_cli.app, name="rules")
app.add_typer(firmware.firmware_app, name="firmware")
app.add_typer(integrity.integrity_app, name="integrity")
app.add_typer(exfil.exfil_app, name="exfil")
app.add_typer(scale.scale_app, name="scale")
app.add_typer(devices.devices_app, name="devices")
app.add_typer(policy.policy_app, name="policy")
app.command("access")(devices.access)
# one `misuse eval` group: the dataset evaluations (cli/evaluate.py) plus `eval sea` from cli/profile.py
evaluate.app.registered_commands += profile.eval_app.registered_commands
app.add_typer(evaluate.app, name="eval")


def main() -> None:
    """Entry point of the ``misuse`` script."""
    app()
