"""The streaming worker: MQTT subscription and Zeek log tailing, feeding :class:`StreamProcessor`.

MQTT: the worker connects with a fixed client id and a persistent session (``clean_session``
false), subscribes to ``<prefix>/events/#`` (or the ``mqtt_topics`` filters) with QoS 1 and
acknowledges a message only after the batch holding it is committed to the store. A worker that
dies mid-batch therefore loses nothing: the broker redelivers what was not acknowledged, and the
store drops what it already holds by ``event_id``. Alerts are published with QoS 1 on ``<prefix>/alerts/<entity>``.

A batch whose commit fails is retried with a growing pause. When every attempt failed, its
messages are committed one at a time: one that fails alone while the store still takes a dead
letter is set aside as one (a message the processing cannot take must not stop the stream). If
the store takes nothing, the worker drops what it holds unacknowledged and connects again: the
broker sends unacknowledged messages again only on a new connection, and stops delivering once
its in-flight window is full of them.

Zeek: the position in a log moves on only once its new lines were handed over. A chunk whose
hand-over fails ``attempts`` times in a row is handed over one line at a time, and a line that fails
alone is set aside as a dead letter, so one line the store always refuses cannot stall the file.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, ParseError
from misuse.ingest.base import DeadLetter
from misuse.ingest.zeek import ZeekReader
from misuse.service.config import ServiceConfig
from misuse.service.metrics import Metrics
from misuse.service.stream import MAX_RAW, Parsed, StreamProcessor, parse_payload

log = logging.getLogger("misuse.service.worker")
MAX_BACKOFF = 30.0  # longest pause (s) between two attempts to commit a batch


@dataclass
class _Msg:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received: float


class MqttWorker:
    """Subscribe to the events topic and process messages in committed batches.

    Parameters
    ----------
    cfg:
        Broker address, credentials, client id, topic prefix and batching settings.
    processor:
        Where events go.
    metrics:
        Connection gauge, reconnections.
    attempts:
        Tries to commit a batch before the worker drops it and reconnects for the broker to redeliver it.
    backoff:
        Pause (s) after a batch's first failed commit; it doubles with every further failure in a
        row (also across reconnections), up to :data:`MAX_BACKOFF`.
    """

    def __init__(
        self,
        cfg: ServiceConfig,
        processor: StreamProcessor,
        metrics: Metrics,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        import paho.mqtt.client as mqtt

        if attempts < 1 or not backoff >= 0:
            raise InvalidParameterError(
                f"MqttWorker needs attempts >= 1 and backoff >= 0; got attempts={attempts!r}, backoff={backoff!r}"
            )
        self.cfg = cfg
        self.processor = processor
        self.metrics = metrics
        self.attempts = attempts
        self.backoff = backoff
        self._failures = 0  # failed commits in a row
        self._queue: queue.Queue[_Msg] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if cfg.mqtt_username:
            self.client.username_pw_set(cfg.mqtt_username, cfg.mqtt_password or None)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ----- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT %s:%s refused the connection: %s", self.cfg.mqtt_host, self.cfg.mqtt_port, reason)
            return
        client.subscribe([(t, 1) for t in self.cfg.subscriptions])
        log.info(
            "MQTT connected to %s:%s, session present=%s", self.cfg.mqtt_host, self.cfg.mqtt_port, flags.session_present
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
        # ready only once the broker holds the subscription: on a new session, a message published
        # between CONNACK and SUBACK reaches no subscriber and the broker does not keep it
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error("MQTT %s:%s refused the subscription: %s", self.cfg.mqtt_host, self.cfg.mqtt_port, refused)
            return
        self.metrics.set("misuse_mqtt_connected", 1)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.metrics.set("misuse_mqtt_connected", 0)
        self.connected.clear()
        log.warning("MQTT disconnected: %s", reason)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self._queue.put(_Msg(msg.mid, msg.qos, msg.topic, bytes(msg.payload), time.time()))

    # ----- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Connect (retrying in the background) and start the processing thread."""
        self.client.connect_async(self.cfg.mqtt_host, self.cfg.mqtt_port, keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="misuse-mqtt-batches", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Process what was received, then disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def publish_alert(self, alert: Alert) -> None:
        """Publish an alert (QoS 1) on its entity's alert topic."""
        self.client.publish(self.cfg.alert_topic(alert.entity), alert.to_json(), qos=1)

    # ----- batches ---------------------------------------------------------------------------
    def _run(self) -> None:
        last_idle = 0.0
        while not self._stop.is_set() or not self._queue.empty():
            batch = self._drain()
            if batch:
                self._process(batch)
            now = time.time()
            if now - last_idle >= 1.0:
                last_idle = now
                try:
                    self.processor.close_idle(self.cfg.idle_close, now)
                except Exception:  # never let one bad window stop the batch thread
                    log.exception("closing idle windows failed")

    def _drain(self) -> list[_Msg]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.batch_wait
        while len(batch) < self.cfg.batch_max:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=max(left, 0)) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[_Msg]) -> None:
        parsed = Parsed()
        for m in batch:
            parsed.extend(parse_payload(m.payload, m.topic, "mqtt", m.received))
        for attempt in range(1, self.attempts + 1):
            try:
                self.processor.ingest(parsed, "mqtt")  # on failure it leaves no trace: try again
            except Exception as exc:
                self._failures += 1
                pause = min(self.backoff * 2 ** (self._failures - 1), MAX_BACKOFF)
                if attempt == self.attempts:
                    log.exception("batch of %d messages not committed after %d attempts", len(batch), attempt)
                    break
                what = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "batch of %d messages not committed (attempt %d of %d, %s); again in %.1f s",
                    len(batch),
                    attempt,
                    self.attempts,
                    what,
                    pause,
                )
                if self._stop.wait(pause):
                    return  # shutting down: not acknowledged, so the broker keeps them for the next start
            else:
                self._failures = 0
                for m in batch:
                    self._ack(m)
                return
        if not self._one_by_one(batch) and not self._stop.wait(pause):
            self._redeliver()

    def _ack(self, m: _Msg) -> None:
        if m.qos > 0:
            self.client.ack(m.mid, m.qos)

    def _one_by_one(self, batch: list[_Msg]) -> bool:
        """Commit a failed batch's messages one at a time, setting aside as a dead letter each one
        that fails alone; False as soon as not even its dead letter can be stored (the store fails)."""
        for m in batch:
            try:
                self.processor.ingest(parse_payload(m.payload, m.topic, "mqtt", m.received), "mqtt")
            except Exception as exc:
                dead = _unprocessed(m.topic, 0, exc, m.payload)
                try:
                    self.processor.ingest(Parsed(dead=[dead]), "mqtt")
                except Exception:
                    return False
                log.error("message on %s set aside as a dead letter: %s", m.topic, dead["reason"])
            self._failures = 0
            self._ack(m)
        return True

    def _redeliver(self) -> None:
        """Drop the connection and every message received but not acknowledged, and connect again.

        The session is persistent, so the broker sends the unacknowledged messages again (with what
        it queued meanwhile); without a new connection it would not, and once its in-flight window
        is full of them it would deliver nothing more.
        """
        self.client.disconnect()
        self.client.loop_stop()  # the network thread ends after a disconnect we asked for
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        self.metrics.inc("misuse_mqtt_reconnects_total")
        log.warning(
            "reconnecting to the broker for it to redeliver the failed batch and %d more unacknowledged messages",
            dropped,
        )
        self.client.connect_async(self.cfg.mqtt_host, self.cfg.mqtt_port, keepalive=30)
        self.client.loop_start()


def _unprocessed(source: str, line: int, exc: Exception, raw: bytes) -> dict[str, object]:
    """The dead letter of a message or line that the processing or the store refused alone."""
    # NUL is the one character a PostgreSQL text column refuses: the reason why, perhaps
    reason = f"not processed: {type(exc).__name__}: {exc}".replace("\x00", "\\x00")[:MAX_RAW]
    text = raw[:MAX_RAW].decode("utf-8", errors="replace").replace("\x00", "\\x00")
    return {"source": source, "line": line, "reason": reason, "raw": text}


_HEADER_KEYS = (b"#separator", b"#set_separator", b"#empty_field", b"#unset_field", b"#path", b"#fields", b"#types")


@dataclass
class _Tail:
    path: Path
    offset: int = 0
    lines: int = 0
    inode: int = -1
    header: list[bytes] = field(default_factory=list)
    failures: int = 0  # hand-overs of the pending chunk that failed in a row


class ZeekTailer:
    """Follow Zeek logs as they grow (and across rotation), feeding new lines to the processor.

    Each poll reads the complete new lines, parses them with :class:`misuse.ingest.zeek.ZeekReader`
    behind the file's own ``#`` header, and hands the events over. Events and dead letters carry
    the file's own line numbers (``conn.log:3009``); ids are the ``uid`` for ``conn`` and
    ``uid:file:line`` otherwise, so re-reading a file after a restart adds nothing twice.

    ``attempts``: failed hand-overs of the same lines after which they are handed over one at a
    time, each line that fails alone going to the dead letters.
    """

    def __init__(
        self, paths: list[Path], ingest: Callable[[Parsed, str], Any], interval: float = 0.5, attempts: int = 3
    ) -> None:
        if attempts < 1:
            raise InvalidParameterError(f"attempts must be >= 1. Got {attempts} instead.")
        self.tails = [_Tail(Path(p)) for p in paths]
        self.ingest = ingest
        self.interval = interval
        self.attempts = attempts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling in a background thread."""
        self._thread = threading.Thread(target=self._run, name="misuse-zeek-tail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for t in self.tails:
                try:
                    self.poll(t)
                except Exception:
                    log.exception("tailing %s failed", t.path)
            self._stop.wait(self.interval)

    def poll(self, t: _Tail) -> int:
        """Read what was appended to one file since the last poll; returns the events handed over.

        The position in the file moves on only once the lines were handed over: when ``ingest``
        raises, the next poll reads the same lines again; from the ``attempts``-th failure in a row
        on they go one at a time (:meth:`_one_by_one`).
        """
        try:
            st = t.path.stat()
        except FileNotFoundError:
            return 0
        if st.st_ino != t.inode or st.st_size < t.offset:
            t.offset, t.lines, t.inode, t.header = 0, 0, st.st_ino, []
        if st.st_size == t.offset:
            return 0
        with open(t.path, "rb") as fh:
            fh.seek(t.offset)
            data = fh.read(st.st_size - t.offset)
        end = data.rfind(b"\n")
        if end < 0:
            return 0
        chunk = data[: end + 1]
        rows = chunk.split(b"\n")[:-1]
        header = list(t.header)
        body: list[bytes] = []
        at: list[int] = []  # the file's line number of each body row
        for number, r in enumerate(rows, start=t.lines + 1):
            if not r.startswith(b"#"):
                body.append(r)
                at.append(number)
            elif r.startswith(_HEADER_KEYS):
                header = [h for h in header if h.split(maxsplit=1)[:1] != r.split(maxsplit=1)[:1]] + [r]
        handed = 0
        if body:
            parsed = self._parse(t.path.name, header, body, at)
            try:
                self.ingest(parsed, "zeek")
            except Exception:
                t.failures += 1
                if t.failures < self.attempts:
                    raise
                log.warning("%s: %d lines not handed over %d times; one at a time now", t.path, len(body), t.failures)
                return self._one_by_one(t, rows)
            handed = len(parsed.records)
        t.offset += len(chunk)
        t.lines += len(rows)
        t.header = header
        t.failures = 0
        return handed

    def _one_by_one(self, t: _Tail, rows: list[bytes]) -> int:
        """Hand ``rows`` over one line at a time, moving the position on after each; a line that
        fails alone is set aside as a dead letter. Raises (position kept) when not even its dead
        letter can be handed over: then the store itself is failing."""
        handed = 0
        for r in rows:
            number = t.lines + 1
            if r.startswith(b"#"):
                if r.startswith(_HEADER_KEYS):
                    key = r.split(maxsplit=1)[:1]
                    t.header = [h for h in t.header if h.split(maxsplit=1)[:1] != key] + [r]
            else:
                parsed = self._parse(t.path.name, t.header, [r], [number])
                try:
                    self.ingest(parsed, "zeek")
                    handed += len(parsed.records)
                except Exception as exc:
                    dead = _unprocessed(t.path.name, number, exc, r)
                    self.ingest(Parsed(dead=[dead]), "zeek")  # raises when the store fails: retried later
                    log.error("%s line %d set aside as a dead letter: %s", t.path, number, dead["reason"])
            t.offset += len(r) + 1
            t.lines += 1
        t.failures = 0
        return handed

    def _parse(self, name: str, header: list[bytes], body: list[bytes], at: list[int]) -> Parsed:
        """Parse body rows (the file's lines ``at``) behind the header; events and dead letters name
        the file and its own line numbers."""
        head = [] if body[0].lstrip().startswith(b"{") else header

        def line_of(n: int | None) -> int:
            """The file's line number of line ``n`` of the temporary file (header, then body)."""
            i = (n or 0) - len(head) - 1
            return at[i] if 0 <= i < len(at) else at[0]

        dead = DeadLetter(keep=len(body))  # every bad line is set aside, not the first 100
        frames: list[pd.DataFrame] = []
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_bytes(b"\n".join(head + body) + b"\n")
            try:
                frames = list(ZeekReader().batches(p, dead=dead))
            except ParseError as exc:
                return Parsed(
                    dead=[
                        {
                            "source": f"{name}:{at[0]}",
                            "line": at[0],
                            "reason": exc.reason,
                            "raw": b"\n".join(body)[:2000].decode(errors="replace"),
                        }
                    ]
                )
        out = Parsed(dead=[{**d, "source": name, "line": line_of(d["line"])} for d in dead.samples])
        now = time.time()
        for frame in frames:
            out.records += [_record(r, name, line_of) for r in frame.to_dict("records")]
            out.received += [now] * len(frame)
        return out


def _record(row: dict[str, Any], name: str, line_of: Callable[[int | None], int]) -> dict[str, object]:
    rec: dict[str, object] = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
            continue
        rec[k] = v.timestamp() if isinstance(v, pd.Timestamp) else v
    src = str(rec.get("source", ""))
    line = line_of(int(src.rsplit(":", 1)[1])) if ":" in src else 0
    rec["source"] = f"{name}:{line}"
    eid = str(rec.get("event_id", ""))
    if ":" in eid:
        rec["event_id"] = f"{eid.rsplit(':', 1)[0]}:{name}:{line}"
    elif not eid:
        rec["event_id"] = f"{name}:{line}"
    return rec
