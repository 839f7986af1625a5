"""Injected attacks: each one returns its labelled flows, auth-log rows and commands.

An attack is placed in a time slot ``(lo, hi)`` of the attack day (epoch seconds) and picks its
own start inside it, so attacks do not overlap. Its ground-truth interval is computed afterwards
from the events it produced, so truth and labels cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd

from misuse.alerts.types import MisuseType
from misuse.simulate.flows import HOUR, flow_block, lognormal, periodic_times
from misuse.simulate.people import (
    AUTH_COLUMNS,
    COMMAND_COLUMNS,
    label_rows,
    person_by_account,
    session_rows,
    ssh_connection,
    ssh_flows,
)
from misuse.simulate.site import DEVICES, HUB_IP, RESOLVER_IP, device_by_name


@dataclass
class Injected:
    """What one attack added to the site, and how it is described in the ground truth."""

    type: MisuseType
    victim: str
    victim_address: str
    attacker: str
    description: str
    also: tuple[str, ...] = ()  # further entities involved (an account, a flood target)
    flows: list[pd.DataFrame] = field(default_factory=list)
    auth: list[dict[str, object]] = field(default_factory=list)
    commands: list[dict[str, object]] = field(default_factory=list)

    def auth_frame(self, attack_id: str) -> pd.DataFrame:
        """The auth rows as a raw table labelled with this attack."""
        return label_rows(self.auth, AUTH_COLUMNS, self.type.value, attack_id)

    def command_frame(self, attack_id: str) -> pd.DataFrame:
        """The command rows as a raw table labelled with this attack."""
        return label_rows(self.commands, COMMAND_COLUMNS, self.type.value, attack_id)


AttackFn = Callable[[np.random.Generator, float, float, float, str], Injected]


def _ext(rng: np.random.Generator, net: str, lo: int, hi: int) -> str:
    return f"{net}.{int(rng.integers(lo, hi))}"


def _start(rng: np.random.Generator, lo: float, hi: float, length: float) -> float:
    return float(rng.uniform(lo, max(lo, hi - length)))


def botnet(rng: np.random.Generator, lo: float, hi: float, scale: float, attack_id: str) -> Injected:
    """A camera is taken over by telnet, fetches a bot, scans for telnet, phones home and floods."""
    cam = [d for d in DEVICES if d.role == "camera"][int(rng.integers(0, 2))]
    attacker = _ext(rng, "203.0.113", 10, 60)
    cnc = _ext(rng, "192.0.2", 60, 100)
    target = _ext(rng, "198.51.100", 200, 250)
    label = MisuseType.BOTNET.value
    scan_len, flood_len = rng.uniform(600, 1500), rng.uniform(120, 300)
    t = _start(rng, lo, hi, 360 + scan_len + flood_len + 600)
    kw = {"label": label, "attack_id": attack_id}
    # infection: a few failed telnet logins from outside, one that works, then the download
    n_try = int(rng.integers(4, 12))
    tries = np.sort(t + rng.uniform(0, 150, n_try))
    ok = np.zeros(n_try, dtype=bool)
    ok[-1] = True
    inf = flow_block(
        rng,
        tries,
        orig_h=attacker,
        resp_h=cam.ip,
        resp_p=23,
        proto="tcp",
        duration=np.where(ok, rng.uniform(30, 90, n_try), rng.uniform(2, 8, n_try)),
        orig_bytes=np.where(ok, rng.uniform(300, 800, n_try), rng.uniform(40, 90, n_try)),
        resp_bytes=np.where(ok, rng.uniform(1000, 3000, n_try), rng.uniform(100, 220, n_try)),
        **kw,
    )
    t_dl = float(tries[-1] + rng.uniform(10, 30))
    dl = flow_block(
        rng,
        np.array([t_dl]),
        orig_h=cam.ip,
        resp_h=attacker,
        resp_p=80,
        proto="tcp",
        service="http",
        duration=rng.uniform(1, 6, 1),
        orig_bytes=rng.uniform(120, 200, 1),
        resp_bytes=rng.uniform(60_000, 200_000, 1),
        **kw,
    )
    # scanning, then the flood; C&C contact every ~60 s throughout
    t_scan = t_dl + float(rng.uniform(60, 180))
    n_scan = int(rng.poisson(4.0 * scale * scan_len))
    octet = rng.integers(1, 255, n_scan)
    nets = np.array(["203.0.113.", "198.51.100.", "192.0.2.", "192.168.1."], dtype=object)
    dst = nets[rng.choice(4, size=n_scan, p=[0.3, 0.3, 0.3, 0.1])] + octet.astype(str).astype(object)
    scan = flow_block(
        rng,
        np.sort(t_scan + rng.uniform(0, scan_len, n_scan)),
        orig_h=cam.ip,
        resp_h=dst,
        resp_p=np.where(rng.random(n_scan) < 0.9, 23, 2323),
        proto="tcp",
        conn_state=np.where(rng.random(n_scan) < 0.85, "S0", "REJ"),
        duration=rng.uniform(0.0, 3.0, n_scan),
        **kw,
    )
    t_flood = t_scan + scan_len + float(rng.uniform(60, 300))
    n_flood = int(rng.poisson(40.0 * scale * flood_len))
    pkts = rng.integers(5, 60, n_flood)
    flood = flow_block(
        rng,
        np.sort(t_flood + rng.uniform(0, flood_len, n_flood)),
        orig_h=cam.ip,
        resp_h=target,
        resp_p=rng.integers(1, 65536, n_flood),
        proto="udp",
        conn_state="S0",
        duration=rng.uniform(0.0, 2.0, n_flood),
        orig_bytes=pkts * 512.0,
        **kw,
    )
    t_end = t_flood + flood_len + float(rng.uniform(60, 180))
    beats = periodic_times(rng, t_dl + 5.0, t_end, 60.0, jitter=3.0)
    n_b = beats.size
    cc = flow_block(
        rng,
        beats,
        orig_h=cam.ip,
        resp_h=cnc,
        resp_p=6667,
        proto="tcp",
        duration=lognormal(rng, 0.4, 0.5, n_b),
        orig_bytes=lognormal(rng, 60.0, 0.3, n_b),
        resp_bytes=lognormal(rng, 90.0, 0.5, n_b),
        **kw,
    )
    return Injected(
        MisuseType.BOTNET,
        cam.name,
        cam.ip,
        f"{attacker};{cnc}",
        f"{cam.name} infected by telnet from {attacker}; Mirai-like telnet scanning ({n_scan} flows), "
        f"C&C to {cnc}:6667 every ~60 s, UDP flood of {target} ({n_flood} flows)",
        also=(target,),
        flows=[inf, dl, scan, flood, cc],
    )


_GUESSED_USERS = np.array(["root", "admin", "pi", "ubnt", "user", "support", "test", "oracle", "guest"])
_GUESS_WEIGHTS = np.array([0.35, 0.2, 0.1, 0.08, 0.07, 0.06, 0.06, 0.04, 0.04])


def brute_force(rng: np.random.Generator, lo: float, hi: float, scale: float, attack_id: str) -> Injected:
    """An outside address guesses SSH passwords on the hub, then gets in once as root."""
    attacker = _ext(rng, "203.0.113", 60, 100)
    length = float(rng.uniform(600, 2400))
    t = _start(rng, lo, hi, length + 900)
    n_conn = max(3, int(rng.integers(150, 350) * scale))
    starts = np.sort(t + rng.uniform(0, length, n_conn))
    pid = int(rng.integers(5000, 9000))
    auth: list[dict[str, object]] = []
    conns: list[tuple[float, float, str, int]] = []
    port = int(rng.integers(33000, 50000))
    for i, s in enumerate(starts):
        last = i == n_conn - 1
        n_try = int(rng.integers(1, 7))
        users = list(_GUESSED_USERS[rng.choice(_GUESSED_USERS.size, size=n_try, p=_GUESS_WEIGHTS)])
        if last:
            users[-1] = "root"
        pid += int(rng.integers(1, 12))
        port += int(rng.integers(1, 40))
        session = float(rng.uniform(120, 600)) if last else 0.0
        auth.extend(
            ssh_connection(
                rng,
                float(s),
                pid=pid,
                src_ip=attacker,
                src_port=port,
                users=users,
                success=last,
                session_seconds=session,
            )
        )
        conns.append((float(s), 2.5 * n_try + 1.0 + session, attacker, port))
    flows = ssh_flows(rng, conns, label=MisuseType.BRUTE_FORCE.value, attack_id=attack_id, interactive=False)
    return Injected(
        MisuseType.BRUTE_FORCE,
        "hub",
        HUB_IP,
        attacker,
        f"SSH password guessing on the hub from {attacker}: {n_conn} connections, "
        f"{sum(r['action'] == 'login.failed' for r in auth)} failed passwords, then one login as root",
        also=("root",),
        flows=[flows],
        auth=auth,
    )


def exfiltration(rng: np.random.Generator, lo: float, hi: float, scale: float, attack_id: str) -> Injected:
    """A small device uploads far more than usual to a never-seen outside address over HTTPS."""
    candidates = [d for d in DEVICES if d.role in ("thermostat", "lock", "plug")]
    dev = candidates[int(rng.integers(0, len(candidates)))]
    peer = _ext(rng, "203.0.113", 150, 250)
    length = float(rng.uniform(600, 3600))
    t = _start(rng, lo, hi, length + 300)
    n = max(3, int(rng.integers(8, 30) * scale))
    ts = np.sort(t + 2.0 + rng.uniform(0, length, n))
    kw = {"label": MisuseType.EXFILTRATION.value, "attack_id": attack_id}
    sent = lognormal(rng, 6e6, 0.6, n)
    up = flow_block(
        rng,
        ts,
        orig_h=dev.ip,
        resp_h=peer,
        resp_p=443,
        proto="tcp",
        service="ssl",
        duration=lognormal(rng, 45.0, 0.5, n),
        orig_bytes=sent,
        resp_bytes=lognormal(rng, 8000.0, 0.4, n),
        **kw,
    )
    dns = flow_block(
        rng,
        np.array([t]),
        orig_h=dev.ip,
        resp_h=RESOLVER_IP,
        resp_p=53,
        proto="udp",
        service="dns",
        duration=0.01,
        orig_bytes=44.0,
        resp_bytes=76.0,
        **kw,
    )
    return Injected(
        MisuseType.EXFILTRATION,
        dev.name,
        dev.ip,
        peer,
        f"{dev.name} sent {sent.sum() / 1e6:.0f} MB in {n} HTTPS uploads to never-seen {peer}",
        flows=[dns, up],
    )


def _touched(rows: list[dict[str, object]]) -> tuple[str, ...]:
    """Names and addresses of the devices a list of commands acted on, in first-seen order."""
    names = list(dict.fromkeys(str(r["device"]) for r in rows))
    return tuple(names) + tuple(device_by_name(n).ip for n in names)


_HOME_USERS = ("alice", "bob", "carol")
_FOREIGN_CLIENTS = (
    "HomeApp/3.8.0 (Android 9; SM-G950F)",
    "okhttp/4.9.2",
    "HomeApp/4.2.1 (iPad; iPadOS 16.1)",
)
_INTRUDER_STEPS = np.array(
    [
        "get_status@hub",
        "view_stream@cam-front",
        "view_stream@cam-garden",
        "disarm@hub",
        "unlock@lock-back",
        "unlock@lock-front",
        "export_history@hub",
        "set_temp@thermo-living",
        "plug_on@plug-tv",
    ]
)
_INTRUDER_WEIGHTS = np.array([0.22, 0.14, 0.14, 0.1, 0.1, 0.08, 0.1, 0.06, 0.06])


def _hour_start(rng: np.random.Generator, lo: float, hi: float, account: str, length: float, *, busiest: bool) -> float:
    """A start in ``(lo, hi)`` during the hour the account is least (or most) active."""
    prof = person_by_account(account).weekday
    hours = np.arange(np.ceil(lo / HOUR), np.floor((hi - length) / HOUR))
    if hours.size == 0:
        return _start(rng, lo, hi, length)
    activity = prof[(hours % 24).astype(int)] + rng.random(hours.size) * 1e-3
    h = hours[np.argmax(activity) if busiest else np.argmin(activity)]
    return float(h * HOUR + rng.uniform(0, HOUR / 2))


def impersonation(rng: np.random.Generator, lo: float, hi: float, scale: float, attack_id: str) -> Injected:
    """Someone else uses a person's account: odd hour, new address and client, another command mix."""
    account = _HOME_USERS[int(rng.integers(0, len(_HOME_USERS)))]
    src_ip = _ext(rng, "203.0.113", 100, 150)
    client = _FOREIGN_CLIENTS[int(rng.integers(0, len(_FOREIGN_CLIENTS)))]
    length = float(rng.uniform(600, 2400))
    t = _hour_start(rng, lo, hi, account, length, busiest=False)
    n = max(4, int(rng.integers(15, 40) * scale))
    steps = list(_INTRUDER_STEPS[rng.choice(_INTRUDER_STEPS.size, size=n, p=_INTRUDER_WEIGHTS)])
    rows = session_rows(rng, t, steps, account=account, src_ip=src_ip, client=client, gap_median=length / n)
    return Injected(
        MisuseType.IMPERSONATION,
        account,
        person_by_account(account).src_ip,
        src_ip,
        f"account {account} used from {src_ip} with client '{client}': {len(rows)} commands at an hour "
        "its owner is rarely active, unusual mix (disarm, unlock, export_history, camera streams)",
        also=_touched(rows),
        commands=rows,
    )


def insider_misuse(rng: np.random.Generator, lo: float, hi: float, scale: float, attack_id: str) -> Injected:
    """A household member, from their own phone, turns off a camera, watches the others and exports
    the history: actions outside their role."""
    person = person_by_account(("bob", "carol")[int(rng.integers(0, 2))])
    length = float(rng.uniform(300, 1200))
    t = _hour_start(rng, lo, hi, person.account, length, busiest=True)
    steps = ["get_status@hub", "show logs@hub", "disable_camera@cam-garden"]
    steps += ["view_stream@cam-front"] * int(rng.integers(2, 5))
    steps += ["export_history@hub", "delete_recordings@cam-garden", "enable_camera@cam-garden"]
    rows = session_rows(
        rng,
        t,
        steps,
        account=person.account,
        src_ip=person.src_ip,
        client=person.client,
        gap_median=length / len(steps),
    )
    return Injected(
        MisuseType.INSIDER_MISUSE,
        person.account,
        person.src_ip,
        person.src_ip,
        f"{person.account} disabled cam-garden, watched cam-front, exported the history and deleted "
        "recordings from their own phone",
        also=_touched(rows),
        commands=rows,
    )


def inadvertent_misuse(rng: np.random.Generator, lo: float, hi: float, scale: float, attack_id: str) -> Injected:
    """A person leaves the house open by mistake: disarms, unlocks both doors, sets a wild
    temperature, and does not undo any of it."""
    person = person_by_account("alice")
    t = _hour_start(rng, lo, hi, person.account, 300.0, busiest=True)
    steps = ["disarm@hub", "unlock@lock-front", "unlock@lock-back", "set_temp@thermo-living"]
    steps += ["plug_on@plug-kitchen", "plug_off@plug-kitchen"] * int(rng.integers(2, 4))
    rows = session_rows(rng, t, steps, account=person.account, src_ip=person.src_ip, client=person.client)
    wild = float(rng.choice([9.0, 30.0, 31.5]))
    for r in rows:
        if r["command"] == "set_temp":
            r["value"] = wild
    return Injected(
        MisuseType.INADVERTENT_MISUSE,
        person.account,
        person.src_ip,
        person.src_ip,
        f"{person.account} disarmed the alarm, unlocked both doors, set {wild} C and toggled a plug "
        "repeatedly, none of it undone",
        also=_touched(rows),
        commands=rows,
    )


ATTACKS: Mapping[str, AttackFn] = MappingProxyType(
    {
        MisuseType.BOTNET.value: botnet,
        MisuseType.BRUTE_FORCE.value: brute_force,
        MisuseType.EXFILTRATION.value: exfiltration,
        MisuseType.IMPERSONATION.value: impersonation,
        MisuseType.INSIDER_MISUSE.value: insider_misuse,
        MisuseType.INADVERTENT_MISUSE.value: inadvertent_misuse,
    }
)
"""The attacks the simulator can inject, by misuse type (read-only)."""

__all__ = ["ATTACKS", "Injected"]
