"""Rule evaluation on real data and rule-engine throughput.

Prints, for the built-in pack plus the public SigmaHQ Linux/SSH rules in
``tests/rules/fixtures/sigma``:

* per dataset and rule: alerts, evidence events, **precision** (share of the alerts' evidence
  events that the ground truth calls malicious) and **coverage** (share of the malicious events
  that some alert of the rule cites);
* engine throughput in events/s on one core: batches of simple selections (vectorised masks),
  the whole pack on a batch, micro-batches of 1,000 events, and the single-event path
  (``process_one``: a one-row frame through the same code).

Ground truth (all data under ``$MISUSE_DATA_DIR``, default ``../shared/data``):

* Cowrie 2018 (all 56 days): no labels. As PROVENANCE.md suggests, a source address is a
  brute-forcer when it has at least 5 failed logins over the whole data set (not in a window,
  so the truth is not the rule); every event from such an address is malicious.
* loghub OpenSSH_2k and Linux_2k: no labels; PROVENANCE.md says essentially all sshd failures
  are hostile and to count failures per rhost. Truth: failure events (failed password,
  invalid user, PAM authentication failure) from an address with at least 5 of them.
* MQTTset (top-level files, the first ~1 MB of each original capture): one class per file;
  every packet of an attack file is malicious, of ``benign.pcap`` and ``benign-5mb-*`` benign.
  MQTT fields come from payload bytes (:mod:`misuse.rules.mqtt`).
* IoT-23 34-1 ``conn.log.labeled``: the per-flow labels; benign honeypots 4-1 and 5-1 are
  added as further benign flows.

Usage::

    python benchmarks/rules.py            # everything (about a minute)
    python benchmarks/rules.py --quick    # throughput on 200k events, fewer single events
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.events import is_malicious_label
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.cowrie import CowrieReader
from misuse.ingest.pcap import PcapReader
from misuse.ingest.zeek import ZeekReader
from misuse.rules import builtin_pack
from misuse.rules.derive import Enricher
from misuse.rules.detection import CompiledDetection, FrameView
from misuse.rules.engine import RuleEngine
from misuse.rules.model import Rule, load_rules, parse_rules
from misuse.rules.mqtt import annotate_mqtt

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MISUSE_DATA_DIR", REPO.parent / "shared" / "data"))
FAILURES = ("login.failed", "login.invalid_user", "pam.auth_failure")


def _rules() -> list[Rule]:
    return builtin_pack() + load_rules(REPO / "tests" / "rules" / "fixtures" / "sigma")


def evaluate(name: str, parts: list[tuple[pd.DataFrame, pd.Series]], rules: list[Rule], enrich: bool = False) -> None:
    """Run the rules on each frame (fresh state per frame, as separate captures are) and print
    hits, precision and coverage per alerting rule over all of them."""
    alerts: list[Alert] = []
    bad: dict[str, bool] = {}
    events = 0
    t0 = time.perf_counter()
    for frame, truth in parts:
        engine = RuleEngine(rules, evidence=1_000_000, enricher=Enricher() if enrich else None)
        alerts.extend(engine.run(frame))
        bad.update(zip(frame["event_id"].astype(str), truth.astype(bool), strict=True))
        events += len(frame)
    took = time.perf_counter() - t0
    n_bad = sum(bad.values())
    titles = {r.id: r.title for r in rules}
    print(f"\n## {name}: {events:,} events, {n_bad:,} malicious by the truth above; {took:.2f}s")
    print(f"{'rule':<62} {'alerts':>7} {'evidence':>9} {'precision':>9} {'coverage':>8}")
    by_rule: dict[str, list[Alert]] = {}
    for a in alerts:
        by_rule.setdefault(a.detector.removeprefix("rule:"), []).append(a)
    for rid, group in sorted(by_rule.items(), key=lambda kv: titles.get(kv[0], kv[0])):
        ev = {e for a in group for e in a.evidence}
        tp = sum(bad.get(e, False) for e in ev)
        prec = tp / len(ev) if ev else float("nan")
        cov = tp / n_bad if n_bad else float("nan")
        print(f"{titles.get(rid, rid)[:62]:<62} {len(group):>7} {len(ev):>9} {prec:>9.3f} {cov:>8.3f}")
    if not by_rule:
        print("(no alerts)")


def cowrie(rules: list[Rule]) -> None:
    """Cowrie honeypot, all days."""
    files = sorted((DATA / "cowrie-2018" / "json").glob("cowrie.json.*"))
    frame = pd.concat([CowrieReader().read(f) for f in files], ignore_index=True)
    fails = frame[(frame["kind"] == "auth") & (frame["action"] == "login.failed")]
    brute = set(fails.groupby("peer").size().loc[lambda s: s >= 5].index)
    evaluate("Cowrie 2018 (truth: source with >= 5 failed logins overall)", [(frame, frame["peer"].isin(brute))], rules)


def loghub(rules: list[Rule]) -> None:
    """loghub OpenSSH and Linux auth logs."""
    for sub, file in (("OpenSSH", "OpenSSH_2k.log"), ("Linux", "Linux_2k.log")):
        frame = AuthLogReader(year=2016).read(DATA / "loghub-auth" / sub / file)
        is_fail = frame["action"].isin(FAILURES)
        counts = frame[is_fail].groupby("peer").size()
        brute = set(counts[counts >= 5].index) - {""}
        truth = is_fail & frame["peer"].isin(brute)
        evaluate(f"loghub {file} (truth: failures from an rhost with >= 5 failures)", [(frame, truth)], rules)


def mqttset(rules: list[Rule]) -> None:
    """MQTTset top-level captures plus the benign-5mb halves."""
    root = DATA / "mqttset"
    files = [
        ("benign.pcap", False),
        ("benign-5mb/benign-5mb-train.pcap", False),
        ("benign-5mb/benign-5mb-test.pcap", False),
        ("bruteforce.pcapng", True),
        ("flood.pcap", True),
        ("malariados.pcap", True),
        ("malformed.pcap", True),
        ("slowite.pcap", True),
    ]
    parts = []
    for rel, attack in files:
        path = root / rel
        f = annotate_mqtt(PcapReader().read(path), path)
        f["event_id"] = rel + ":" + f["event_id"].astype(str)
        parts.append((f, pd.Series(np.full(len(f), attack))))
        fired = sorted({a.summary.split(":")[0] for a in RuleEngine(rules).run(f)})
        print(
            f"  MQTTset {rel:<36} {'attack' if attack else 'benign'}: {len(f):>6} packets; rules fired: {fired or '-'}"
        )
    evaluate("MQTTset (truth: file class; each file its own run)", parts, rules)


def iot23(rules: list[Rule]) -> None:
    """IoT-23 34-1 plus benign honeypot flows."""
    root = DATA / "iot23"
    parts = []
    for rel in (
        "CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled",
        "CTU-Honeypot-Capture-4-1/bro/conn.log.labeled",
        "CTU-Honeypot-Capture-5-1/bro/conn.log.labeled",
    ):
        frame = ZeekReader().read(root / rel)
        parts.append((frame, frame["label"].map(is_malicious_label)))
    evaluate(
        "IoT-23 34-1 + honeypots 4-1, 5-1 (truth: Zeek labels; each capture its own run)", parts, rules, enrich=True
    )
    first = parts[0][0]
    print(f"  malicious flows of 34-1 by class: {first.loc[parts[0][1], 'label'].value_counts().to_dict()}")


def captures(rules: list[Rule]) -> None:
    """Packet rules (Mirai fingerprint, telnet scanning) on the IoT-23 captures that are here."""
    root = DATA / "iot23"
    print("\n## IoT-23 captures, packet rules (no packet labels: benign honeypot, C&C-only, unlabelled)")
    for rel, what in (
        ("CTU-Honeypot-Capture-4-1/2018-10-25-14-06-32-192.168.1.132.pcap.xz", "benign Philips Hue"),
        ("CTU-IoT-Malware-Capture-34-1/other-pcap/2018-12-21-15-50-14-192.168.1.195.irc.pcap", "34-1 IRC C&C only"),
        ("CTU-IoT-Malware-Capture-3-1/test.pcap", "3-1 Muhstik excerpt, unlabelled"),
    ):
        path = root / rel
        if not path.is_file():
            continue
        frame = PcapReader().read(path)
        fired: dict[str, int] = {}
        for a in RuleEngine(rules).run(frame):
            title = a.summary.split(":")[0]
            fired[title] = fired.get(title, 0) + 1
        print(f"  {path.name[:48]:<48} {what:<32} {len(frame):>7} packets; alerts: {fired or '-'}")


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    """A canonical event frame of ``n`` packet-like events (seeded)."""
    rng = np.random.default_rng(seed)
    ports = np.array([22, 23, 80, 443, 1883, 2323, 53, 8080], dtype=float)
    actions = np.array(["tcp", "udp", "mqtt", "telnet", "http", "dns", "ssh", "https"], dtype=object)
    return pd.DataFrame(
        {
            "event_id": pd.Series(np.arange(n).astype(str), dtype="string[pyarrow]"),
            "ts": pd.to_datetime(np.sort(rng.uniform(0, 86400, n)) * 1e9, utc=True),
            "entity": pd.Series(np.char.add("10.0.", rng.integers(0, 1000, n).astype(str)), dtype="string[pyarrow]"),
            "peer": pd.Series(np.char.add("198.51.", rng.integers(0, 5000, n).astype(str)), dtype="string[pyarrow]"),
            "kind": pd.Series(np.full(n, "packet"), dtype="string[pyarrow]"),
            "action": pd.Series(actions[rng.integers(0, len(actions), n)], dtype="string[pyarrow]"),
            "label": None,
            "source": "synthetic",
            "num.dst_port": ports[rng.integers(0, len(ports), n)],
            "num.tcp_flags": rng.choice([2.0, 16.0, 18.0, 24.0], n),
            "num.tcp_seq": rng.integers(0, 2**32, n).astype(float),
            "num.dst_ip_int": rng.integers(0, 2**32, n).astype(float),
        }
    )


SIMPLE = """
title: telnet SYN
id: s1
detection: {sel: {tcp_flags: 2, dst_port: [23, 2323]}, condition: sel}
---
title: mqtt action
id: s2
detection: {sel: {action: mqtt}, condition: sel}
---
title: ssh from a range
id: s3
detection: {sel: {dst_port: 22, entity|startswith: '10.0.1'}, condition: sel}
"""

RARE = """
title: Mirai fingerprint
id: r1
detection: {sel: {tcp_flags: 2, dst_port: [23, 2323], tcp_seq|fieldref: dst_ip_int}, condition: sel}
---
title: one host on mqtt
id: r2
detection: {sel: {action: mqtt, entity: 10.0.7}, condition: sel}
---
title: ssh SYN from a range to one peer
id: r3
detection: {sel: {tcp_flags: 2, dst_port: 22, entity|startswith: '10.0.1', peer: 198.51.42}, condition: sel}
"""


def _rate(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def throughput(n: int, singles: int) -> None:
    """Events/s of the engine on batches, micro-batches and single events."""
    frame = synthetic(n)
    simple = parse_rules(SIMPLE)
    pack = builtin_pack()
    print(f"\n## Throughput (one core, synthetic packet events, seed 0, {n:,} events)")
    compiled = [CompiledDetection(r.detection, r.logsource) for r in simple]
    hits = [int(c.mask(FrameView(frame)).sum()) for c in compiled]
    print(f"hits of the 3 simple selections: {hits} (dense on purpose: 1 alert per entity per 5 min)")

    def masks() -> None:
        view = FrameView(frame)
        for c in compiled:
            c.mask(view)

    print(f"selection masks only, 3 rules:     {_rate(masks, n):>12,.0f} events/s")
    eng = RuleEngine(simple)
    alerts = len(eng.run(frame))
    print(f"batch end to end, 3 rules:         {_rate(lambda: eng.run(frame), n):>12,.0f} events/s ({alerts:,} alerts)")
    rare = parse_rules(RARE)
    sel = RuleEngine(rare)
    alerts = len(sel.run(frame))
    print(f"batch end to end, 3 rare rules:    {_rate(lambda: sel.run(frame), n):>12,.0f} events/s ({alerts:,} alerts)")
    full = RuleEngine(pack)
    print(f"batch, whole pack ({len(pack)} rules):      {_rate(lambda: full.run(frame), n, 1):>12,.0f} events/s")
    chunks = [frame.iloc[i : i + 1000] for i in range(0, min(n, 100_000), 1000)]
    m = sum(len(c) for c in chunks)
    for label, ruleset in (("3 dense rules", simple), ("3 rare rules ", rare)):
        micro = RuleEngine(ruleset)
        rate = _rate(lambda: [micro.process(c) for c in chunks], m, 1)  # noqa: B023
        print(f"micro-batches of 1,000, {label}: {rate:>12,.0f} events/s")
    rows = frame.iloc[:singles].to_dict("records")
    for label, ruleset in (("3 dense rules", simple), ("3 rare rules ", rare)):
        single = RuleEngine(ruleset)
        rate = _rate(lambda: [single.process_one(r) for r in rows], singles, 1)  # noqa: B023
        print(f"single events, {label}:          {rate:>12,.0f} events/s")


def main() -> None:
    """Command-line entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller throughput runs")
    ap.add_argument("--no-data", action="store_true", help="throughput only")
    args = ap.parse_args()
    rules = _rules()
    print(f"rules: {len(rules)} ({len(builtin_pack())} built-in, the rest public SigmaHQ rules)")
    if not args.no_data:
        if not DATA.is_dir():
            print(f"real data not found at {DATA}; set MISUSE_DATA_DIR (skipping the evaluation)")
        else:
            cowrie(rules)
            loghub(rules)
            mqttset(rules)
            iot23(rules)
            captures(rules)
    throughput(200_000 if args.quick else 1_000_000, 500 if args.quick else 2000)


if __name__ == "__main__":
    main()
