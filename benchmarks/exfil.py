"""Exfiltration monitor: the site simulator, injected slow drips and DNS tunnels, IoT-23 flows.

1. Simulator (``misuse.simulate``), seeds 0..N-1, 4 days, attack day = last day: the monitor
   learns the clean days and checks the attack day. Run once with only the exfiltration attack
   and once with all six attacks (false findings caused by the other attacks count).
2. Slow drip (``misuse.exfil.simulate.slow_drip``) added to the attack day of exfiltration-free
   sites: one small device uploads 6/12/24 MB in 96 uploads over 24 h to a new address.
3. DNS tunnelling (``misuse.exfil.simulate.dns_queries``): 6 devices with ordinary lookups for
   two training days; on the test day one of them also tunnels for 2 h at 30/100/300 queries/h.
4. IoT-23 labelled flows (``$MISUSE_DATA_DIR/iot23``): benign honeypots 4-1 (Hue) and 5-1 (Echo),
   first half of the capture trains, second half is checked (every finding is false); Mirai 34-1,
   first 6 h train, rest checked. None of these captures contains exfiltration, so this part
   measures false findings only.
5. Injected into REAL benign traffic (IoT-23 honeypots, ``$MISUSE_DATA_DIR/iot23``): the flows of
   4-1 Philips Hue (conn.log; its DNS query names from the capture's pcap), 5-1 Amazon Echo
   (conn.log) and 7-1 Somfy lock (the 130-flow conn subset), split in time: the first half trains,
   the second half is checked with one injection added to it: a burst upload (5 uploads within
   60 s to a new address; 0.5/2/10/50 MB), a slow drip (48 uploads spread over the whole checked
   part to a new address; 3/6/12 MB) or a DNS tunnel (base32 names under one domain for 1 h, or
   the whole checked part when shorter; 30/100/300 queries/h) by the honeypot device, seeds
   0..N-1 (the injection's time and address), under the default windows (1 h / 24 h) and
   short ones (10 min / 4 h) that fit the short captures. Detected = a finding whose evidence holds
   injected events; false = every other finding. The injections are synthetic; the traffic
   around them is real. This is not real exfiltration.

Run: ``.venv/bin/python benchmarks/exfil.py [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.exfil import ExfilMonitor
from misuse.exfil.monitor import LOCAL_NETWORKS
from misuse.exfil.simulate import dns_queries, slow_drip
from misuse.ingest.formats import get_reader
from misuse.ingest.pcap_dns import dns_queries as pcap_dns_names
from misuse.simulate import simulate_site

SMALL = ("192.168.1.40", "192.168.1.41", "192.168.1.60", "192.168.1.61", "192.168.1.70", "192.168.1.71")


def data_dir() -> Path:
    """The shared data folder (``MISUSE_DATA_DIR`` or ``../shared/data``)."""
    return Path(os.environ.get("MISUSE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def split_site(seed: int, attacks: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(training flows, attack-day flows, truth, attack-day start) of one simulated site."""
    s = simulate_site(seed=seed, days=4, attacks=attacks)
    day0, _ = s.day_bounds(s.params.attack_day)
    return s.flows[s.flows["ts"] < day0], s.flows[s.flows["ts"] >= day0], s.truth, day0


def simulator(seeds: int, attacks: list[str] | None) -> dict[str, float]:
    """Detected exfiltration attacks and false findings over seeds."""
    hits = n = false = 0
    for seed in range(seeds):
        train, test, truth, _ = split_site(seed, attacks)
        found = ExfilMonitor().fit(train).check(test)
        ex = truth[truth["type"] == "exfiltration"]
        for _, t in ex.iterrows():
            n += 1
            hits += int(((found["entity"] == t["victim_address"]) & found["peer"].str.contains(t["attacker"])).any())
        attackers = list(ex["attacker"])
        named = np.array([any(a in p for a in attackers) for p in found["peer"]], dtype=bool)
        good = found["entity"].isin(ex["victim_address"]).to_numpy() & named
        false += int((~good).sum())
    return {"attacks": n, "detected": hits, "recall": hits / max(n, 1), "false_findings": false, "site_days": seeds}


def drips(seeds: int) -> list[dict[str, Any]]:
    """Slow drips of three sizes added to exfiltration-free attack days."""
    rows = []
    for total in (6e6, 12e6, 24e6):
        found_drip = found_burst = false = 0
        for seed in range(seeds):
            train, test, _, day0 = split_site(seed, ["brute_force"])
            dev = SMALL[seed % len(SMALL)]
            peer = f"203.0.113.{100 + seed}"
            d = slow_drip(dev, peer, day0, hours=24, total_bytes=total, uploads=96, seed=seed)
            found = ExfilMonitor().fit(train).check(pd.concat([test, d], ignore_index=True))
            mine = found[(found["entity"] == dev) & (found["peer"] == peer)]
            found_drip += int((mine["check"] == "drip").any())
            found_burst += int((mine["check"] == "burst").any())
            false += len(found) - len(mine)
        rows.append(
            {
                "total_MB": total / 1e6,
                "seeds": seeds,
                "drip_found": found_drip,
                "burst_also": found_burst,
                "false_findings": false,
            }
        )
    return rows


def tunnels(seeds: int) -> list[dict[str, Any]]:
    """DNS tunnels at three rates among ordinary lookups."""
    rows = []
    devices = [f"dev-{i}" for i in range(6)]
    start = pd.Timestamp("2026-03-02", tz="UTC")
    for rate in (30, 100, 300):
        hit = false = 0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            train = pd.concat(
                [
                    dns_queries(d, start, 48, per_hour=rng.uniform(5, 60), seed=seed * 10 + i)
                    for i, d in enumerate(devices)
                ],
                ignore_index=True,
            )
            day = start + pd.Timedelta("2D")
            test = [
                dns_queries(d, day, 24, per_hour=rng.uniform(5, 60), seed=seed * 10 + i + 5)
                for i, d in enumerate(devices)
            ]
            victim = devices[seed % len(devices)]
            test.append(
                dns_queries(
                    victim,
                    day + pd.Timedelta("10h"),
                    2,
                    per_hour=0,
                    tunnel_domain="x.tun-nel.example",
                    tunnel_per_hour=rate,
                    seed=seed,
                )
            )
            found = ExfilMonitor().fit(train).check(pd.concat(test, ignore_index=True))
            mine = (found["entity"] == victim) & (found["peer"] == "tun-nel.example")
            hit += int(mine.any())
            false += int((~mine).sum())
        rows.append({"queries_per_hour": rate, "seeds": seeds, "detected": hit, "false_findings": false})
    return rows


def iot23() -> list[dict[str, Any]]:
    """False findings on real IoT-23 captures (no exfiltration in them)."""
    root = data_dir() / "iot23"
    reader = get_reader("zeek")
    rows = []
    for name, rel, train_share in (
        ("4-1 Philips Hue (benign)", "CTU-Honeypot-Capture-4-1/bro/conn.log.labeled", 0.5),
        ("5-1 Amazon Echo (benign)", "CTU-Honeypot-Capture-5-1/bro/conn.log.labeled", 0.5),
        ("34-1 Mirai (DDoS, C&C, scan)", "CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled", 0.25),
    ):
        path = root / rel
        if not path.is_file():
            rows.append({"capture": name, "flows": 0, "findings": "missing"})
            continue
        f = reader.read(path).sort_values("ts", kind="stable")
        t0, t1 = f["ts"].min(), f["ts"].max()
        cut = t0 + (t1 - t0) * train_share
        train, test = f[f["ts"] < cut], f[f["ts"] >= cut]
        found = ExfilMonitor().fit(train).check(test)
        labels = test.set_index("event_id")["label"]
        behind = sorted({str(labels.get(i)) for ev in found["evidence"] for i in ev})
        rows.append(
            {
                "capture": name,
                "hours_train": round((cut - t0).total_seconds() / 3600, 1),
                "flows_checked": len(test),
                "findings": len(found),
                "checks": ",".join(sorted(set(found["check"]))),
                "labels_behind": ",".join(behind),
            }
        )
    return rows


# ---------------------------------------------------------------- 5. injected into real traffic
#: (capture, the honeypot device's address, its flows file)
HONEYPOTS = (
    ("4-1 Philips Hue", "192.168.1.132", "CTU-Honeypot-Capture-4-1/bro/conn.log.labeled"),
    ("5-1 Amazon Echo", "192.168.2.3", "CTU-Honeypot-Capture-5-1/bro/conn.log.labeled"),
    ("7-1 Somfy lock", "192.168.1.158", "CTU-Honeypot-Capture-7-1/conn_labeled_subset.csv"),
)
HUE_PCAP = "CTU-Honeypot-Capture-4-1/2018-10-25-14-06-32-192.168.1.132.pcap.xz"
#: the 7-1 subset is a conn.log exported as CSV with renamed columns (PROVENANCE.md)
SOMFY_MAPPING: dict[str, Any] = {
    "name": "iot23_conn_csv",
    "ts": {"column": "timestamp", "epoch": "s"},
    "event_id": "uid",
    "entity": "origin_address",
    "peer": "response_address",
    "kind": {"constant": "flow"},
    "action": {"column": "protocol"},
    "label": {"column": "label"},
    "num": ["orig_bytes", "resp_bytes", "duration", "response_port"],
    "cat": ["service", "conn_state"],
}
SETTINGS: dict[str, dict[str, Any]] = {
    "1 h / 24 h": {},
    "10 min / 4 h": {"window": 600.0, "long_window": 14400.0},
}
SCENARIOS: tuple[tuple[str, tuple[float, ...], str], ...] = (
    ("burst", (0.5, 2.0, 10.0, 50.0), "MB"),
    ("drip", (3.0, 6.0, 12.0), "MB"),
    ("dns tunnel", (30.0, 100.0, 300.0), "queries/h"),
)
TUNNEL = "x.tun-nel.example"


def honeypot_dns(path: Path) -> pd.DataFrame:
    """The DNS queries of a capture as ``dns`` events: time, asker, resolver and the queried name."""
    packets = get_reader("pcap").read(path)
    asked = packets[(packets["num.dst_port"] == 53) & (packets["num.ip_proto"] == 17)]
    names = pcap_dns_names(path, [int(e.rsplit(":", 1)[1]) for e in asked["event_id"]])
    number = asked["event_id"].str.rsplit(":", n=1).str[1].astype(int)
    q = asked.assign(**{"cat.query": number.map(names)}).dropna(subset=["cat.query"])
    return q[["event_id", "ts", "entity", "peer", "cat.query"]].assign(kind="dns", action="query", label="benign")


def honeypot(root: Path, rel: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(flows, DNS query events) of one honeypot capture, sorted by time."""
    path = root / rel
    reader = get_reader("csv", mapping=SOMFY_MAPPING) if path.suffix == ".csv" else get_reader("zeek")
    flows = reader.read(path).sort_values("ts", kind="stable").reset_index(drop=True)
    dns = pd.DataFrame(columns=["event_id", "ts", "entity", "peer", "kind", "label", "cat.query"])
    if rel.startswith("CTU-Honeypot-Capture-4-1/") and (root / HUE_PCAP).is_file():
        dns = honeypot_dns(root / HUE_PCAP)
    return flows, dns


def _injection(
    scenario: str, size: float, device: str, resolver: str, cut: pd.Timestamp, end: pd.Timestamp, seed: int
) -> pd.DataFrame:
    """One injected exfiltration inside [cut, end): a burst, a slow drip or a DNS tunnel."""
    rng = np.random.default_rng(seed)
    peer = f"203.0.113.{10 + seed}"  # TEST-NET-3: new to every device
    span = (end - cut).total_seconds()
    if scenario == "burst":  # within one 10-minute slot, so it lies in one window of either setting
        slots = max(int(span // 600) - 1, 1)
        start = cut.floor("600s") + pd.Timedelta(seconds=600 * int(rng.integers(1, slots + 1)) + rng.uniform(0, 540))
        return slow_drip(device, peer, start, hours=60 / 3600, total_bytes=size * 1e6, uploads=5, seed=seed)
    if scenario == "drip":
        return slow_drip(device, peer, cut, hours=span / 3600, total_bytes=size * 1e6, uploads=48, seed=seed)
    hours = min(1.0, span / 3600)
    start = cut + pd.Timedelta(seconds=rng.uniform(0, span - hours * 3600))
    return dns_queries(
        device, start, hours, resolver, per_hour=0, tunnel_domain=TUNNEL, tunnel_per_hour=size, seed=seed
    )


def _outside(peers: pd.Series) -> np.ndarray:
    nets = [ipaddress.ip_network(n) for n in LOCAL_NETWORKS]
    return np.array([not any(ipaddress.ip_address(p) in n for n in nets) for p in peers.astype(str)], dtype=bool)


def _describe(
    name: str, device: str, rel: str, flows: pd.DataFrame, dns: pd.DataFrame, cut: pd.Timestamp
) -> dict[str, Any]:
    mine = flows[flows["entity"] == device]
    t0, t1 = flows["ts"].min(), flows["ts"].max()
    asked = f"{len(dns)} ({dns['cat.query'].nunique()} names), {int((dns['ts'] < cut).sum())} in training"
    return {
        "capture": name,
        "device": device,
        "file": rel.split("/", 1)[1],
        "labels": ",".join(sorted(flows["label"].astype(str).str.lower().unique())),
        "flows": len(flows),
        "device_flows": len(mine),
        "device_flows_outside": int(_outside(mine["peer"]).sum()),
        "hours": round((t1 - t0).total_seconds() / 3600, 1),
        "train_h": round((cut - t0).total_seconds() / 3600, 1),
        "train_flows": int((flows["ts"] < cut).sum()),
        "check_flows": int((flows["ts"] >= cut).sum()),
        "dns_queries": asked if len(dns) else "none (no pcap)",
    }


def injected_real(root: Path, seeds: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Injections into the honeypots' real flows: (what was read and split, learned limits, results)."""
    data: list[dict[str, Any]] = []
    limits: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for name, device, rel in HONEYPOTS:
        if not (root / rel).is_file():
            data.append({"capture": name, "file": rel, "flows": "missing"})
            continue
        flows, dns = honeypot(root, rel)
        t0, t1 = flows["ts"].min(), flows["ts"].max()
        cut = t0 + (t1 - t0) / 2
        train = pd.concat([flows[flows["ts"] < cut], dns[dns["ts"] < cut]], ignore_index=True)
        test = pd.concat([flows[flows["ts"] >= cut], dns[dns["ts"] >= cut]], ignore_index=True)
        data.append(_describe(name, device, rel, flows, dns, cut))
        resolver = str(dns["peer"].mode().iloc[0]) if len(dns) else "192.168.1.1"
        for label, setting in SETTINGS.items():
            monitor = ExfilMonitor(**setting).fit(train)  # check(update=False) leaves it as trained
            limits.append(
                {
                    "capture": name,
                    "windows": label,
                    "burst_limit_MB": monitor.burst_limit_.get(device, monitor.min_bytes) / 1e6,
                    "drip_limit_MB": monitor.drip_limit_.get(device, monitor.min_drip_bytes) / 1e6,
                    "dns_limit": monitor.dns_limit_.get(device, float(monitor.dns_min_unique)),
                    "dns_trained": device in monitor.dns_limit_,
                }
            )
            base = monitor.check(test, update=False)
            rows.append({"capture": name, "windows": label, "injected": "nothing", "size": "-", "detected": "-"})
            rows[-1].update(by="-", false_findings=len(base))
            for scenario, sizes, unit in SCENARIOS:
                for size in sizes:
                    hit, false, by = 0, 0, set()
                    for seed in range(seeds):
                        add = _injection(scenario, size, device, resolver, cut, t1, seed)
                        found = monitor.check(pd.concat([test, add], ignore_index=True), update=False)
                        ids = set(add["event_id"])
                        own = np.array([bool(ids & set(ev)) for ev in found["evidence"]], dtype=bool)
                        hit += int(own.any())
                        false += int((~own).sum())
                        by |= set(found.loc[own, "check"])
                    rows.append(
                        {
                            "capture": name,
                            "windows": label,
                            "injected": scenario,
                            "size": f"{size:g} {unit}",
                            "detected": f"{hit}/{seeds}",
                            "by": ",".join(sorted(by)) or "-",
                            "false_findings": false,
                        }
                    )
    return data, limits, rows


def main() -> None:
    """Run the five evaluations and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="simulated sites per setting (seeds 0..N-1)")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    t0 = time.perf_counter()
    m = ExfilMonitor()
    print(f"ExfilMonitor defaults: window {m.window:.0f} s, long window {m.long_window:.0f} s, factor {m.factor:g}")
    print(f"\n1. simulator, attack day after 3 clean days (seeds 0..{args.seeds - 1})")
    print(
        pd.DataFrame(
            [
                {"setting": "exfiltration only", **simulator(args.seeds, ["exfiltration"])},
                {"setting": "all six attacks", **simulator(args.seeds, None)},
            ]
        ).to_string(index=False)
    )
    print("\n2. slow drip, 96 uploads over 24 h to a new address, added to brute-force-only attack days")
    print(pd.DataFrame(drips(args.seeds)).to_string(index=False))
    print("\n3. DNS tunnelling, 2 h of base32 names under one domain, 6 devices with ordinary lookups")
    print(pd.DataFrame(tunnels(args.seeds)).to_string(index=False))
    print("\n4. IoT-23 labelled flows (no exfiltration in any capture: every finding is a false alarm)")
    print(pd.DataFrame(iot23()).to_string(index=False))
    data, limits, rows = injected_real(data_dir() / "iot23", args.seeds)
    print(
        "\n5. injected into REAL benign IoT-23 honeypot traffic (synthetic exfiltration, real traffic around it);"
        "\n   first half of each capture (by time) trains, the second half plus one injection is checked;"
        f" seeds 0..{args.seeds - 1}"
    )
    print(pd.DataFrame(data).to_string(index=False))
    print("\n   limits the monitor learned for each honeypot device (a floor where it learned less)")
    print(pd.DataFrame(limits).to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print()
    table = pd.DataFrame(rows)
    if len(table):
        wide = table.pivot_table(
            index=["capture", "injected", "size"],
            columns="windows",
            values=["detected", "by", "false_findings"],
            aggfunc="first",
            sort=False,
        )
        wide.columns = [f"{w} {v}" for v, w in wide.columns]
        order = [f"{w} {v}" for w in SETTINGS for v in ("detected", "by", "false_findings")]
        print(wide[order].reset_index().to_string(index=False))
    print(f"\n{time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
