"""Streaming-store benchmark: one DuckDB worker vs 1 and 2 worker processes on one PostgreSQL.

Every configuration streams the same synthetic events (``misuse.service.loadgen``, seed 0:
``--entities`` devices, ``--rate`` events/s of event time for ``--seconds``, plus a port scan)
through :class:`misuse.service.stream.StreamProcessor` in batches of ``--batch`` (the service's
``batch_max``), with the same trained window model; with several workers each entity goes to one
worker (entity-affine routing, as ``mqtt_topics`` does by publisher). Prints, per configuration:
events/s from the start signal until every worker has flushed, events stored, events in scored
windows and alerts (total and distinct), and whether the alert ids equal the DuckDB run's.

Without ``--store-url`` a throw-away PostgreSQL cluster is started from Debian's binaries
(``/usr/lib/postgresql/<v>/bin``) on a free port of 127.0.0.1 and removed afterwards; with one, a
database ``misuse_bench_<pid>`` is created on that server and dropped afterwards. Usage:
``python benchmarks/service_store.py [--store-url postgresql://user@host:5432/postgres]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from misuse.pipeline import WindowModel
from misuse.service.loadgen import scan_events, steady_events, train_steady_model
from misuse.service.metrics import Metrics
from misuse.service.stream import StreamProcessor, parse_objects
from misuse.store.duck import Store
from misuse.store.postgres import PgStore


def events_for(args: argparse.Namespace, start: float) -> list[dict[str, Any]]:
    evs = list(steady_events(args.entities, args.rate, start, args.seconds))
    evs += scan_events("dev-003", start + args.seconds / 2, n=300, span=0.3)
    return sorted(evs, key=lambda e: e["ts"])


def owner(entity: str, workers: int) -> int:
    return int(entity.rsplit("-", 1)[1]) % workers


def run(store: Any, worker: str, events: list[dict[str, Any]], batch: int) -> list[str]:
    """Stream events through one processor in batches, flush; the ids of the alerts it announced."""
    proc = StreamProcessor(store, threading.RLock(), Metrics(), worker=worker)
    proc.load_model()
    alerts: list[str] = []
    for i in range(0, len(events), batch):
        rep = proc.ingest(parse_objects(events[i : i + batch], "bench", "http", time.time()), "http")
        alerts += [a.alert_id for a in rep.alerts]
    alerts += [a.alert_id for a in proc.flush().alerts]
    return alerts


def pg_worker(url: str, root: str, args: argparse.Namespace, start: float, w: int, go: Any, out: Any) -> None:
    mine = [e for e in events_for(args, start) if owner(e["entity"], args.workers_now) == w]
    with PgStore(url, root) as store:
        go.wait()
        t0 = time.perf_counter()
        alerts = run(store, f"w{w}", mine, args.batch)
        out.put((w, time.perf_counter() - t0, alerts))


def measure_pg(url: str, root: Path, args: argparse.Namespace, start: float, workers: int) -> dict[str, Any]:
    import psycopg

    with PgStore(url, root) as store:
        for t in ("stream_events", "stream_windows", "alerts", "dead_letters"):
            store.con.execute(f"DROP TABLE IF EXISTS {t}")
    with PgStore(url, root) as store:  # recreate the store's tables, register the model
        store.register_model("steady", "window", WindowModel.load(root / "models" / "steady").info)
    ctx = mp.get_context("spawn")
    go, out = ctx.Barrier(workers + 1), ctx.Queue()
    args.workers_now = workers
    procs = [ctx.Process(target=pg_worker, args=(url, str(root), args, start, w, go, out)) for w in range(workers)]
    for p in procs:
        p.start()
    go.wait()
    t0 = time.perf_counter()
    results = [out.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    with psycopg.connect(url) as con:
        stored = con.execute("SELECT count(*), count(DISTINCT event_id) FROM stream_events").fetchone()
        windows = con.execute("SELECT sum(n_events) FILTER (WHERE score IS NOT NULL) FROM stream_windows").fetchone()
        ids = [r[0] for r in con.execute("SELECT alert_id FROM alerts").fetchall()]
    announced = [a for _, _, al in results for a in al]
    return {
        "wall": wall,
        "stored": stored,
        "scored": int(windows[0]) if windows and windows[0] is not None else 0,
        "alerts": (len(ids), len(set(ids)), len(announced)),
        "ids": set(ids),
    }


class Cluster:
    """A throw-away PostgreSQL cluster in a temp dir (as ``postgres``/``nobody`` under root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
        if not found:
            raise SystemExit("PostgreSQL server not installed (Debian package postgresql) and no --store-url given")
        bindir = found[-1].parent
        self.folder = Path(tempfile.mkdtemp(prefix="misuse-pg-bench-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if any(u.pw_name == "postgres" for u in pwd.getpwall()) else "nobody"
            os.chown(self.folder, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            prefix = ["runuser", "-u", user, "--"]
        data = self.folder / "data"
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "misuse", "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
            cwd=self.folder,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1"],
            cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        end = time.monotonic() + 30
        while not (data / "postmaster.pid").exists() or not self._listening():
            if time.monotonic() > end:
                raise SystemExit("PostgreSQL did not start")
            time.sleep(0.1)
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        self.url = f"postgresql://misuse@127.0.0.1:{self.port}/postgres"

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGINT)
        self.proc.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store-url", default="", help="A PostgreSQL server to use (a database is created on it).")
    ap.add_argument("--entities", type=int, default=50)
    ap.add_argument("--rate", type=float, default=2000.0, help="Events per second of event time.")
    ap.add_argument("--seconds", type=float, default=30.0, help="Event time span.")
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    import psycopg

    cluster = None if args.store_url else Cluster()
    server = args.store_url or (cluster.url if cluster else "")
    db = f"misuse_bench_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{db}"')
    url = server.rsplit("/", 1)[0] + "/" + db
    tmp = Path(tempfile.mkdtemp(prefix="misuse-store-bench-"))
    try:
        root = tmp / "project"
        start = time.time() - args.seconds - 30
        with Store(root) as store:
            train_steady_model(store, "steady", n_entities=args.entities, rate=args.rate, window=1.0, windows=60)
        events = events_for(args, start)
        print(f"data: synthetic steady traffic, {args.entities} devices, {len(events):,} events "
              f"({args.seconds:g} s at {args.rate:g} events/s + one 300-event scan), seed 0, window 1 s, "
              f"batches of {args.batch}")  # fmt: skip
        with Store(root) as store:
            t0 = time.perf_counter()
            ref = run(store, "", events, args.batch)
            wall = time.perf_counter() - t0
            n = store.con.execute("SELECT count(*) FROM stream_events").fetchone()
        print(f"duckdb   1 worker : {len(events) / wall:8,.0f} events/s ({wall:.1f} s); stored {n[0] if n else 0:,}; "
              f"alerts {len(ref)} (distinct {len(set(ref))})")  # fmt: skip
        for workers in (1, 2):
            r = measure_pg(url, root, args, start, workers)
            same = "yes" if r["ids"] == set(ref) else "NO"
            print(
                f"postgres {workers} worker{'s' if workers > 1 else ' '}: {len(events) / r['wall']:8,.0f} events/s "
                f"({r['wall']:.1f} s); stored {r['stored'][0]:,} (distinct {r['stored'][1]:,}); "
                f"scored {r['scored']:,}; alerts {r['alerts'][0]} (distinct {r['alerts'][1]}, announced "
                f"{r['alerts'][2]}); same alert ids as duckdb: {same}"
            )
    finally:
        with psycopg.connect(server, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
