"""Load benchmark of the live service through a real Mosquitto on 127.0.0.1.

Starts the broker from the shipped config (password file + ACL, temp dir, free port), trains a
window model on synthetic steady traffic, runs ``misuse serve`` as a subprocess, then publishes
events with QoS 1 at ``--rate`` events/s for ``--seconds`` (JSON arrays of ``--batch`` events per
message, as a gateway sends them), with a port scan injected every 10 s. Prints:

- events published / stored / scored (zero loss means all three equal),
- sustained publish rate and the rate the worker kept up with,
- p50/p99 event-to-commit latency (publish time -> committed in the store, from the store),
- p50/p99 event-to-alert latency (end of the alert's window -> alert received on the MQTT alert
  topic; event time is the publish wall clock, so this is how long after the window could last
  receive an event the alert reaches a subscriber),
- the alerts by detector (rule title or window model), split into those on an injected scan (the
  scanned device, a window or rule span holding the scan's time) and those on the benign
  synthetic traffic.

Data: synthetic (``misuse.service.loadgen``), seed 0. Usage:
``python benchmarks/service.py --seconds 60 --rate 5000``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import paho.mqtt.client as mqtt

from misuse.rules import builtin_pack
from misuse.service.auth import TokenStore
from misuse.service.loadgen import scan_events, steady_events, train_steady_model
from misuse.store.duck import Store

SHIPPED = Path(__file__).resolve().parent.parent / "misuse" / "service" / "mosquitto"
USERS = {"misuse-worker": "w-pw", "gateway-1": "g-pw", "misuse-reader": "r-pw"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing on 127.0.0.1:{port}")


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd = shutil.which("mosquitto_passwd")
    if not Path(binary).exists() or passwd is None:
        sys.exit("mosquitto and mosquitto_passwd are needed (Debian package mosquitto)")
    (folder / "data").mkdir(parents=True)
    for i, (u, p) in enumerate(USERS.items()):
        subprocess.run([passwd, "-b", *(["-c"] if i == 0 else []), str(folder / "pw"), u, p], check=True)
    shutil.copy(SHIPPED / "misuse.acl", folder / "acl")
    port = free_port()
    conf = (SHIPPED / "mosquitto.conf").read_text()
    conf = (
        conf.replace("/etc/mosquitto/misuse.passwd", str(folder / "pw"))
        .replace("/etc/mosquitto/misuse.acl", str(folder / "acl"))
        .replace("/var/lib/mosquitto/", f"{folder / 'data'}/")
        .replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    ) + f"\nuser {getpass.getuser()}\n"
    (folder / "mosquitto.conf").write_text(conf)
    out = open(folder / "broker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([binary, "-c", str(folder / "mosquitto.conf")], stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    return proc, port


def mqtt_client(port: int, user: str, cid: str, persistent: bool) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=not persistent)
    c.username_pw_set(user, USERS[user])
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def get(port: int, path: str, token: str) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="events per second")
    ap.add_argument("--batch", type=int, default=50, help="events per MQTT message")
    ap.add_argument("--entities", type=int, default=50)
    ap.add_argument("--window", type=float, default=1.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="misuse-bench-"))
    broker, bport = start_broker(tmp / "broker")
    service: subprocess.Popen[bytes] | None = None
    try:
        project = tmp / "project"
        t0 = time.perf_counter()
        with Store(project) as store:
            train_steady_model(
                store, "steady", n_entities=args.entities, rate=args.rate, window=args.window, windows=100
            )
        print(
            f"model: iforest on 100 synthetic windows of {args.window:g}s x {args.entities} entities, seed 0 "
            f"({time.perf_counter() - t0:.1f}s)"
        )
        token = TokenStore(project / "tokens.json").create("bench", "viewer")
        (project / "mqtt.pw").write_text(USERS["misuse-worker"])
        hport = free_port()
        service = subprocess.Popen(
            [sys.executable, "-c", "from misuse.cli import main; main()", "serve", "--project", str(project),
             "--port", str(hport), "--mqtt-port", str(bport), "--mqtt-username", "misuse-worker",
             "--mqtt-password-file", str(project / "mqtt.pw"), "--log-level", "warning"],
            env={**os.environ, "MISUSE_IDLE_CLOSE": "1.0"},
            stdout=open(tmp / "serve.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        wait_port(hport)
        while get(hport, "/api/health", token)["mqtt"] != "connected":
            time.sleep(0.1)

        alerts: list[tuple[float, dict[str, Any]]] = []
        lock = threading.Lock()
        reader = mqtt_client(bport, "misuse-reader", "bench-reader", persistent=False)

        def on_alert(cl: Any, ud: Any, msg: Any) -> None:
            with lock:
                alerts.append((time.time(), json.loads(msg.payload)))

        reader.on_message = on_alert
        reader.subscribe("misuse/alerts/#", qos=1)
        gw = mqtt_client(bport, "gateway-1", "bench-gw", persistent=True)
        time.sleep(0.5)

        steady = list(steady_events(args.entities, args.rate, 0.0, args.seconds, prefix="b"))
        scans: dict[int, list[dict[str, Any]]] = {}
        for k, at in enumerate(np.arange(5.0, args.seconds - 2, 10.0)):
            idx = int(at * args.rate)
            scans[idx] = scan_events(f"dev-{(7 * k) % args.entities:03d}", 0.0, n=200, prefix=f"scan{k}")
        total = len(steady) + sum(len(s) for s in scans.values())
        print(
            f"publishing {total:,} events ({len(steady):,} steady + {total - len(steady)} scan) "
            f"at {args.rate:,.0f}/s in messages of {args.batch}, QoS 1 ..."
        )
        infos = []
        scanned_at: list[tuple[str, float]] = []  # (device, time of its scan)
        start = time.perf_counter()
        for i in range(0, len(steady), args.batch):
            lag = start + i / args.rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
            now = time.time()
            chunk = [{**e, "ts": now} for e in steady[i : i + args.batch]]
            for j in range(i, i + args.batch):
                if j in scans:
                    chunk += [{**e, "ts": now} for e in scans[j]]
                    scanned_at.append((scans[j][0]["entity"], now))
            infos.append(gw.publish("misuse/events/gateway-1", json.dumps(chunk), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
        sent = time.perf_counter() - start
        print(f"published in {sent:.1f}s: {total / sent:,.0f} events/s ({len(infos):,} messages)")

        end = time.monotonic() + 180
        stats: dict[str, Any] = {}
        while time.monotonic() < end:
            stats = get(hport, "/api/stream/stats", token)
            if stats["events_stored"] >= total and stats["open_window_events"] == 0:
                break
            time.sleep(0.2)
        drained = time.perf_counter() - start
        time.sleep(1.0)
        stats = get(hport, "/api/stream/stats", token)
        reader.loop_stop()
        gw.loop_stop()
        service.send_signal(signal.SIGINT)
        service.wait(timeout=30)
        service = None

        con = duckdb.connect(str(project / "misuse.duckdb"), read_only=True)
        lat = con.execute(
            "SELECT epoch(stored_at) - epoch(ts) FROM stream_events WHERE event_id NOT LIKE 'scan%'"
        ).fetchnumpy()
        dup = con.execute("SELECT count(*) - count(DISTINCT event_id) FROM stream_events").fetchone()
        commit = next(iter(lat.values()))
        scanned = {s[0]["entity"] for s in scans.values()}
        alert_lat = [t - time.mktime(time.strptime(a["window_end"][:19], "%Y-%m-%dT%H:%M:%S")) + _tz_offset()
                     for t, a in alerts]  # fmt: skip
        # a scanned device also raises alerts on its benign traffic (the flood rule fires on every device):
        # only alerts on the scan itself count as detecting it
        scan_alert = [on_scan(a, scanned_at) for _, a in alerts]
        scan_lat = [x for x, hit_scan in zip(alert_lat, scan_alert, strict=True) if hit_scan]
        hit = {a["entity"] for (_, a), hit_scan in zip(alerts, scan_alert, strict=True) if hit_scan} & scanned

        print("\n== results (synthetic steady traffic + scans, seed 0, 127.0.0.1, 2 shared cores) ==")
        print(f"events published      {total:,}")
        print(f"events stored         {stats['events_stored']:,}  (duplicates in store: {dup[0] if dup else '?'})")
        print(f"events scored         {stats['events_scored']:,}  (in {stats['windows']:,} windows)")
        print(f"zero loss             {stats['events_stored'] == total and stats['events_scored'] == total}")
        print(f"publish rate          {total / sent:,.0f} events/s over {sent:.1f}s")
        print(f"worker throughput     {total / drained:,.0f} events/s (all scored {drained:.1f}s after start)")
        print(f"event->commit latency p50 {pct(commit, 50) * 1000:.0f} ms, p99 {pct(commit, 99) * 1000:.0f} ms")
        print(f"window end->alert     p50 {pct(alert_lat, 50) * 1000:.0f} ms, p99 {pct(alert_lat, 99) * 1000:.0f} ms "
              f"({len(alerts)} alerts on MQTT)")  # fmt: skip
        print(
            f"scans detected        {len(hit)}/{len(scanned)} scanned devices alerted on their scan; scan alert "
            f"latency p50 {pct(scan_lat, 50) * 1000:.0f} ms"
        )
        print_breakdown([a for _, a in alerts], scan_alert)
    finally:
        if service is not None:
            service.kill()
            service.wait()
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def on_scan(alert: dict[str, Any], scanned_at: list[tuple[str, float]]) -> bool:
    """Whether an alert is on an injected scan: a rule alert whose evidence holds scan events, a
    window alert on the scanned device's window holding the scan's time."""
    if alert["detector"].startswith("rule:"):
        return any(str(e).startswith("scan") for e in alert["evidence"])
    lo, hi = (datetime.fromisoformat(alert[k]).timestamp() for k in ("window_start", "window_end"))
    return any(e == alert["entity"] and lo <= t < hi for e, t in scanned_at)


def print_breakdown(alerts: list[dict[str, Any]], scan_alert: list[bool]) -> None:
    """Alerts by detector (rule title or window model): on an injected scan or on benign traffic."""
    titles = {f"rule:{r.id}": f"rule: {r.title}" for r in builtin_pack()}
    counts: dict[str, list[int]] = {}
    for a, hit_scan in zip(alerts, scan_alert, strict=True):
        counts.setdefault(titles.get(a["detector"], a["detector"]), [0, 0])[0 if hit_scan else 1] += 1
    print("alerts by detector    on a scan / on benign synthetic traffic")
    for name, (scan, benign) in sorted(counts.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {name:48} {scan:>5,} / {benign:,}")
    print(f"  {'all':48} {sum(scan_alert):>5,} / {len(alerts) - sum(scan_alert):,}")


def _tz_offset() -> float:
    return -time.timezone if time.localtime().tm_isdst == 0 else -time.altzone


if __name__ == "__main__":
    main()
