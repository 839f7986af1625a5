"""The people of the site: their accounts, habits, app commands and admin SSH logins.

Each person has hours (a weekday and a weekend profile), a source device and client string,
and routines: short, ordered command sequences ("disarm then unlock") with their own weights.
The raw command table has one row per command (``ts``, ``account``, ``device``, ``command``,
``value``, ``client``, ``src_ip``, ``result``, ``label``, ``attack_id``); the raw auth table one
row per OpenSSH log line (``ts``, ``pid``, ``action``, ``user``, ``src_ip``, ``src_port``,
``label``, ``attack_id``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from misuse.simulate.flows import DAY, HOUR, flow_block, lognormal
from misuse.simulate.site import HUB_IP, device_by_name

HUB_ACCOUNTS: tuple[str, ...] = ("root", "dave", "alice")
COMMAND_COLUMNS = ("ts", "account", "device", "command", "value", "client", "src_ip", "result")
AUTH_COLUMNS = ("ts", "pid", "action", "user", "src_ip", "src_port")


def _hours(*spans: tuple[int, int, float], base: float = 0.01) -> np.ndarray:
    prof = np.full(24, base)
    for lo, hi, w in spans:
        prof[lo:hi] = w
    return prof


@dataclass(frozen=True)
class Person:
    """One account holder and their habits.

    Parameters
    ----------
    account, src_ip, client:
        Account name, the address of their usual phone or laptop, and its client string.
    weekday, weekend:
        Relative activity by hour of day (UTC).
    sessions_per_day:
        Expected app sessions on a weekday (weekends scale with the profile's mass).
    routines:
        Ordered ``"command@device"`` sequences and their weights.
    temp:
        Preferred thermostat set-point, degrees Celsius.
    ssh_per_day:
        Expected admin SSH logins to the hub per day.
    mobile_ip:
        Carrier address the app uses away from home (weekday working hours), "" for none.
    """

    account: str
    src_ip: str
    client: str
    weekday: np.ndarray
    weekend: np.ndarray
    sessions_per_day: float
    routines: tuple[tuple[tuple[str, ...], float], ...]
    temp: float = 21.0
    ssh_per_day: float = 0.0
    mobile_ip: str = ""


PEOPLE: tuple[Person, ...] = (
    Person(
        "alice",
        "192.168.1.20",
        "HomeApp/4.2.1 (iPhone; iOS 17.3)",
        _hours((6, 8, 1.0), (17, 22, 0.8), (12, 13, 0.2)),
        _hours((9, 13, 0.6), (17, 23, 0.8)),
        30.0,
        (
            (("lock@lock-front", "arm@hub"), 3.0),
            (("disarm@hub", "unlock@lock-front"), 3.0),
            (("set_temp@thermo-living",), 2.0),
            (("get_status@hub", "view_stream@cam-front"), 2.0),
            (("plug_off@plug-kitchen",), 1.0),
        ),
        temp=21.5,
        mobile_ip="192.0.2.201",
        ssh_per_day=0.3,
    ),
    Person(
        "bob",
        "192.168.1.21",
        "HomeApp/4.2.0 (Android 14; Pixel 7)",
        _hours((7, 8, 0.4), (12, 13, 0.4), (19, 24, 1.0)),
        _hours((10, 14, 0.5), (19, 24, 1.0)),
        24.0,
        (
            (("view_stream@cam-garden",), 3.0),
            (("view_stream@cam-front", "view_stream@cam-garden"), 2.0),
            (("plug_on@plug-tv",), 2.0),
            (("plug_off@plug-tv",), 2.0),
            (("lock@lock-back",), 1.0),
        ),
        temp=20.0,
        mobile_ip="192.0.2.202",
    ),
    Person(
        "carol",
        "192.168.1.22",
        "HomeApp/4.1.9 (Android 13; SM-X700)",
        _hours((15, 21, 1.0), (7, 8, 0.3)),
        _hours((11, 22, 0.8)),
        18.0,
        (
            (("set_temp@thermo-bedroom",), 3.0),
            (("unlock@lock-back", "lock@lock-back"), 2.0),
            (("plug_on@plug-kitchen", "plug_off@plug-kitchen"), 1.5),
            (("get_status@hub",), 1.0),
        ),
        temp=22.5,
        mobile_ip="192.0.2.203",
    ),
    Person(
        "dave",
        "192.168.1.25",
        "hubctl/1.3 (Linux x86_64)",
        _hours((19, 22, 1.0), (8, 9, 0.3)),
        _hours((10, 12, 1.0)),
        6.0,
        (
            (("show status@hub",), 4.0),
            (("show logs@hub", "show status@hub"), 2.0),
            (("show status@hub", "update@hub", "reboot@hub"), 1.0),
        ),
        ssh_per_day=2.0,
    ),
)


def person_by_account(account: str) -> Person:
    """Look a person up by account name."""
    for p in PEOPLE:
        if p.account == account:
            return p
    raise KeyError(account)


def people_table() -> pd.DataFrame:
    """One row per account: its usual source address and client."""
    return pd.DataFrame(
        {
            "account": [p.account for p in PEOPLE],
            "src_ip": [p.src_ip for p in PEOPLE],
            "client": [p.client for p in PEOPLE],
            "ssh_admin": [p.account in HUB_ACCOUNTS for p in PEOPLE],
        }
    )


def is_weekend(t0: float, day: int) -> bool:
    """True when day ``day`` of a run starting at midnight ``t0`` is a Saturday or Sunday."""
    return (int(np.floor(t0 / DAY)) + day + 3) % 7 >= 5


def command_value(rng: np.random.Generator, command: str, temp: float) -> float:
    """The numeric argument of a command: set-point for ``set_temp``, seconds for ``view_stream``."""
    if command == "set_temp":
        return float(np.round(rng.normal(temp, 0.6) * 2) / 2)
    if command == "view_stream":
        return float(np.round(lognormal(rng, 45.0, 0.7, 1)[0], 1))
    return float("nan")


def session_rows(
    rng: np.random.Generator,
    start: float,
    steps: Sequence[str],
    *,
    account: str,
    src_ip: str,
    client: str,
    temp: float = 21.0,
    gap_median: float = 8.0,
    error_rate: float = 0.02,
) -> list[dict[str, object]]:
    """The commands of one app session, in order; a failed command is retried once."""
    rows: list[dict[str, object]] = []
    t = start
    for step in steps:
        command, _, device = step.partition("@")
        value = command_value(rng, command, temp)
        failed = rng.random() < error_rate
        for result in ("error", "ok") if failed else ("ok",):
            rows.append(
                {
                    "ts": t,
                    "account": account,
                    "device": device,
                    "command": command,
                    "value": value,
                    "client": client,
                    "src_ip": src_ip,
                    "result": result,
                }
            )
            t += float(lognormal(rng, gap_median, 0.6, 1)[0])
    return rows


def benign_commands(rng: np.random.Generator, t0: float, days: int, scale: float) -> pd.DataFrame:
    """Every person's ordinary app and admin commands over the run."""
    rows: list[dict[str, object]] = []
    for person in PEOPLE:
        names = [r[0] for r in person.routines]
        weights = np.array([r[1] for r in person.routines])
        weights = weights / weights.sum()
        for day in range(days):
            prof = person.weekend if is_weekend(t0, day) else person.weekday
            mass = prof.sum() / person.weekday.sum()
            n = int(rng.poisson(person.sessions_per_day * mass * scale))
            hours = rng.choice(24, size=n, p=prof / prof.sum())
            starts = t0 + day * DAY + hours * HOUR + rng.uniform(0, HOUR, n)
            # away from home on weekday working hours: the app reaches the hub from the carrier
            away = ((hours >= 9) & (hours < 17)) & (rng.random(n) < 0.6) & (not is_weekend(t0, day))
            order = np.argsort(starts, kind="stable")
            for s, remote in zip(starts[order], away[order] & bool(person.mobile_ip), strict=True):
                steps = list(names[int(rng.choice(len(names), p=weights))])
                if rng.random() < 0.15 and steps[0] != "get_status@hub":
                    steps.insert(0, "get_status@hub")
                rows.extend(
                    session_rows(
                        rng,
                        float(s),
                        steps,
                        account=person.account,
                        src_ip=person.mobile_ip if remote else person.src_ip,
                        client=person.client,
                        temp=person.temp,
                    )
                )
    return label_rows(rows, COMMAND_COLUMNS, "benign", "")


def label_rows(rows: list[dict[str, object]], columns: Sequence[str], label: str, attack_id: str) -> pd.DataFrame:
    """A raw table from row dicts, with a label and attack id on every row."""
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    frame["label"] = label
    frame["attack_id"] = attack_id
    return frame


def command_flows(rng: np.random.Generator, commands: pd.DataFrame) -> pd.DataFrame:
    """The network side of commands: client -> hub HTTPS, and camera -> cloud for live streams."""
    blocks: list[pd.DataFrame] = []
    for (label, attack_id), grp in commands.groupby(["label", "attack_id"], sort=True):
        n = len(grp)
        blocks.append(
            flow_block(
                rng,
                grp["ts"].to_numpy() - 0.05,
                orig_h=grp["src_ip"].to_numpy(dtype=object),
                resp_h=HUB_IP,
                resp_p=443,
                proto="tcp",
                service="ssl",
                duration=lognormal(rng, 0.35, 0.5, n),
                orig_bytes=lognormal(rng, 900.0, 0.3, n),
                resp_bytes=lognormal(rng, 2400.0, 0.4, n),
                label=str(label),
                attack_id=str(attack_id),
            )
        )
        streams = grp.loc[(grp["command"] == "view_stream") & (grp["result"] == "ok")]
        if len(streams):
            cams = [device_by_name(str(d)) for d in streams["device"]]
            secs = streams["value"].to_numpy(dtype=float)
            blocks.append(
                flow_block(
                    rng,
                    streams["ts"].to_numpy() + 0.3,
                    orig_h=np.array([c.ip for c in cams], dtype=object),
                    resp_h=np.array([c.clouds[-1] for c in cams], dtype=object),
                    resp_p=443,
                    proto="tcp",
                    service="ssl",
                    duration=secs,
                    orig_bytes=secs * lognormal(rng, 180_000.0, 0.2, len(streams)),
                    resp_bytes=lognormal(rng, 6000.0, 0.4, len(streams)),
                    label=str(label),
                    attack_id=str(attack_id),
                )
            )
    return pd.concat(blocks, ignore_index=True)


def ssh_connection(
    rng: np.random.Generator,
    start: float,
    *,
    pid: int,
    src_ip: str,
    src_port: int,
    users: Sequence[str],
    success: bool,
    session_seconds: float = 0.0,
) -> list[dict[str, object]]:
    """Auth-log rows of one SSH connection: one password attempt per entry of ``users``.

    All attempts fail except the last one when ``success`` is true, which opens (and after
    ``session_seconds`` closes) a session.
    """
    rows: list[dict[str, object]] = []
    t = start + float(rng.uniform(0.2, 1.0))
    for i, user in enumerate(users):
        last_ok = success and i == len(users) - 1
        base = {"pid": pid, "user": user, "src_ip": src_ip, "src_port": src_port}
        if user not in HUB_ACCOUNTS:
            rows.append({"ts": t, "action": "login.invalid_user", **base})
        t += float(rng.uniform(1.5, 3.5)) if not last_ok else float(rng.uniform(0.3, 1.5))
        rows.append({"ts": t, "action": "login.success" if last_ok else "login.failed", **base})
    if not success:  # the client gives up (or is cut off) before authenticating
        t += float(rng.uniform(0.05, 0.5))
        base = {"pid": pid, "user": users[-1], "src_ip": src_ip, "src_port": src_port}
        rows.append({"ts": t, "action": "connection.closed", **base})
    if success:
        user = users[-1]
        rows.append({"ts": t, "pid": pid, "action": "session.open", "user": user, "src_ip": None, "src_port": None})
        rows.append(
            {
                "ts": t + session_seconds,
                "pid": pid,
                "action": "session.close",
                "user": user,
                "src_ip": None,
                "src_port": None,
            }
        )
    return rows


def sshd_message(action: str, user: str, ip: str, port: float) -> str:
    """The text OpenSSH logs (after ``sshd[pid]: ``) for one auth row."""
    where = f"{ip} port {int(port)}" if ip and not np.isnan(port) else ip
    invalid = user not in HUB_ACCOUNTS
    if action == "login.invalid_user":
        return f"Invalid user {user} from {where}"
    if action == "login.failed":
        return f"Failed password for {'invalid user ' if invalid else ''}{user} from {where} ssh2"
    if action == "login.success":
        return f"Accepted password for {user} from {where} ssh2"
    if action == "session.open":
        return f"pam_unix(sshd:session): session opened for user {user} by (uid=0)"
    if action == "session.close":
        return f"pam_unix(sshd:session): session closed for user {user}"
    if action == "connection.closed":
        who = "invalid user" if invalid else "authenticating user"
        return f"Connection closed by {who} {user} {where} [preauth]"
    raise ValueError(f"sshd_message: no log text for action {action!r}")


def benign_ssh(rng: np.random.Generator, t0: float, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Admins' SSH logins to the hub: the auth-log rows and the matching ssh flows."""
    rows: list[dict[str, object]] = []
    conns: list[tuple[float, float, str, int]] = []
    pid = int(rng.integers(900, 3000))
    for person in PEOPLE:
        if person.ssh_per_day <= 0:
            continue
        for day in range(days):
            prof = person.weekend if is_weekend(t0, day) else person.weekday
            # a habit, not a coin toss: at least one login on most days for a daily admin
            rate = person.ssh_per_day
            n = int(rng.random() < min(1.0, rate)) + int(rng.poisson(max(0.0, rate - 1.0)))
            hours = rng.choice(24, size=n, p=prof / prof.sum())
            for h in np.sort(hours):
                start = t0 + day * DAY + h * HOUR + float(rng.uniform(0, HOUR))
                users = [person.account] * (2 if rng.random() < 0.1 else 1)  # a typo now and then
                length = float(lognormal(rng, 240.0, 0.8, 1)[0])
                port = int(rng.integers(40000, 61000))
                pid += int(rng.integers(5, 400))
                rows.extend(
                    ssh_connection(
                        rng,
                        start,
                        pid=pid,
                        src_ip=person.src_ip,
                        src_port=port,
                        users=users,
                        success=True,
                        session_seconds=length,
                    )
                )
                conns.append((start, length + 3.0 * len(users), person.src_ip, port))
    auth = label_rows(rows, AUTH_COLUMNS, "benign", "")
    flows = ssh_flows(rng, conns, label="benign", attack_id="", interactive=True)
    return auth, flows


def ssh_flows(
    rng: np.random.Generator,
    conns: Sequence[tuple[float, float, str, int]],
    *,
    label: str,
    attack_id: str,
    interactive: bool,
) -> pd.DataFrame:
    """SSH flows to the hub for ``(start, duration, src_ip, src_port)`` connections."""
    n = len(conns)
    arr = np.array([c[0] for c in conns], dtype=float)
    dur = np.array([c[1] for c in conns], dtype=float)
    scale_o, scale_r = (6000.0, 40_000.0) if interactive else (1800.0, 2600.0)
    return flow_block(
        rng,
        arr,
        orig_h=np.array([c[2] for c in conns], dtype=object),
        orig_p=np.array([c[3] for c in conns], dtype=np.int64),
        resp_h=HUB_IP,
        resp_p=22,
        proto="tcp",
        service="ssh",
        duration=dur,
        orig_bytes=lognormal(rng, scale_o, 0.4, n) * (1 + dur / 600.0 if interactive else 1),
        resp_bytes=lognormal(rng, scale_r, 0.4, n) * (1 + dur / 300.0 if interactive else 1),
        label=label,
        attack_id=attack_id,
    )
