"""simulate_site: put devices, people and attacks together into event frames and a ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError
from misuse.events import normalize_frame, to_utc
from misuse.simulate.attacks import ATTACKS, Injected
from misuse.simulate.flows import DAY, FLOW_COLUMNS, make_uids
from misuse.simulate.people import (
    benign_commands,
    benign_ssh,
    command_flows,
    people_table,
    sshd_message,
)
from misuse.simulate.site import benign_device_flows, device_table

CONN_LOG = "conn.log.labeled"
AUTH_LOG = "auth.log"
APP_LOG = "app.jsonl"
CONN_HEADER_LINES = 8  # #separator ... #types
TRUTH_COLUMNS = (
    "attack_id",
    "type",
    "victim",
    "victim_address",
    "attacker",
    "entities",
    "start",
    "end",
    "n_events",
    "description",
)
_MAX_DAYS = 60


@dataclass(frozen=True)
class SiteParams:
    """The parameters a site was generated with (all of them; the output is a function of these)."""

    seed: int
    days: int
    start: str
    attack_day: int
    attacks: tuple[str, ...]
    scale: float


@dataclass(frozen=True)
class SimulatedSite:
    """A generated site: events in the canonical event model, and the ground truth.

    Attributes
    ----------
    flows:
        One row per network connection (``kind`` = ``flow``), as conn.log carries it and
        :class:`~misuse.ingest.zeek.ZeekReader` reads it: ``entity`` = originator address,
        ``peer`` = responder address, ``action`` = Zeek service or else the protocol,
        ``event_id`` = Zeek uid.
    auth:
        One row per hub ``sshd`` log line (``kind`` = ``auth``): ``entity`` = account,
        ``peer`` = client address ("" on session lines), ``action`` in ``login.failed``,
        ``login.success``, ``login.invalid_user``, ``connection.closed``, ``session.open``,
        ``session.close``.
    commands:
        One row per app or admin command (``kind`` = ``command``): ``entity`` = account,
        ``peer`` = device, ``action`` = command.
    truth:
        One row per injected incident (:data:`TRUTH_COLUMNS`): ``type`` (a
        :class:`~misuse.alerts.types.MisuseType` value), ``victim`` (device or account) and its
        ``victim_address``, ``attacker`` address(es) (``;``-joined), ``entities`` (every device,
        account and address involved, ``;``-joined: each malicious event has its ``entity`` or
        ``peer`` among them), ``start``/``end`` (UTC, first event to last event end),
        ``n_events`` and a ``description``.
    event_attacks:
        ``event_id`` -> ``attack_id`` for every malicious event.
    devices, people:
        The site inventory and the account holders.
    params:
        What the site was generated with.
    """

    flows: pd.DataFrame
    auth: pd.DataFrame
    commands: pd.DataFrame
    truth: pd.DataFrame
    event_attacks: pd.DataFrame
    devices: pd.DataFrame
    people: pd.DataFrame
    params: SiteParams

    def events(self) -> pd.DataFrame:
        """All events of every source in one frame, ordered by time."""
        frame = pd.concat([self.flows, self.auth, self.commands], ignore_index=True)
        frame = frame.sort_values(["ts", "event_id"], kind="mergesort", ignore_index=True)
        return normalize_frame(frame)

    def day_bounds(self, day: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Start (inclusive) and end (exclusive) of day ``day`` (0-based), UTC."""
        t0 = pd.Timestamp(self.params.start, tz="UTC") + pd.Timedelta(days=day)
        return t0, t0 + pd.Timedelta(days=1)


def _check(seed: int, days: int, start: str, attack_day: int | None, attacks: object, scale: float) -> None:
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise InvalidParameterError(f"simulate_site: 'seed' must be a non-negative integer, got {seed!r}")
    if not isinstance(days, int | np.integer) or isinstance(days, bool) or not 1 <= days <= _MAX_DAYS:
        raise InvalidParameterError(f"simulate_site: 'days' must be an integer in [1, {_MAX_DAYS}], got {days!r}")
    try:
        date.fromisoformat(start)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"simulate_site: 'start' must be an ISO date like '2026-03-02', got {start!r}"
        ) from None
    if attack_day is not None and not 0 <= attack_day < days:
        raise InvalidParameterError(
            f"simulate_site: 'attack_day' must be in [0, {days - 1}] for days={days}, got {attack_day!r}"
        )
    if isinstance(attacks, str):
        raise InvalidParameterError(f"simulate_site: 'attacks' must be a sequence of names, got the string {attacks!r}")
    for name in attacks or ():  # type: ignore[attr-defined]
        if name not in ATTACKS:
            raise InvalidParameterError(f"simulate_site: unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    if not isinstance(scale, int | float) or not 0.05 <= float(scale) <= 20.0:
        raise InvalidParameterError(f"simulate_site: 'scale' must be a number in [0.05, 20], got {scale!r}")


def simulate_site(
    seed: int = 7,
    days: int = 4,
    start: str = "2026-03-02",
    attack_day: int | None = None,
    attacks: Sequence[str] | None = None,
    scale: float = 1.0,
) -> SimulatedSite:
    """Generate a small IoT site: clean days, then a day with injected attacks.

    Parameters
    ----------
    seed:
        Seed of every random choice; the same arguments give the same site, byte for byte.
    days:
        Number of days (1 to 60).
    start:
        First day, ISO date; days run from midnight UTC.
    attack_day:
        0-based day that holds the attacks; default the last day. The other days are clean.
    attacks:
        Attack names (values of :class:`~misuse.alerts.types.MisuseType`): ``botnet``,
        ``brute_force``, ``exfiltration``, ``impersonation``, ``insider_misuse``,
        ``inadvertent_misuse``. Default all of them; an empty sequence gives a clean site.
    scale:
        Multiplies event rates (telemetry, DNS, NTP, app sessions and attack intensity).

    Returns
    -------
    SimulatedSite

    Raises
    ------
    InvalidParameterError
        For a parameter outside its documented range.

    Examples
    --------
    >>> site = simulate_site(seed=1, days=2, attacks=["brute_force"], scale=0.2)
    >>> list(site.truth["type"])
    ['brute_force']
    >>> bool((site.auth["label"] == "brute_force").any())
    True
    """
    _check(seed, days, start, attack_day, attacks, scale)
    names = tuple(ATTACKS) if attacks is None else tuple(dict.fromkeys(attacks))
    a_day = days - 1 if attack_day is None else int(attack_day)
    t0 = datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()
    streams = np.random.SeedSequence(int(seed)).spawn(5 + len(ATTACKS))
    rng_dev, rng_cmd, rng_ssh, rng_net, rng_ids, rng_slots = (np.random.default_rng(s) for s in streams[:6])

    flow_parts = [benign_device_flows(rng_dev, t0, int(days), float(scale))]
    cmd_parts = [benign_commands(rng_cmd, t0, int(days), float(scale))]
    auth_ssh, flows_ssh = benign_ssh(rng_ssh, t0, int(days))
    auth_parts = [auth_ssh]
    flow_parts.append(flows_ssh)

    incidents: list[tuple[str, Injected]] = []
    slot_len = DAY / max(1, len(names))
    order = rng_slots.permutation(len(names))
    day0 = t0 + a_day * DAY
    for k, name in enumerate(names):
        attack_id = f"A{k + 1}"
        rng = np.random.default_rng(streams[5 + list(ATTACKS).index(name)])
        lo = day0 + order[k] * slot_len + 120.0
        hi = day0 + (order[k] + 1) * slot_len - 120.0
        inj = ATTACKS[name](rng, lo, hi, float(scale), attack_id)
        flow_parts.extend(f for f in inj.flows if len(f))
        if inj.auth:
            auth_parts.append(inj.auth_frame(attack_id))
        if inj.commands:
            cmd_parts.append(inj.command_frame(attack_id))
        incidents.append((attack_id, inj))

    commands = pd.concat(cmd_parts, ignore_index=True)
    commands["ts"] = np.round(commands["ts"].to_numpy(dtype=float), 3)
    flow_parts.append(command_flows(rng_net, commands))
    flows = _flow_frame(pd.concat(flow_parts, ignore_index=True), rng_ids)
    auth = _auth_frame(pd.concat(auth_parts, ignore_index=True))
    cmds = _command_frame(commands)
    event_attacks = pd.concat(
        [f.loc[f["attack_id"] != "", ["event_id", "attack_id"]] for f in (flows, auth, cmds)],
        ignore_index=True,
    )
    truth = _truth(incidents, flows, auth, cmds)
    params = SiteParams(int(seed), int(days), start, a_day, names, float(scale))
    return SimulatedSite(
        flows=normalize_frame(flows.drop(columns="attack_id")),
        auth=normalize_frame(auth.drop(columns="attack_id")),
        commands=normalize_frame(cmds.drop(columns="attack_id")),
        truth=truth,
        event_attacks=event_attacks,
        devices=device_table(),
        people=people_table(),
        params=params,
    )


def _flow_frame(raw: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Flows as :class:`~misuse.ingest.zeek.ZeekReader` reads them back from conn.log."""
    raw = raw[list(FLOW_COLUMNS)]
    raw = raw.assign(ts=np.round(raw["ts"].to_numpy(dtype=float), 6))
    raw = raw.sort_values("ts", kind="mergesort", ignore_index=True)
    n = len(raw)
    service = raw["service"].to_numpy(dtype=object)
    uids = make_uids(rng, n)
    out = pd.DataFrame(
        {
            "event_id": uids,
            "ts": raw["ts"],
            "entity": raw["orig_h"],
            "peer": raw["resp_h"],
            "kind": "flow",
            "action": np.where(service == "-", raw["proto"].to_numpy(dtype=object), service),
            "label": raw["label"],
            "source": [f"{CONN_LOG}:{CONN_HEADER_LINES + 1 + i}" for i in range(n)],
            "attack_id": raw["attack_id"],
        }
    )
    out["num.duration"] = np.round(raw["duration"].to_numpy(dtype=float), 6)
    for col in ("orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes"):
        out["num." + col] = raw[col].to_numpy(dtype=float)
    out["num.missed_bytes"] = 0.0
    out["num.src_port"] = raw["orig_p"].to_numpy(dtype=float)
    out["num.dst_port"] = raw["resp_p"].to_numpy(dtype=float)
    for col in ("proto", "conn_state", "history"):
        out["cat." + col] = raw[col].to_numpy(dtype=object)
    out["cat.service"] = np.where(service == "-", None, service)
    out["cat.uid"] = uids
    return out


def _auth_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Auth lines as :class:`~misuse.ingest.authlog.AuthLogReader` reads them back from auth.log."""
    raw = raw.assign(ts=np.floor(raw["ts"].to_numpy(dtype=float)))
    raw = raw.sort_values("ts", kind="mergesort", ignore_index=True)
    n = len(raw)
    login = raw["action"].isin(["login.failed", "login.success"]).to_numpy()
    ids = [f"{AUTH_LOG}:{i + 1}" for i in range(n)]
    return pd.DataFrame(
        {
            "event_id": ids,
            "ts": raw["ts"],
            "entity": raw["user"],
            "peer": raw["src_ip"].fillna("").astype(str),
            "kind": "auth",
            "action": raw["action"],
            "label": raw["label"],
            "source": ids,
            "attack_id": raw["attack_id"],
            "num.pid": raw["pid"].to_numpy(dtype=float),
            "num.src_port": pd.to_numeric(raw["src_port"]).to_numpy(dtype=float),
            "cat.host": "hub",
            "cat.method": pd.Series(login).map({True: "password", False: None}).to_numpy(dtype=object),
            "cat.service": "sshd",
            "cat.module": None,
            "cat.message": [
                sshd_message(a, u, ip, port)
                for a, u, ip, port in zip(
                    raw["action"], raw["user"], raw["src_ip"].fillna(""), raw["src_port"].astype(float), strict=True
                )
            ],
            "num.repeat": np.nan,
        }
    )


def _command_frame(raw: pd.DataFrame) -> pd.DataFrame:
    raw = raw.sort_values("ts", kind="mergesort", ignore_index=True)
    n = len(raw)
    return pd.DataFrame(
        {
            "event_id": [f"cmd-{i + 1:06d}" for i in range(n)],
            "ts": raw["ts"],
            "entity": raw["account"],
            "peer": raw["device"],
            "kind": "command",
            "action": raw["command"],
            "label": raw["label"],
            "source": [f"{APP_LOG}:{i + 1}" for i in range(n)],
            "attack_id": raw["attack_id"],
            "num.value": raw["value"].to_numpy(dtype=float),
            "cat.client": raw["client"],
            "cat.result": raw["result"],
            "cat.src_ip": raw["src_ip"],
        }
    )


def _truth(
    incidents: list[tuple[str, Injected]],
    flows: pd.DataFrame,
    auth: pd.DataFrame,
    cmds: pd.DataFrame,
) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for attack_id, inj in incidents:
        f = flows.loc[flows["attack_id"] == attack_id]
        ends = [f["ts"] + f["num.duration"].fillna(0.0)]
        starts = [f["ts"]]
        for other in (auth, cmds):
            o = other.loc[other["attack_id"] == attack_id]
            starts.append(o["ts"])
            ends.append(o["ts"])
        # through the event model's own conversion, so truth and event times compare exactly
        lo = min(to_utc(s).min() for s in starts if len(s)).floor("us")
        hi = max(to_utc(e).max() for e in ends if len(e)).ceil("us")
        n_events = int(sum(len(s) for s in starts))
        attackers = inj.attacker.split(";")
        rows.append(
            {
                "attack_id": attack_id,
                "type": inj.type.value,
                "victim": inj.victim,
                "victim_address": inj.victim_address,
                "attacker": inj.attacker,
                "entities": ";".join(dict.fromkeys([inj.victim, inj.victim_address, *attackers, *inj.also])),
                "start": lo,
                "end": hi,
                "n_events": n_events,
                "description": inj.description,
            }
        )
    frame = pd.DataFrame.from_records(rows, columns=list(TRUTH_COLUMNS))
    frame["start"] = pd.to_datetime(frame["start"], utc=True)
    frame["end"] = pd.to_datetime(frame["end"], utc=True)
    return frame
