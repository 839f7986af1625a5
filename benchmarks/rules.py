"""Rule evaluation on real data and rule-engine throughput (issue 5, item 5).

Prints, for the built-in pack plus the public SigmaHQ Linux/SSH rules in
``tests/rules/fixtures/sigma``:

* per dataset, **every** rule (zero hits included): its hits (events a detection matches, or
  times a correlation fired), alerts, the events its alerts cite, **precision** (share of the
  cited events the ground truth calls malicious; for a detection that only feeds a
  correlation, share of its matched events, marked ``m``) and **coverage** (share of the
  malicious events that some alert of the rule cites);
* engine throughput in events/s on one core (the process is pinned to one CPU and timed by
  its own CPU time, so other load on the machine does not count against it): batches of
  simple selections with dense and with sparse hits, against the issue's target of
  >= 500k events/s; selection masks alone; the whole pack; micro-batches of 1,000; and the
  single-event path (``process_one``: a one-row frame through the same code).

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

    python benchmarks/rules.py            # everything, throughput on 1M events (a few minutes)
    python benchmarks/rules.py --quick    # throughput on 200k events, fewer single events
    python benchmarks/rules.py --no-data --events 20000 --singles 20   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable
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
TARGET = 500_000  # issue 5: >= 500k events/s for simple selections, one core
DATASETS = ("cowrie", "loghub", "mqttset", "iot23", "captures")


def _rules() -> list[Rule]:
    return builtin_pack() + load_rules(REPO / "tests" / "rules" / "fixtures" / "sigma")


def evaluate(name: str, parts: list[tuple[pd.DataFrame, pd.Series]], rules: list[Rule], enrich: bool = False) -> None:
    """Run the rules on each frame (fresh state per frame, as separate captures are) and print
    hits, alerts, precision and coverage of every rule over all of them."""
    alerts: list[Alert] = []
    bad: dict[str, bool] = {}
    compiled = {r.id: CompiledDetection(r.detection, r.logsource) for r in rules if r.correlation is None}
    matched: dict[str, set[str]] = {rid: set() for rid in compiled}
    hits: dict[str, int] = dict.fromkeys((r.id for r in rules), 0)
    masked: dict[str, int] = dict.fromkeys(compiled, 0)
    events = 0
    t0 = time.perf_counter()
    for frame, truth in parts:
        order = _time_order(frame)  # sorted here, so the engine and the masks see one order
        frame, truth = frame.iloc[order].reset_index(drop=True), truth.iloc[order].reset_index(drop=True)
        engine = RuleEngine(rules, evidence=1_000_000, enricher=Enricher() if enrich else None)
        alerts.extend(engine.run(frame))
        view = FrameView(Enricher().transform(frame) if enrich else frame)
        ids = frame["event_id"].astype(str).to_numpy()
        for r in rules:
            if r.id in compiled:
                mask = compiled[r.id].mask(view)
                matched[r.id].update(ids[mask].tolist())
                masked[r.id] += int(mask.sum())
            else:
                hits[r.id] += engine.stats.alerts.get(r.id, 0)  # a correlation's hits: times it fired
        for rid, n in engine.stats.hits.items():
            hits[rid] += n
        bad.update(zip(ids.tolist(), truth.astype(bool), strict=True))
        events += len(frame)
    took = time.perf_counter() - t0
    n_bad = sum(bad.values())
    by_rule: dict[str, list[Alert]] = {}
    for a in alerts:
        by_rule.setdefault(a.detector.removeprefix("rule:"), []).append(a)
    print(f"\n## {name}: {events:,} events, {n_bad:,} malicious by the truth above; {took:.2f}s")
    print(f"{'rule':<62} {'kind':<5} {'hits':>7} {'alerts':>7} {'cited':>7} {'precision':>10} {'coverage':>8}")
    for r in sorted(rules, key=lambda r: r.title):
        group = by_rule.get(r.id, [])
        cited = {e for a in group for e in a.evidence}
        mark = " "
        if not group and r.correlation is None and matched[r.id]:
            cited, mark = matched[r.id], "m"  # feeds a correlation, does not alert alone
        tp = sum(bad.get(e, False) for e in cited)
        prec = f"{tp / len(cited):.3f}{mark}" if cited else "-"
        cov = f"{tp / n_bad:.3f}" if group and n_bad else "-"
        kind = "corr" if r.id not in compiled else "agg" if compiled[r.id].aggregation else "det"
        print(f"{r.title[:62]:<62} {kind:<5} {hits[r.id]:>7,} {len(group):>7,} {len(cited):>7,} {prec:>10} {cov:>8}")
        if r.id in compiled and masked[r.id] != hits[r.id]:
            print(f"  warning: the engine counted {hits[r.id]:,} hits, the masks {masked[r.id]:,}")
    print("kind: det detection, agg detection with a Sigma count() aggregation, corr correlation (hits = fired)")
    print("m: precision of the matched events of a detection that feeds a correlation and does not alert alone")


def _time_order(frame: pd.DataFrame) -> np.ndarray:
    ts = frame["ts"]
    if pd.api.types.is_datetime64_any_dtype(ts):
        return np.argsort(ts.to_numpy(dtype="datetime64[ns]").astype(np.int64), kind="stable")
    return np.argsort(ts.to_numpy(dtype="float64"), kind="stable")


def cowrie(rules: list[Rule]) -> None:
    """Cowrie honeypot, all days."""
    files = sorted((DATA / "cowrie-2018" / "json").glob("cowrie.json.*"))
    print(f"\nCowrie: {len(files)} daily files, {files[0].name} .. {files[-1].name}, one run over all of them")
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
        evaluate(f"loghub {sub}/{file}, whole file (truth: failures from an rhost with >= 5)", [(frame, truth)], rules)


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
    print("\nMQTTset files (each file its own run):")
    parts = []
    for rel, attack in files:
        path = root / rel
        f = annotate_mqtt(PcapReader().read(path), path)
        f["event_id"] = rel + ":" + f["event_id"].astype(str)
        parts.append((f, pd.Series(np.full(len(f), attack))))
        fired = sorted({a.summary.split(":")[0] for a in RuleEngine(rules).run(f)})
        print(f"  {rel:<36} {'attack' if attack else 'benign'}: {len(f):>6} packets; rules fired: {fired or '-'}")
    evaluate("MQTTset (truth: file class)", parts, rules)


def iot23(rules: list[Rule]) -> None:
    """IoT-23 34-1 plus benign honeypot flows."""
    root = DATA / "iot23"
    parts = []
    print("\nIoT-23 Zeek conn.log.labeled files (each capture its own run, derived fields on):")
    for rel in (
        "CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled",
        "CTU-Honeypot-Capture-4-1/bro/conn.log.labeled",
        "CTU-Honeypot-Capture-5-1/bro/conn.log.labeled",
    ):
        frame = ZeekReader().read(root / rel)
        truth = frame["label"].map(is_malicious_label)
        parts.append((frame, truth))
        print(f"  {rel:<52} {len(frame):>7,} flows, {int(truth.sum()):>7,} malicious")
    evaluate("IoT-23 34-1 + honeypots 4-1, 5-1 (truth: Zeek labels)", parts, rules, enrich=True)
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
            print(f"  {path.name[:48]:<48} not here, skipped")
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


DENSE = """
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

SPARSE = """
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


def _one_core() -> str:
    """Pin this process to one CPU (where the OS allows it); say which."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _rate(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Events/s from the mean CPU time of ``repeat`` consecutive calls after one warm-up.

    Each call's result stays alive until the next one returns (as a consumer holding the last
    batch of alerts would), and the mean rather than the best counts every garbage collection
    the calls cause.
    """
    keep = fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        keep = fn()
        times.append(time.process_time() - t0)
    del keep
    return n / statistics.mean(times)


def _line(label: str, rate: float, note: str = "", target: bool | None = None) -> None:
    verdict = "" if target is None else f"  target >= 500k events/s: {'met' if rate >= TARGET else 'MISSED'}"
    print(f"{label:<44} {rate:>12,.0f} events/s{verdict}{'  ' + note if note else ''}")


def _single(ruleset: Iterable[Rule], rows: list[dict[str, object]]) -> float:
    engine = RuleEngine(ruleset)
    t0 = time.process_time()
    for r in rows:
        engine.process_one(r)
    return len(rows) / (time.process_time() - t0)


def throughput(n: int, singles: int, repeat: int = 5) -> None:
    """Events/s of the engine on batches, micro-batches and single events."""
    pinned = _one_core()
    frame = synthetic(n)
    dense, sparse, pack = parse_rules(DENSE), parse_rules(SPARSE), builtin_pack()
    print(f"\n## Throughput: synthetic packet events (seed 0), {n:,} events over one day, 1,000 entities")
    print(f"one core ({pinned}); events / CPU-second, mean of {repeat} consecutive runs after a warm-up")
    view = FrameView(frame)
    for label, ruleset in (("dense", dense), ("sparse", sparse)):
        hits = [int(CompiledDetection(r.detection, r.logsource).mask(view).sum()) for r in ruleset]
        alerts = len(RuleEngine(ruleset).run(frame))
        print(f"{label} simple selections (3 rules): hits {hits}, {alerts:,} alerts (one per entity and 5 min)")
    compiled = [CompiledDetection(r.detection, r.logsource) for r in dense]

    def masks() -> None:
        v = FrameView(frame)
        for c in compiled:
            c.mask(v)

    eng_dense, eng_sparse, eng_pack = RuleEngine(dense), RuleEngine(sparse), RuleEngine(pack)
    _line("batch, simple selections, dense hits", _rate(lambda: eng_dense.run(frame), n, repeat), target=True)
    _line("batch, simple selections, sparse hits", _rate(lambda: eng_sparse.run(frame), n, repeat), target=True)
    _line("selection masks only (dense rules)", _rate(masks, n, repeat), "no alerts built")
    full = _rate(lambda: eng_pack.run(frame), n, max(1, repeat // 2))
    _line(f"batch, whole pack ({len(pack)} rules)", full, "no target in issue 5")
    chunks = [frame.iloc[i : i + 1000] for i in range(0, min(n, 100_000), 1000)]
    m = sum(len(c) for c in chunks)
    for label, ruleset in (("dense", dense), ("sparse", sparse)):
        micro = RuleEngine(ruleset)

        def stream(engine: RuleEngine = micro) -> list[Alert]:
            engine.reset()  # each pass a fresh stream, so its alerts are not suppressed as repeats
            return [a for c in chunks for a in engine.process(c)]

        rate = _rate(stream, m, 3)
        _line(f"micro-batches of 1,000, {label}", rate, f"{m:,} events; no target in issue 5")
    rows = frame.iloc[:singles].to_dict("records")
    for label, ruleset in (("dense rules", dense), ("sparse rules", sparse), (f"whole pack ({len(pack)})", pack)):
        _line(f"single events (process_one), {label}", _single(ruleset, rows), f"{singles:,} events; no target")


def main() -> None:
    """Command-line entry."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="throughput on 200k events, 500 single events")
    ap.add_argument("--no-data", action="store_true", help="throughput only")
    ap.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS), help="real data to evaluate")
    ap.add_argument("--events", type=int, help="events of the throughput runs (default 1M, 200k with --quick)")
    ap.add_argument("--singles", type=int, help="events of the single-event runs (default 2,000, 500 with --quick)")
    args = ap.parse_args()
    rules = _rules()
    print(f"rules: {len(rules)} ({len(builtin_pack())} built-in, the rest public SigmaHQ rules)")
    if not args.no_data:
        if not DATA.is_dir():
            print(f"real data not found at {DATA}; set MISUSE_DATA_DIR (skipping the evaluation)")
        else:
            steps = {"cowrie": cowrie, "loghub": loghub, "mqttset": mqttset, "iot23": iot23, "captures": captures}
            for name in args.datasets:
                steps[name](rules)
    n = args.events or (200_000 if args.quick else 1_000_000)
    throughput(n, args.singles or (500 if args.quick else 2000))


if __name__ == "__main__":
    main()
