"""Server-sent events: alerts fan out from the worker threads to every connected client."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

QUEUE_SIZE = 1000
HEARTBEAT = 10.0


class AlertHub:
    """Broadcast JSON messages from any thread to asyncio subscribers.

    A subscriber too slow to keep ``QUEUE_SIZE`` messages is sent an ``overflow`` event and
    closed; it should reload the alert list and reconnect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the event loop the subscribers live on."""
        self._loop = loop

    @property
    def subscribers(self) -> int:
        """How many clients are connected."""
        with self._lock:
            return len(self._subs)

    def publish(self, message: dict[str, Any]) -> None:
        """Send one message to every subscriber (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            loop.call_soon_threadsafe(self._put, q, message)

    def _put(self, q: asyncio.Queue[dict[str, Any] | None], message: dict[str, Any]) -> None:
        try:
            q.put_nowait(message)
        except asyncio.QueueFull:
            with self._lock:
                self._subs.discard(q)
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)

    async def stream(self, is_disconnected: Any) -> AsyncIterator[str]:
        """The text/event-stream body for one client."""
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._subs.add(q)
        try:
            yield "retry: 2000\n: connected\n\n"
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), timeout=HEARTBEAT)
                except TimeoutError:
                    if await is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if msg is None:
                    yield "event: overflow\ndata: {}\n\n"
                    return
                yield f"event: {msg.get('type', 'message')}\ndata: {json.dumps(msg.get('data'), default=str)}\n\n"
        finally:
            with self._lock:
                self._subs.discard(q)
