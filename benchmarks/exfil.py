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

Run: ``.venv/bin/python benchmarks/exfil.py [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.exfil import ExfilMonitor
from misuse.exfil.simulate import dns_queries, slow_drip
from misuse.ingest.formats import get_reader
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


def main() -> None:
    """Run the four evaluations and print their tables."""
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
    print(f"\n{time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
