"""The PostgreSQL store: several workers (two processors, two service instances) on one real database.

A PostgreSQL server is started from Debian's binaries (``/usr/lib/postgresql/<v>/bin``) in a temp
dir on a free port of 127.0.0.1, as an unprivileged user when the tests run as root (PostgreSQL
refuses root), and killed by PID at the end. Without the binaries the tests skip, or fail under
``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from misuse.alerts.model import Alert
from misuse.errors import StoreError
from misuse.pipeline import WindowModel
from misuse.service.app import create_app
from misuse.service.config import load_config
from misuse.service.loadgen import scan_events, steady_events
from misuse.service.metrics import Metrics
from misuse.service.stream import IngestReport, StreamProcessor, parse_objects
from misuse.store.duck import Store
from misuse.store.postgres import PgStore
from tests.service.conftest import N_ENTITIES, PASSWORDS, Broker, Project, Service, free_port, wait_port
from tests.service.mqtt_helpers import client, publish_events, wait_published

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:All-NaN:RuntimeWarning")


def pg_bin() -> Path:
    """Folder of the newest installed PostgreSQL server binaries; skip without, fail under CI=true."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found or not (found[-1].parent / "initdb").exists():
        msg = "PostgreSQL server not installed (Debian package postgresql: see Makefile SYSTEM_PACKAGES)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " and CI=true")
        pytest.skip(msg)
    return found[-1].parent


@dataclass
class PgServer:
    """A throw-away PostgreSQL cluster; ``url(db)`` names a database on it."""

    folder: Path
    port: int
    proc: subprocess.Popen[bytes]
    pid: int

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://misuse@127.0.0.1:{self.port}/{db}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)  # fast shutdown: disconnects clients, then exits
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    """PostgreSQL on 127.0.0.1:<free port>, data in a temp dir, run as an unprivileged user under root."""
    bindir = pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="misuse-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if any(u.pw_name == "postgres" for u in pwd.getpwall()) else "nobody"
        os.chown(folder, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    data = folder / "data"
    init = [str(bindir / "initdb"), "-D", str(data), "-U", "misuse", "--auth=trust", "-E", "UTF8", "--no-sync"]
    subprocess.run(prefix + init, check=True, capture_output=True, cwd=folder)
    port = free_port()
    server = [
        str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
    ]  # fmt: skip
    proc = subprocess.Popen(
        prefix + server, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_port(port, timeout=30)
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except BaseException:
        proc.kill()
        raise
    srv = PgServer(folder, port, proc, pid)
    try:
        yield srv
    finally:
        srv.stop()


_DBS = iter(range(1000))


@pytest.fixture
def pg_url(pg: PgServer, project: Project) -> str:
    """A fresh database with the project's trained model registered in it."""
    url = pg.create_db(f"t{next(_DBS)}")
    with PgStore(url, project.root) as store:
        store.register_model("steady", "window", WindowModel.load(project.root / "models" / "steady").info)
    return url


def traffic(start: float) -> list[dict[str, Any]]:
    """4 s of steady traffic from every device plus a port scan by dev-005, in time order."""
    events = list(steady_events(N_ENTITIES, 400.0, start, 4.0)) + scan_events("dev-005", start + 1.2, n=300, span=0.3)
    return sorted(events, key=lambda e: e["ts"])


def owner(entity: str) -> int:
    """Which of two workers an entity is routed to (entity affinity)."""
    return int(entity.rsplit("-", 1)[1]) % 2


def run_worker(
    proc: StreamProcessor, batches: list[list[dict[str, Any]]], start: threading.Barrier, out: list[IngestReport]
) -> None:
    start.wait()
    for b in batches:
        out.append(proc.ingest(parse_objects(b, "test", "http", time.time()), "http"))


def test_schema_version_is_recorded_and_a_newer_schema_refused(pg: PgServer, tmp_path: Path) -> None:
    # prepare
    url = pg.create_db("schema")
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            PgStore(url, tmp_path).close()
        except BaseException as exc:
            errors.append(exc)

    # execute: workers starting together create the tables once, under the advisory lock
    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with PgStore(url, tmp_path) as store:
        version = store.schema_version()
        store.con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    # assert
    assert not errors and version == 1
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        PgStore(url, tmp_path)
    with pytest.raises(StoreError, match=r"cannot connect.*127\.0\.0\.1") as info:
        PgStore(f"postgresql://misuse:s3cret@127.0.0.1:{free_port()}/x", tmp_path)
    assert "s3cret" not in str(info.value)


def deliver(
    procs: list[StreamProcessor], batches: list[list[list[dict[str, Any]]]], cross: list[list[dict[str, Any]]]
) -> list[IngestReport]:
    """Feed each worker its batches (one after the other), then the cross deliveries, then flush."""
    reports: list[IngestReport] = []
    for p, bs in zip(procs, batches, strict=True):
        reports += [p.ingest(parse_objects(b, "test", "http", time.time()), "http") for b in bs]
    for p, c in zip(procs, cross, strict=True):
        reports.append(p.ingest(parse_objects(c, "test", "http", time.time()), "http"))
    return reports + [p.flush() for p in procs]


def windows(con: Any) -> list[tuple[str, float, int, float | None]]:
    rows = con.execute("SELECT entity, window_start, n_events, score FROM stream_windows ORDER BY entity, window_start")
    return [(str(e), float(w), int(n), None if s is None else float(s)) for e, w, n, s in rows.fetchall()]


def test_two_workers_on_one_database_lose_and_double_nothing(pg_url: str, project: Project, tmp_path: Path) -> None:
    # prepare: entity-affine routing; a third of the events redelivered to their worker in a later
    # batch, and every 10th also delivered to the other worker after the first finished
    one_root = shutil.copytree(project.root, tmp_path / "one-worker")
    events = traffic(time.time() - 10)
    batches: list[list[list[dict[str, Any]]]] = [[], []]
    for w in (0, 1):
        mine = [e for e in events if owner(e["entity"]) == w]
        for i in range(0, len(mine), 150):
            batches[w].append(mine[i : i + 150] + mine[max(0, i - 150) : i : 3])
    cross = [[e for e in events[::10] if owner(e["entity"]) != w] for w in (0, 1)]
    stores = [PgStore(pg_url, project.root) for _ in (0, 1)]
    announced: list[list[Alert]] = [[], []]
    procs = [StreamProcessor(s, threading.RLock(), Metrics(), worker=f"w{i}") for i, s in enumerate(stores)]
    for i, p in enumerate(procs):
        p.load_model()
        p.on_alert = announced[i].append
    # execute: both workers at once, then the cross deliveries, then shutdown flushes
    barrier = threading.Barrier(2)
    reports: list[IngestReport] = []
    threads = [threading.Thread(target=run_worker, args=(procs[w], batches[w], barrier, reports)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cross_reports = [procs[w].ingest(parse_objects(cross[w], "test", "http", time.time()), "http") for w in (0, 1)]
    for p in procs:
        p.flush()
    con = stores[0].con
    stored = con.execute("SELECT count(*), count(DISTINCT event_id) FROM stream_events").fetchone()
    pg_windows = windows(con)
    alert_ids = [r[0] for r in con.execute("SELECT alert_id FROM alerts").fetchall()]
    event_workers = con.execute("SELECT entity, worker_id FROM stream_events").fetchall()
    for s in stores:
        s.close()
    # references on DuckDB, one process: (a) the same deliveries to two workers, one after the other;
    # (b) every event in one batch to one worker, for the window counts
    with Store(project.root) as ref_store:
        refs = [StreamProcessor(ref_store, threading.RLock(), Metrics()) for _ in (0, 1)]
        for r in refs:
            r.load_model()
        same = deliver(refs, batches, cross)
        same_windows = windows(ref_store.con)
    with Store(one_root) as one_store:
        one = StreamProcessor(one_store, threading.RLock(), Metrics())
        one.load_model()
        deliver([one], [[events]], [[]])
        one_windows = windows(one_store.con)
    # assert: every event stored once and counted in exactly one window, every alert stored and announced once
    assert stored == (len(events), len(events)) and sum(r.accepted for r in reports) == len(events)
    assert sum(n for _, _, n, _ in pg_windows) == len(events) and all(s is not None for *_, s in pg_windows)
    assert [r.accepted for r in cross_reports] == [0, 0] and sum(r.duplicates for r in cross_reports) > 0
    assert all(w == f"w{owner(e)}" for e, w in event_workers)
    both = [a.alert_id for a in announced[0] + announced[1]]
    assert len(both) == len(set(both)) and set(both) == set(alert_ids)
    # the concurrent PostgreSQL run is exactly the sequential DuckDB run of the same deliveries:
    # the same windows with the same counts and scores, the same alerts
    assert pg_windows == same_windows
    assert sorted(alert_ids) == sorted(a.alert_id for r in same for a in r.alerts)
    # and it windows events as one worker fed everything at once does (scores are not compared with that
    # run: a window's features can differ in the last bit with the other windows scored in the same
    # call, see docs/service.md)
    assert [w[:3] for w in pg_windows] == [w[:3] for w in one_windows]
    assert any(a.entity == "dev-005" for a in announced[1])


def test_the_same_events_at_two_workers_at_once_are_stored_and_counted_once(pg_url: str, project: Project) -> None:
    # prepare: no routing -- both workers receive every event of the same stream at the same time
    events = traffic(time.time() - 10)
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    stores = [PgStore(pg_url, project.root) for _ in (0, 1)]
    announced: list[Alert] = []
    lock = threading.Lock()

    def note(a: Alert) -> None:
        with lock:
            announced.append(a)

    procs = [StreamProcessor(s, threading.RLock(), Metrics(), worker=f"w{i}") for i, s in enumerate(stores)]
    for p in procs:
        p.load_model()
        p.on_alert = note
    # execute
    barrier = threading.Barrier(2)
    reports: list[list[IngestReport]] = [[], []]
    threads = [threading.Thread(target=run_worker, args=(p, batches, barrier, reports[i])) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.flush()
    con = stores[0].con
    stored = con.execute("SELECT count(*), count(DISTINCT event_id) FROM stream_events").fetchone()
    in_windows = con.execute("SELECT sum(n_events) FROM stream_windows").fetchone()
    n_alerts = con.execute("SELECT count(*), count(DISTINCT alert_id) FROM alerts").fetchone()
    for s in stores:
        s.close()
    # assert: each event in exactly one (part of a) window; no alert stored or announced twice
    accepted = [sum(r.accepted for r in rs) for rs in reports]
    assert stored == (len(events), len(events)) and sum(accepted) == len(events)
    assert sum(r.duplicates for rs in reports for r in rs) == len(events)
    assert in_windows is not None and int(in_windows[0]) == len(events)
    ids = [a.alert_id for a in announced]
    assert len(ids) == len(set(ids)) == n_alerts[0] == n_alerts[1]  # type: ignore[index]


def test_a_restarted_worker_replays_only_its_own_open_windows(pg_url: str, project: Project) -> None:
    # prepare: both workers hold open windows; worker 0 dies without closing them
    events = traffic(time.time() - 10)
    stores = [PgStore(pg_url, project.root) for _ in (0, 1)]
    procs = [StreamProcessor(s, threading.RLock(), Metrics(), worker=f"w{i}") for i, s in enumerate(stores)]
    for w, p in enumerate(procs):
        p.load_model()
        p.ingest(parse_objects([e for e in events if owner(e["entity"]) == w], "t", "http", time.time()), "http")
    open_before = procs[0].open_events()
    stores[0].close()
    # execute
    stores[0] = PgStore(pg_url, project.root)
    procs[0] = StreamProcessor(stores[0], threading.RLock(), Metrics(), worker="w0")
    procs[0].load_model()
    replayed = procs[0].recover()
    for p in procs:
        p.flush()
    total = stores[1].con.execute("SELECT sum(n_events) FROM stream_windows").fetchone()
    for s in stores:
        s.close()
    # assert
    assert open_before > 0 and replayed == open_before
    assert total is not None and int(total[0]) == len(events)


def test_two_service_instances_share_alerts_feedback_and_dead_letters(pg_url: str, project: Project) -> None:
    # prepare: two apps on one database, events routed to them by entity
    apps = [
        create_app(
            load_config(
                {"project": project.root, "mqtt_enabled": False, "store_url": pg_url, "worker_id": f"api-{i}"},
                env={},
            ),
            start_workers=False,
        )
        for i in (0, 1)
    ]
    viewer = {"Authorization": f"Bearer {project.tokens['viewer']}"}
    analyst = {"Authorization": f"Bearer {project.tokens['analyst']}"}
    events = traffic(time.time() - 10)
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        clients = [a, b]
        # execute
        for w, c in enumerate(clients):
            mine = [e for e in events if owner(e["entity"]) == w]
            for i in range(0, len(mine), 400):
                r = c.post("/api/events", json={"events": mine[i : i + 400]}, headers=analyst)
                assert r.status_code == 200, r.text
            c.app.state.service.processor.flush()  # type: ignore[attr-defined]
        bad = b.post("/api/events", json={"events": [{"entity": "x"}, events[0]]}, headers=analyst).json()
        listed = [c.get("/api/alerts?limit=1000", headers=viewer).json() for c in clients]
        top = max(a.get("/api/alerts?entity=dev-005", headers=viewer).json()["alerts"], key=lambda x: x["score"])
        ack = b.post(f"/api/alerts/{top['alert_id']}/ack", headers=analyst)
        fb = b.post(f"/api/alerts/{top['alert_id']}/feedback", json={"verdict": "true_positive"}, headers=analyst)
        detail = a.get(f"/api/alerts/{top['alert_id']}", headers=viewer).json()
        stats = [c.get("/api/stream/stats", headers=viewer).json() for c in clients]
        entities = a.get("/api/entities", headers=viewer).json()
        prof = b.get("/api/entities/dev-005/profile", headers=viewer).json()
        dead = a.get("/api/dead-letters", headers=viewer).json()
        models = a.get("/api/models", headers=viewer).json()
        health = a.get("/api/health").json()
    # assert: both instances read the same state, whichever wrote it
    ids = [[x["alert_id"] for x in lst["alerts"]] for lst in listed]
    assert listed[0]["total"] == listed[1]["total"] == len(ids[0]) > 0 and sorted(ids[0]) == sorted(ids[1])
    assert len(set(ids[0])) == len(ids[0])
    assert bad["accepted"] == 0 and bad["duplicates"] == 1 and bad["dead_letters"] == 1
    assert ack.status_code == 200 and fb.status_code == 200
    assert detail["status"] == "acknowledged" and detail["feedback"][0]["verdict"] == "true_positive"
    assert detail["evidence_events"] and detail["contributions"]
    for s in stats:
        assert s["events_stored"] == s["events_scored"] == len(events) and s["open_window_events"] == 0
        assert s["alerts"] == len(ids[0]) and s["dead_letters"] == 1
    assert {e["entity"] for e in entities} == {f"dev-{i:03d}" for i in range(N_ENTITIES)}
    assert sum(map(sum, prof["activity"])) == prof["events"] == sum(e["entity"] == "dev-005" for e in events)
    assert prof["actions"][0] == {"name": "tcp", "count": 300}
    assert len(dead) == 1 and "ts" in dead[0]["reason"]
    assert [m["name"] for m in models] == ["steady"] and models[0]["active"]
    assert health["store"] is True and health["model"] == "steady"


@pytest.mark.service
def test_two_serve_processes_split_mqtt_topics_onto_one_database(
    pg_url: str, project: Project, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prepare: two `misuse serve` processes, each subscribed to one part of the gateway's topics
    svcs = [Service(project, broker, free_port()) for _ in (0, 1)]
    events = traffic(time.time() - 10)
    pub = client(broker.port, "gateway-1", PASSWORDS["gateway-1"], "gateway-1-test")
    monkeypatch.setenv("MISUSE_STORE_URL", pg_url)
    try:
        starts = []
        for w, s in enumerate(svcs):  # started side by side: the environment is read at Popen
            monkeypatch.setenv("MISUSE_MQTT_CLIENT_ID", f"misuse-worker-{w}")
            monkeypatch.setenv("MISUSE_MQTT_TOPICS", f"misuse/events/gateway-1/part{w}")
            starts.append(threading.Thread(target=s.start))
            starts[-1].start()
            time.sleep(0.5)
        for t in starts:
            t.join()
        assert all(s.proc is not None and s.proc.poll() is None for s in svcs), svcs[0].log()
        # execute: each part published once, and its first 300 events a second time (a redelivery)
        infos = []
        for w in (0, 1):
            mine = [e for e in events if owner(e["entity"]) == w]
            infos += publish_events(pub, mine + mine[:300], f"misuse/events/gateway-1/part{w}", batch=50)
        wait_published(infos)
        end = time.monotonic() + 40
        while True:
            stats = [s.get("/api/stream/stats") for s in svcs]
            if all(st["events_scored"] >= len(events) and st["open_window_events"] == 0 for st in stats):
                break
            assert time.monotonic() < end, f"stream did not settle: {stats}\n{svcs[0].log()}"
            time.sleep(0.3)
        listed = [s.get("/api/alerts?limit=1000") for s in svcs]
        health = [s.get("/api/health") for s in svcs]
    finally:
        pub.disconnect()
        pub.loop_stop()
        for s in svcs:
            s.stop()
    # assert: every event stored and scored once; both processes list the same alerts, once each
    for st in stats:
        assert st["events_stored"] == st["events_in_closed_windows"] == st["events_scored"] == len(events)
    ids = [sorted(a["alert_id"] for a in lst["alerts"]) for lst in listed]
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0]) == listed[0]["total"] > 0
    assert any(a["entity"] == "dev-005" for a in listed[0]["alerts"])
    assert all(h["store"] and h["mqtt"] == "connected" for h in health)
