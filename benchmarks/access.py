"""Login-pattern detection on real honeypot and server logs, false alarms on benign logins; prints figures.

Detector: misuse.access.monitor.LoginMonitor with its defaults (window 1 h, brute force at 10
failures from one source, spraying/stuffing at 5 accounts with <= 2 failures each, success after
>= 3 failures, unusual login = 2 of rare hour / new network / new client after 5 known logins),
run online in time order over every attempt; no training period unless said.

Truth (derived from the logs in hindsight, stated so the figures can be checked):
- Brute-force source: a source address with >= 10 failed logins over the whole log (any span).
  Detected when a brute_force / password_spraying / credential_stuffing alert names it.
  The online detector only counts within 1 h, so slow guessers are missed on purpose.
- Intrusion session (Cowrie): a session with a login.success whose source failed at least
  once before (earlier, any session) = "login.failed then login.success". Detected when a
  success_after_failures alert's evidence holds that session's success event. Shown for the
  detector's failure threshold 1, 3 (default) and 5.
- MQTTset: bruteforce.pcapng is one attacker (192.168.1.90) guessing MQTT passwords; benign.pcap
  holds only benign clients. Detected = a brute-force-type alert on the attacker's address.
- Simulator (synthetic data, misuse.simulate, 28 days, seeds 1-3): auth.log written by the
  simulator's writer and read back by AuthLogReader; app.jsonl sessions as API logins. Labels
  come from the simulator. False alarm = an alert whose evidence holds only benign events;
  detection = an alert holding an event of the injected brute force / impersonation.

Run: .venv/bin/python benchmarks/access.py [--parts ...] [--seeds ...]   (single-threaded, about 3 min)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from misuse.access.attempts import api_logins, login_attempts
from misuse.access.monitor import LoginMonitor
from misuse.access.mqtt import mqtt_logins
from misuse.alerts.model import Alert
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.cowrie import CowrieReader
from misuse.simulate.generate import simulate_site
from misuse.simulate.writers import write_site

DATA = Path(os.environ.get("MISUSE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
BRUTE_DETECTORS = {"access.login.brute_force", "access.login.password_spraying", "access.login.credential_stuffing"}
TRUTH_FAILURES = 10


def _pr(tp: int, flagged: int, truth: int) -> str:
    p = tp / flagged if flagged else float("nan")
    r = tp / truth if truth else float("nan")
    return f"precision {p:.3f} ({tp}/{flagged})  recall {r:.3f} ({tp}/{truth})"


def brute_force_sources(att: pd.DataFrame, alerts: list[Alert]) -> str:
    fails = att[~att["success"]].groupby("source")["failures"].sum()
    truth = set(fails[fails >= TRUTH_FAILURES].index) - {""}
    flagged = {a.entity for a in alerts if a.detector in BRUTE_DETECTORS}
    return _pr(len(truth & flagged), len(flagged), len(truth))


def cowrie() -> None:
    files = sorted((DATA / "cowrie-2018/json").glob("cowrie.json.*"))
    frame = pd.concat([CowrieReader().read(p) for p in files], ignore_index=True)
    att = login_attempts(frame)
    sess = frame.set_index("event_id")["cat.session"].to_dict()
    print(f"\n== Cowrie 2018: {len(files)} days, {len(att)} login attempts ({int(att['success'].sum())} successes)")
    alerts = LoginMonitor().process_many(att)
    print("alerts:", dict(Counter(a.detector.rsplit(".", 1)[-1] for a in alerts)))
    print("brute-force sources (>= 10 failures in the whole log):", brute_force_sources(att, alerts))
    day = LoginMonitor(window=86400.0).process_many(att)
    print("  same, detector window 24 h instead of 1 h:", brute_force_sources(att, day))
    # intrusion sessions: success after an earlier failure from the same source
    seen_fail: set[str] = set()
    truth: set[str] = set()
    blind: set[str] = set()
    for row in att.itertuples(index=False):
        if not row.success:
            seen_fail.add(row.source)
        elif row.source in seen_fail:
            truth.add(sess.get(row.event_id, row.event_id))
        else:
            blind.add(sess.get(row.event_id, row.event_id))
    print(
        f"intrusion sessions (login.failed then login.success from the source): {len(truth)}; "
        f"successful sessions with no earlier failure (not a failure pattern): {len(blind)}"
    )
    for k in (1, 3, 5):
        found = LoginMonitor(success_after_failures=k).process_many(att)
        hit = {sess.get(e, e) for a in found if a.detector.endswith("success_after_failures") for e in a.evidence[-1:]}
        print(f"  success_after_failures >= {k}: sessions {_pr(len(hit & truth), len(hit), len(truth))}")


def loghub() -> None:
    for name, year in (("OpenSSH/OpenSSH_2k.log", 2017), ("Linux/Linux_2k.log", 2005)):
        frame = AuthLogReader(year=year).read(DATA / "loghub-auth" / name)
        att = login_attempts(frame)
        alerts = LoginMonitor().process_many(att)
        print(
            f"\n== loghub {name}: {len(att)} attempts ({int(att['success'].sum())} successes), alerts "
            f"{dict(Counter(a.detector.rsplit('.', 1)[-1] for a in alerts))}"
        )
        print("brute-force sources (>= 10 failures in the whole log):", brute_force_sources(att, alerts))
        ok = att[att["success"]]
        failed_before = sum(
            bool(((att["source"] == r.source) & (att["ts"] < r.ts) & ~att["success"]).any()) for r in ok.itertuples()
        )
        alerted = sum(any(r.event_id in a.evidence for a in alerts) for r in ok.itertuples())
        print(
            f"successful logins: {len(ok)} ({failed_before} after a failure from the same source, so intrusion "
            f"sessions by the Cowrie rule: {failed_before}); alerted: {alerted}"
        )


def mqtt() -> None:
    print("\n== MQTTset: MQTT CONNECT/CONNACK pairs from the captures as logins")
    for name, truth in (("bruteforce.pcapng", "brute force from 192.168.1.90"), ("benign.pcap", "none (benign)")):
        att = mqtt_logins(DATA / "mqttset" / name)
        alerts = LoginMonitor().process_many(att)
        kinds = dict(Counter(a.detector.rsplit(".", 1)[-1] for a in alerts))
        print(
            f"{name}: {len(att)} attempts ({int(att['success'].sum())} successes) from {att['source'].nunique()} "
            f"sources; truth: {truth}; alerts {kinds} on {sorted({a.entity for a in alerts})}"
        )


def simulated(seed: int) -> tuple[int, int, int, int, int, int]:
    site = simulate_site(seed=seed, days=28)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_site(site, Path(tmp))
        frame = AuthLogReader(year=2026).read(paths["auth"])
    labels = dict(zip(site.auth["event_id"], site.auth["label"], strict=True))
    labels |= dict(zip(site.commands["event_id"], site.commands["label"], strict=True))
    att = pd.concat([login_attempts(frame), api_logins(site.commands)], ignore_index=True).sort_values(
        "ts", kind="stable"
    )
    alerts = LoginMonitor().process_many(att)
    benign_logins = int(sum(labels.get(e) == "benign" for e in att.loc[att["success"], "event_id"]))
    false = [a for a in alerts if all(labels.get(e) == "benign" for e in a.evidence)]
    bf = any(any(labels.get(e) == "brute_force" for e in a.evidence) for a in alerts)
    imp = any(any(labels.get(e) == "impersonation" for e in a.evidence) for a in alerts)
    n_bf = int((site.truth["type"] == "brute_force").sum())
    n_imp = int((site.truth["type"] == "impersonation").sum())
    return benign_logins, len(false), int(bf), n_bf, int(imp), n_imp


PARTS = ("cowrie", "loghub", "mqtt", "simulator")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1] + f"\nData folder: {DATA} (set MISUSE_DATA_DIR to change it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which data (default: all)")
    ap.add_argument(
        "--seeds", nargs="+", type=int, default=[1, 2, 3], help="simulator seeds (default: 1 2 3, the documented run)"
    )
    args = ap.parse_args(argv)
    start = time.time()
    print(f"data: {DATA}")
    if "cowrie" in args.parts:
        cowrie()
    if "loghub" in args.parts:
        loghub()
    if "mqtt" in args.parts:
        mqtt()
    if "simulator" in args.parts:
        print("\n== simulator (SYNTHETIC data: misuse.simulate, 28 days, attacks on the last day)")
        for seed in args.seeds:
            benign, false, bf, n_bf, imp, n_imp = simulated(seed)
            print(
                f"seed {seed}: benign logins {benign} (ssh + app sessions), false alarms {false} "
                f"({false / max(benign, 1):.3%} of benign logins); brute force detected {bf}/{n_bf}; "
                f"impersonation detected {imp}/{n_imp}"
            )
    print(f"\ntotal {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
