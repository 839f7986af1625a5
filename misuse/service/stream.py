"""The streaming core, without any network: parse -> deduplicate -> store -> windows -> score -> alert.

Every source (MQTT messages, HTTP batches, tailed Zeek logs) ends in :meth:`StreamProcessor.ingest`.
It runs one transaction per batch on the store (the project's DuckDB file, or PostgreSQL shared by
several workers: :mod:`misuse.service.backends`): new events (by ``event_id``) are stored in
``stream_events``, buffered per entity until their window closes, and closed windows are
scored with :func:`misuse.pipeline.detect` -- the very function batch detection uses, on the same
window features (:func:`misuse.features.windows.window_features`) and the same trained
:class:`~misuse.pipeline.WindowModel`. Closed windows are recorded in ``stream_windows``; after a
restart the events of windows not yet closed are replayed from the store, so an event is neither
lost nor counted twice. An alert id is stored and announced once.

A batch whose transaction fails leaves no trace: it is rolled back, the windows are put back as
they were, and the events the rules already saw are not shown to them again when the batch is
retried (their alerts are stored with the next transaction that commits instead). So the caller
may simply retry the same batch, or leave it to be delivered again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import ParseError
from misuse.events import TS_LIMIT, events_to_frame, ts_ok
from misuse.ingest.native import parse_event_object
from misuse.pipeline import WindowModel, detect
from misuse.rules.engine import RuleEngine
from misuse.service.backends import AnyStore, stream_tables
from misuse.service.metrics import Metrics

log = logging.getLogger("misuse.service.stream")
DATASET = "stream"
DEFAULT_WINDOW = 60.0
MAX_RAW = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS_RANGE = "{:%Y-%m-%d} to {:%Y-%m-%d} UTC".format(*(_EPOCH + timedelta(seconds=s * TS_LIMIT) for s in (-1, 1)))
MAX_UNCOMMITTED_RULED = 100_000  # ids of events the rules saw in failed transactions, kept for their retry


@dataclass
class Parsed:
    """Events parsed from some payloads, and the payloads that were set aside.

    A dead letter is ``{"source", "line", "reason", "raw"}``; one set aside because its ``ts`` is
    outside the range the event model holds also has ``"field": "ts"`` and ``"value"`` (the value
    as sent; the reason quotes it, and only the four keys above are stored). Every source treats
    those like any other dead letter: the good events of the same message or HTTP batch are kept.
    """

    records: list[dict[str, object]] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Parsed) -> None:
        """Append another parse result."""
        self.records += other.records
        self.received += other.received
        self.dead += other.dead


@dataclass
class _Checkpoint:
    """The window state of some entities before a transaction, to put back if it fails."""

    watermark: float
    last_arrival: float
    windows: dict[str, tuple[float, list[dict[str, object]], int] | None]  # start, buffer, its length


@dataclass
class IngestReport:
    """What one call of :meth:`StreamProcessor.ingest` did."""

    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    windows_scored: int = 0
    alerts: list[Alert] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def event_id_of(obj: dict[str, Any]) -> str:
    """A stable id for an event object that has none: a hash of its canonical JSON."""
    canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return "h:" + hashlib.sha1(canon.encode()).hexdigest()[:20]


def ts_range_reason(value: object) -> str:
    """Why a ``ts`` outside :data:`misuse.events.TS_LIMIT` is refused (``value`` as it was sent)."""
    return (
        f"field 'ts' is out of range: {value!r} (the event model holds epoch seconds strictly between "
        f"-{TS_LIMIT:.3g} and {TS_LIMIT:.3g}, i.e. {_TS_RANGE})"
    )


def stored_ts_ok(rec: dict[str, Any]) -> bool:
    """True when a stored record's ``ts`` is a number the event model holds (rows stored by older
    versions, which did not check the range, may hold others)."""
    ts = rec.get("ts")
    return isinstance(ts, int | float) and not isinstance(ts, bool) and ts_ok(float(ts))


def parse_objects(objs: Iterable[Any], where: str, origin: str, received: float, raw: str = "") -> Parsed:
    """Validate event objects (see :func:`misuse.ingest.native.parse_event_object`).

    Bad objects become dead-letter samples with the reason -- among them events whose ``ts`` is
    outside the range the event model holds (:func:`misuse.events.ts_ok`), which the store, the
    window features and training could not represent; good ones get ``event_id`` (their own or a
    content hash) and ``source`` (``where`` when absent).
    """
    out = Parsed()
    for i, obj in enumerate(objs):
        sent = _sent_ts(obj)
        if sent is not None and not ts_ok(sent):
            value = obj["ts"]
            out.dead.append({**_dead(where, i, ts_range_reason(value), raw, obj), "field": "ts", "value": value})
            continue
        try:
            rec = parse_event_object(obj, f"{where}[{i}]")
        except ParseError as exc:
            out.dead.append(_dead(where, i, exc.reason, raw, obj))
            continue
        if "event_id" not in rec:
            rec["event_id"] = event_id_of(obj)
        rec.setdefault("source", f"{origin}:{where}")
        out.records.append(rec)
        out.received.append(received)
    return out


def _sent_ts(obj: Any) -> float | None:
    """An event object's ``ts`` as epoch seconds (a number, or ISO-8601 with a zone); None when it is
    not one -- :func:`parse_event_object` then says what is wrong with it."""
    v = obj.get("ts") if isinstance(obj, Mapping) else None
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt.timestamp() if dt.tzinfo is not None else None
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _dead(where: str, line: int, reason: str, raw: str, obj: Any) -> dict[str, Any]:
    return {"source": where, "line": line, "reason": reason, "raw": raw or json.dumps(obj, default=str)[:MAX_RAW]}


def parse_payload(payload: bytes, where: str, origin: str, received: float | None = None) -> Parsed:
    """Parse one message body: a JSON event object or a JSON array of them."""
    received = time.time() if received is None else received
    text = payload[:MAX_RAW].decode("utf-8", errors="replace")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = f"invalid JSON: {getattr(exc, 'msg', exc)}"
        return Parsed(dead=[{"source": where, "line": 0, "reason": reason, "raw": text}])
    objs = doc if isinstance(doc, list) else [doc]
    if not objs:
        return Parsed(dead=[{"source": where, "line": 0, "reason": "empty JSON array", "raw": text}])
    return parse_objects(objs, where, origin, received, raw=text if len(objs) == 1 else "")


class StreamProcessor:
    """Stateful per-entity stream detection on one store.

    Parameters
    ----------
    store:
        The store (DuckDB: this process is the single writer; PostgreSQL: shared by workers).
    lock:
        Guards every use of the store's connection (API threads and the worker share it).
    metrics:
        Counters to update.
    on_alert:
        Called with each new alert after its batch is committed (MQTT publish, SSE).
    default_window:
        Window length used while no model is active.
    worker:
        This worker's id; on PostgreSQL it marks the events it stores, so that after a restart it
        replays its own open windows only.
    """

    def __init__(
        self,
        store: AnyStore,
        lock: threading.RLock,
        metrics: Metrics,
        on_alert: Callable[[Alert], None] | None = None,
        default_window: float = DEFAULT_WINDOW,
        worker: str = "",
        rules: RuleEngine | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        # informational rules (a single failed or successful login...) feed the correlations; they are
        # not alerts an operator wants one of per login
        self._quiet_rules = {f"rule:{r.id}" for r in rules.rules if r.level == "informational"} if rules else set()
        self.lock = lock
        self.metrics = metrics
        self.on_alert = on_alert
        self.model: WindowModel | None = None
        self.model_name: str | None = None
        self.window = default_window
        self._buf: dict[str, list[dict[str, object]]] = {}
        self._start: dict[str, float] = {}
        self._watermark = -np.inf
        self._last_arrival = 0.0
        # events the rules saw in a transaction that failed, and the alerts they raised: a retry of the
        # batch must not feed them to the rules again (the rules' state cannot be rolled back)
        self._ruled: OrderedDict[str, None] = OrderedDict()
        self._ruled_alerts: list[Alert] = []
        with self.lock:
            self.tables = stream_tables(store, worker)

    # ----- model ------------------------------------------------------------------------------
    def load_model(self, name: str | None = None) -> str | None:
        """Load a stored model (default: the active window model); returns its name or None."""
        with self.lock:
            name = name or self.store.active_model("window")
            if name is None:
                return None
            model = WindowModel.load(self.store.model_dir(name))
            if self._buf and model.window != self.window:
                self._close(list(self._buf), time.time())
            self.model, self.model_name, self.window = model, name, model.window
        return name

    # ----- recovery -----------------------------------------------------------------------------
    def recover(self) -> int:
        """Replay stored events of windows not closed before a restart; returns how many."""
        replayed = 0
        with self.lock:
            for raw in self.tables.open_records(self.window):
                rec = json.loads(raw)
                if not stored_ts_ok(rec):
                    # stored before times were range-checked: replaying it would fail every later window
                    log.warning("not replaying event %s: %s", rec.get("event_id"), ts_range_reason(rec.get("ts")))
                    continue
                self._add(rec)
                replayed += 1
            self.metrics.set("misuse_open_window_events", self.open_events())
        return replayed

    def open_events(self) -> int:
        """Events buffered in windows not yet closed."""
        return sum(len(v) for v in self._buf.values())

    # ----- ingest -------------------------------------------------------------------------------
    def ingest(self, parsed: Parsed, origin: str) -> IngestReport:
        """Store, window and score one batch; one transaction. Alerts are announced after commit.

        When it raises, the batch left no trace (see the module docstring) and may be retried;
        the failure is counted in ``misuse_ingest_failures_total``.
        """
        report = IngestReport(dead_letters=len(parsed.dead), reasons=[d["reason"] for d in parsed.dead[:20]])
        t0 = time.perf_counter()
        with self.lock:
            con = self.store.con
            checkpoint: _Checkpoint | None = None
            fed: list[str] = []
            rule_alerts: list[Alert] = []
            con.begin()
            try:
                now = datetime.now(UTC)
                new, received = self._store_new(parsed, origin, now)
                report.duplicates = len(parsed.records) - len(new)
                checkpoint = self._checkpoint({str(r["entity"]) for r in new})
                closed: list[dict[str, object]] = []
                for rec in new:
                    closed += self._add(rec)
                report.windows_scored, report.alerts = self._score(closed, now) if closed else (0, [])
                if new and self.rules is not None:
                    fed, rule_alerts = self._run_rules(new)
                    if rule_alerts:
                        report.alerts += self.tables.add_new_alerts(rule_alerts, DATASET, "rules")
                if parsed.dead:
                    self._dead_letters(parsed.dead, origin)
                con.commit()
            except BaseException:
                if checkpoint is not None:
                    self._restore(checkpoint)
                if fed or rule_alerts:
                    self._ruled_uncommitted(fed, rule_alerts)
                    self.metrics.inc("misuse_rule_events_total", len(fed))  # they will not be fed again
                self.metrics.inc("misuse_ingest_failures_total", origin=origin)
                con.rollback()
                raise
            if new and self.rules is not None:
                self._ruled_committed(new)
            report.accepted = len(new)
            self.metrics.set("misuse_open_window_events", self.open_events())
        done = time.time()
        if parsed.records:
            self.metrics.inc("misuse_events_received_total", len(parsed.records), origin=origin)
        if parsed.dead:
            self.metrics.inc("misuse_dead_letters_total", len(parsed.dead), origin=origin)
        self.metrics.inc("misuse_events_stored_total", report.accepted)
        self.metrics.inc("misuse_events_duplicate_total", report.duplicates)
        if fed:
            self.metrics.inc("misuse_rule_events_total", len(fed))
        if closed:
            self._count_scored(report.windows_scored, len(closed))
        self.metrics.observe("misuse_batch_seconds", time.perf_counter() - t0)
        self.metrics.observe_many("misuse_event_lag_seconds", [done - r for r in received])
        self._announce(report.alerts)
        return report

    def close_idle(self, grace: float, now: float | None = None) -> IngestReport:
        """Close windows of silent entities.

        A window closes once the stream's event time (the newest ``ts`` seen) is ``grace`` seconds
        past its end -- so a backlog replayed after a restart closes windows by its own clock -- or,
        when nothing arrived for ``grace`` seconds, once the wall clock is.
        """
        now = time.time() if now is None else now
        cutoff = self._watermark - grace
        if now - self._last_arrival >= grace:
            cutoff = max(cutoff, now - grace)
        report = IngestReport()
        with self.lock:
            due = [e for e, s in self._start.items() if s + self.window <= cutoff]
            if not due:
                return report
            report.windows_scored, report.alerts = self._close(due, min(now, time.time()))
            self.metrics.set("misuse_open_window_events", self.open_events())
        self._announce(report.alerts)
        return report

    def flush(self) -> IngestReport:
        """Close every open window now (shutdown of a finite stream, tests, benchmarks)."""
        return self.close_idle(0.0, now=float("inf"))

    # ----- internals ----------------------------------------------------------------------------
    def _announce(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.metrics.inc("misuse_alerts_total", misuse_type=a.misuse_type)
            if self.on_alert is not None:
                self.on_alert(a)

    def _store_new(self, parsed: Parsed, origin: str, now: datetime) -> tuple[list[dict[str, object]], list[float]]:
        """Store the batch's events not stored before (by ``event_id``); return them, in batch order."""
        seen: set[str] = set()
        recs: list[dict[str, object]] = []
        rec_t: list[float] = []
        for rec, t in zip(parsed.records, parsed.received, strict=True):
            eid = str(rec["event_id"])
            if eid not in seen:
                seen.add(eid)
                recs.append(rec)
                rec_t.append(t)
        if not recs:
            return [], []
        stored = self.tables.insert_new(recs, rec_t, origin, now)
        if len(stored) == len(recs):
            return recs, rec_t
        keep = [i for i, r in enumerate(recs) if str(r["event_id"]) in stored]
        return [recs[i] for i in keep], [rec_t[i] for i in keep]

    def _add(self, rec: dict[str, object]) -> list[dict[str, object]]:
        """Buffer one record; return the records of the window it closed (same rule as StreamingWindows)."""
        entity = str(rec["entity"])
        ts = float(rec["ts"])  # type: ignore[arg-type]
        self._watermark = max(self._watermark, ts)
        self._last_arrival = time.time()
        w = float(np.floor(ts / self.window) * self.window)
        start = self._start.get(entity)
        closed: list[dict[str, object]] = []
        if start is not None and w > start:
            closed = self._take(entity)
            start = None
        self._start[entity] = w if start is None else start
        self._buf.setdefault(entity, []).append(rec)
        return closed

    def _take(self, entity: str) -> list[dict[str, object]]:
        self._start.pop(entity, None)
        return self._buf.pop(entity, [])

    def _checkpoint(self, entities: Iterable[str]) -> _Checkpoint:
        windows: dict[str, tuple[float, list[dict[str, object]], int] | None] = {}
        for e in entities:
            buf = self._buf.get(e)
            windows[e] = None if buf is None else (self._start[e], buf, len(buf))
        return _Checkpoint(self._watermark, self._last_arrival, windows)

    def _restore(self, checkpoint: _Checkpoint) -> None:
        """Put the windows back as they were at the checkpoint (a buffer only ever grows at its end,
        and a window taken out of the buffers keeps its list)."""
        self._watermark, self._last_arrival = checkpoint.watermark, checkpoint.last_arrival
        for e, was in checkpoint.windows.items():
            if was is None:
                self._start.pop(e, None)
                self._buf.pop(e, None)
            else:
                start, buf, n = was
                del buf[n:]
                self._start[e], self._buf[e] = start, buf

    def _close(self, entities: list[str], now: float) -> tuple[int, list[Alert]]:
        """Close these entities' windows and score them in one transaction; if it fails they stay open."""
        checkpoint = self._checkpoint(entities)
        closed = [rec for e in entities for rec in self._take(e)]
        if not closed:
            return 0, []
        con = self.store.con
        con.begin()
        try:
            res = self._score(closed, datetime.fromtimestamp(now, tz=UTC))
            con.commit()
        except BaseException:
            self._restore(checkpoint)
            self.metrics.inc("misuse_ingest_failures_total", origin="window-close")
            con.rollback()
            raise
        self._count_scored(res[0], len(closed))
        return res

    def _count_scored(self, windows: int, events: int) -> None:
        self.metrics.inc("misuse_windows_scored_total", windows)
        if self.model is not None:
            self.metrics.inc("misuse_events_scored_total", events)

    def _score(self, closed: list[dict[str, object]], now: datetime) -> tuple[int, list[Alert]]:
        """Score the windows of the closed records in one call of the batch code; record them."""
        events = events_to_frame(closed)
        alerts: list[Alert] = []
        if self.model is not None:
            name = f"window-{self.model.info.get('detector', 'model')}"
            alerts, scored = detect(self.model, events, detector_name=name)
            rows = pd.DataFrame(
                {
                    "entity": scored["entity"].astype(str),
                    "window_start": scored["window_start"].astype("int64") / 1e9,
                    "n_events": scored["n_events"].astype("int64"),
                    "score": scored["score"].astype("float64"),
                    "alarm": scored["alarm"].astype(bool),
                }
            )
        else:
            ws = np.floor(events["ts"].astype("int64").to_numpy() / 1e9 / self.window) * self.window
            rows = (
                pd.DataFrame({"entity": events["entity"].astype(str), "window_start": ws})
                .groupby(["entity", "window_start"], as_index=False)
                .size()
                .rename(columns={"size": "n_events"})
                .assign(score=np.nan, alarm=False)
            )
        rows = rows.assign(model=self.model_name or "", closed_at=now)
        self.tables.upsert_windows(rows)
        if alerts:
            alerts = self.tables.add_new_alerts(alerts, DATASET, self.model_name or "")
        return len(rows), alerts

    def _run_rules(self, new: list[dict[str, object]]) -> tuple[list[str], list[Alert]]:
        """Run the rules over the batch's newly stored events, each event once: duplicates never get
        here, nor events the rules saw in a transaction that failed. Returns the ids fed to the rules
        and the alerts to store: those, and the ones left over from a failed transaction."""
        assert self.rules is not None
        fresh = [r for r in new if str(r["event_id"]) not in self._ruled]
        alerts = list(self._ruled_alerts)
        if fresh:
            alerts += [a for a in self.rules.process(events_to_frame(fresh)) if a.detector not in self._quiet_rules]
        return [str(r["event_id"]) for r in fresh], alerts

    def _ruled_uncommitted(self, fed: list[str], alerts: list[Alert]) -> None:
        """The transaction in which the rules saw ``fed`` and raised ``alerts`` failed: remember both."""
        self._ruled.update(dict.fromkeys(fed))
        while len(self._ruled) > MAX_UNCOMMITTED_RULED:  # events never delivered again
            self._ruled.popitem(last=False)
        self._ruled_alerts = alerts

    def _ruled_committed(self, new: list[dict[str, object]]) -> None:
        """The rules ran in a transaction that committed: its events and the alerts left over are stored."""
        for rec in new:
            self._ruled.pop(str(rec["event_id"]), None)
        self._ruled_alerts = []

    def _dead_letters(self, dead: list[dict[str, Any]], origin: str) -> None:
        total = self.store.con.execute("SELECT count(*) FROM dead_letters WHERE dataset = ?", [DATASET]).fetchone()
        samples = [{**d, "source": f"{origin}:{d['source']}"} for d in dead]
        self.store.add_dead_letters(DATASET, samples, int(total[0] if total else 0) + len(samples))
