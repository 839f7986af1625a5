"""``misuse devices train|list|check`` (device fingerprints) and ``misuse access`` (login patterns).

Like ``misuse ingest``, every command counts the records it cannot read, sets them aside in
``<project>/deadletter/<command>.jsonl`` (``devices-train``, ``devices-list``, ``devices-check``,
``access``; each run replaces its command's file) and prints how many, where, and the first one's
file, line and reason: on stdout after the table, on stderr with ``--json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from misuse.access.attempts import api_logins, login_attempts
from misuse.access.monitor import LoginMonitor
from misuse.access.mqtt import mqtt_logins
from misuse.alerts.model import Alert
from misuse.cli.badinput import dead_letter_report, dead_letters, print_dead_letters
from misuse.cli.common import (
    DEFAULT_PROJECT,
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    handled,
    open_store,
)
from misuse.errors import InvalidParameterError, ParseError, SchemaError
from misuse.fingerprint.classifier import DeviceClassifier, identify
from misuse.fingerprint.features import ALL_GROUPS, GROUPS, window_features
from misuse.fingerprint.monitor import FingerprintMonitor
from misuse.fingerprint.observe import capture_observations, flow_observations
from misuse.ingest.base import DeadLetter
from misuse.ingest.formats import reader_for, sniff_format

devices_app = typer.Typer(
    help="Device fingerprints: learn device types from traffic, list devices with their type, check for spoofing.",
    no_args_is_help=True,
)
CapturesArg = Annotated[list[Path], typer.Argument(help="pcap/pcapng captures or Zeek conn logs.")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Device classifier (<path>.json + <path>.npz).")]
DevicesOpt = Annotated[
    Path | None,
    typer.Option(
        "--devices",
        help="CSV naming the devices: 'device' and 'address' and/or 'ether' columns, optional 'type' "
        "(default type: the name without a trailing -NN).",
    ),
]
WindowOpt = Annotated[float, typer.Option("--window", help="Fingerprint window in seconds.")]


def _device_table(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ParseError(f"cannot read device table: {exc}", source=str(path)) from None
    if "device" not in table.columns or not {"address", "ether"} & set(table.columns):
        raise SchemaError(
            f"{path}: needs a 'device' column and an 'address' or 'ether' column, has {list(table.columns)}"
        )
    keys: dict[str, str] = {}
    for col in ("address", "ether"):
        if col in table.columns:
            keys |= {str(k): str(d) for k, d in zip(table[col], table["device"], strict=True) if pd.notna(k)}
    if "type" in table.columns:
        types = {str(d): str(t) for d, t in zip(table["device"], table["type"], strict=True)}
    else:
        types = {str(d): device_type(str(d)) for d in table["device"]}
    return keys, types


def device_type(name: str) -> str:
    """A device's type from its name: the name without a trailing ``-NN`` (``blink-cam-01`` -> ``blink-cam``)."""
    head, _, tail = name.rpartition("-")
    return head if head and tail.isdigit() else name


def _windows(
    paths: list[Path],
    keys: dict[str, str] | None,
    window: float,
    dead: DeadLetter,
    groups: tuple[str, ...] = ALL_GROUPS,
) -> pd.DataFrame:
    """Fingerprint windows of the captures (unreadable records go to ``dead``); ``groups`` default
    to all, so a saved classifier finds whichever features it was trained on."""
    parts = []
    for p in paths:
        fmt = sniff_format(p)
        if fmt in ("pcap", "pcapng"):
            parts.append(capture_observations(p, keys, dead=dead))
        elif fmt in ("zeek", "zeek-json"):
            parts.append(flow_observations(reader_for(p, fmt)[1].read(p, dead=dead), keys))
        else:
            raise ParseError(f"expected a pcap/pcapng capture or a Zeek conn log, found {fmt}", source=str(p))
    if not window > 0:
        raise InvalidParameterError(f"The '--window' option must be > 0. Got {window}.")
    return window_features(pd.concat(parts, ignore_index=True), window, groups=groups)


@devices_app.command("train")
def train(
    captures: CapturesArg,
    devices: Annotated[Path, typer.Option("--devices", help="CSV naming the devices (see 'misuse devices list').")],
    model: ModelOpt,
    window: WindowOpt = 3600.0,
    until: Annotated[
        str | None, typer.Option("--until", help="Only windows before this UTC date (YYYY-MM-DD).")
    ] = None,
    dns_names: Annotated[
        bool, typer.Option("--dns-names", help="Also fingerprint the names devices look up (feature group 'dns').")
    ] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Learn device-type fingerprints from captures of known devices and save the classifier.

    Bad records are counted and set aside in ``<project>/deadletter/devices-train.jsonl``.
    """
    with handled():
        keys, types = _device_table(devices)
        dead = dead_letters(project, "devices-train")
        f = _windows(captures, keys, window, dead, (*GROUPS, "dns") if dns_names else GROUPS)
        if until:
            f = f[f["window_start"] < pd.Timestamp(until, tz="UTC").timestamp()]
        if f.empty:
            raise SchemaError(f"no device in {devices} has a window of traffic in the captures")
        clf = DeviceClassifier().fit(f, f["device"].map(types))
        path = clf.save(model)
        counts = f["device"].map(types).value_counts().to_dict()
        if as_json:
            emit_json({"model": str(path), "windows": len(f), "types": counts, **dead_letter_report(dead)})
            return
        console.print(f"saved {path} from {len(f):,} windows: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
        print_dead_letters(dead)


@devices_app.command("list")
def list_devices(
    captures: CapturesArg,
    model: ModelOpt,
    devices: DevicesOpt = None,
    window: WindowOpt = 3600.0,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            help="Below it the type is 'unknown' (confidence: the vote for the nearest type, counted only "
            "for windows within that type's calibrated cut-off).",
        ),
    ] = 0.5,
    max_distance: Annotated[
        float, typer.Option("--max-distance", help="Farther (in the type's radii) and the type is 'unknown'.")
    ] = 3.0,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """List the devices in captures with their identified type and confidence.

    Without --devices every private IPv4 address is a device. Bad records are counted and set
    aside in ``<project>/deadletter/devices-list.jsonl``.
    """
    with handled():
        clf = DeviceClassifier.load(model)
        keys, types = _device_table(devices) if devices else (None, {})
        dead = dead_letters(project, "devices-list")
        ident = identify(
            _windows(captures, keys, window, dead), clf, min_confidence=min_confidence, max_distance=max_distance
        )
        if types:
            ident["expected"] = ident["device"].map(types).fillna("")
        if as_json:
            emit_json(ident.to_dict(orient="records"))
            print_dead_letters(dead, stderr=as_json)
            return
        table = Table(*ident.columns)
        for row in ident.itertuples(index=False):
            table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)
        print_dead_letters(dead, stderr=as_json)


@devices_app.command("check")
def check(
    captures: CapturesArg,
    model: ModelOpt,
    devices: Annotated[Path, typer.Option("--devices", help="CSV naming the devices and so their enrolled type.")],
    window: WindowOpt = 3600.0,
    project: ProjectOpt = DEFAULT_PROJECT,
    store: Annotated[bool, typer.Option("--store", help="Also save the alerts in the project store.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Alert when a device's traffic stops matching its type's fingerprint (spoofing, takeover).

    Bad records are counted and set aside in ``<project>/deadletter/devices-check.jsonl``.
    """
    with handled():
        clf = DeviceClassifier.load(model)
        keys, types = _device_table(devices)
        mon = FingerprintMonitor(clf)
        for d, t in types.items():
            if t in clf.classes_:
                mon.enroll(d, t)
        dead = dead_letters(project, "devices-check")
        alerts = mon.check(_windows(captures, keys, window, dead), window)
        _show(alerts, project if store else None, "fingerprint", as_json)
        print_dead_letters(dead, stderr=as_json)


def access(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Auth logs, Cowrie JSON, Zeek ssh logs, app event JSONL, captures with MQTT CONNECTs."),
    ],
    learn_until: Annotated[
        str | None,
        typer.Option("--learn-until", help="Attempts before this UTC date only teach the account histories."),
    ] = None,
    year: Annotated[int | None, typer.Option("--year", help="Year of syslog stamps (they carry none).")] = None,
    min_unusual: Annotated[
        int,
        typer.Option(
            "--min-unusual",
            min=1,
            max=3,
            help="How many of rare hour / new network / new client make an unusual login (1 alerts on each "
            "alone, at low severity).",
        ),
    ] = 2,
    project: ProjectOpt = DEFAULT_PROJECT,
    store: Annotated[bool, typer.Option("--store", help="Also save the alerts in the project store.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find brute force, spraying, stuffing, success after failures and unusual logins in auth events.

    Bad records are counted and set aside in ``<project>/deadletter/access.jsonl``.
    """
    with handled():
        dead = dead_letters(project, "access")
        parts = []
        for p in paths:
            fmt = sniff_format(p)
            if fmt in ("pcap", "pcapng"):
                parts.append(mqtt_logins(p, dead=dead))
                continue
            frame = reader_for(p, fmt, **({"year": year} if fmt == "authlog" else {}))[1].read(p, dead=dead)
            parts += [login_attempts(frame), api_logins(frame)]
        att = pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable")
        mon = LoginMonitor(min_unusual=min_unusual)
        if learn_until:
            cut = pd.Timestamp(learn_until, tz="UTC").timestamp()
            mon.learn_many(att[att["ts"] < cut])
            att = att[att["ts"] >= cut]
        _show(mon.process_many(att), project if store else None, "access", as_json)
        print_dead_letters(dead, stderr=as_json)


def _show(alerts: list[Alert], project: Path | None, dataset: str, as_json: bool) -> None:
    if project is not None:
        with open_store(project, create=True) as st:
            st.add_alerts(alerts, dataset=dataset, model=dataset)
    if as_json:
        emit_json([a.to_dict() for a in alerts])
        return
    table = Table("time (UTC)", "type", "severity", "entity", "summary")
    for a in alerts:
        table.add_row(a.window_start.strftime("%Y-%m-%d %H:%M"), a.misuse_type, a.severity, a.entity, a.summary)
    console.print(table)
    console.print(f"{len(alerts)} alert(s)")
