"""Publishing and subscribing helpers for the service tests and the benchmark."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt


def client(port: int, user: str | None, password: str | None, client_id: str, persistent: bool = True) -> mqtt.Client:
    """A connected paho client (QoS 1 friendly: big in-flight window, unbounded queue, auto-reconnect)."""
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent, protocol=mqtt.MQTTv311
    )
    if user is not None:
        c.username_pw_set(user, password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(1, 2)
    answered = threading.Event()
    refused: list[Any] = []

    def on_connect(cl: Any, ud: Any, fl: Any, rc: Any, pr: Any) -> None:
        if rc.is_failure:
            refused.append(rc)
        answered.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    if not answered.wait(10) or refused:
        c.loop_stop()
        raise ConnectionError(f"broker on port {port} refused {user!r}: {refused}")
    c.on_connect = None
    return c


def publish_events(
    c: mqtt.Client,
    events: Iterable[dict[str, Any]],
    topic: str,
    rate: float | None = None,
    restamp: bool = False,
    batch: int = 1,
) -> list[mqtt.MQTTMessageInfo]:
    """Publish events with QoS 1, paced at ``rate`` events per second (None: as fast as possible).

    ``batch`` > 1 sends JSON arrays of that many events per message (as a gateway does). With
    ``restamp`` every event's ``ts`` is set to the wall clock at publication.
    """
    infos = []
    t0 = time.perf_counter()
    evs = list(events)
    for i in range(0, len(evs), batch):
        if rate is not None:
            lag = t0 + i / rate - time.perf_counter()
            if lag > 0:
                time.sleep(lag)
        chunk = evs[i : i + batch]
        if restamp:
            now = time.time()
            chunk = [{**ev, "ts": now} for ev in chunk]
        body = json.dumps(chunk[0] if batch == 1 else chunk)
        infos.append(c.publish(topic, body, qos=1))
    return infos


def wait_published(infos: list[mqtt.MQTTMessageInfo], timeout: float = 60.0) -> None:
    """Wait until the broker acknowledged every message."""
    end = time.monotonic() + timeout
    for info in infos:
        # published while the broker was down: paho keeps QoS 1 messages and sends them on
        # reconnect, but is_published() raises for them; watch the PUBACK flag itself
        def done(i: mqtt.MQTTMessageInfo = info) -> bool:
            return bool(i._published) if i.rc == mqtt.MQTT_ERR_NO_CONN else i.is_published()

        while not done():
            if time.monotonic() > end:
                raise TimeoutError("messages not acknowledged by the broker")
            time.sleep(0.01)


class Collector:
    """Subscribe to a topic filter and keep (arrival time, topic, JSON payload) of every message."""

    def __init__(self, port: int, user: str, password: str, topic: str, client_id: str) -> None:
        self.messages: list[tuple[float, str, Any]] = []
        self._lock = threading.Lock()
        self.client = client(port, user, password, client_id, persistent=False)
        self.client.on_message = self._on_message
        self.client.subscribe(topic, qos=1)
        time.sleep(0.2)

    def _on_message(self, cl: Any, ud: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((time.time(), msg.topic, json.loads(msg.payload)))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
