"""Cowrie SSH/Telnet honeypot JSON logs (``cowrie.json``, one event per line).

=====================================  =========  ===================  =======================================
eventid                                kind       action               attributes
=====================================  =========  ===================  =======================================
cowrie.login.success / .failed         auth       login.success/failed cat.password (kept: brute-force rules
                                                                       look at honeypot passwords)
cowrie.session.connect                 session    connect              num.src_port, num.dst_port, cat.protocol
cowrie.session.closed                  session    closed               num.duration
cowrie.client.version                  session    client.version       cat.client
cowrie.command.input / .failed         command    first word of input  cat.input, cat.result (ok / failed)
cowrie.session.file_download[.failed]  file       download[.failed]    cat.url, cat.shasum
cowrie.direct-tcpip.request / .data    tunnel     direct-tcpip.<x>     cat.dst, num.dst_port
anything else                          session    eventid minus prefix
=====================================  =========  ===================  =======================================

``entity`` is the account name for logins; for other events it is the user the session logged
in as, or the source address while the session has none. ``peer`` is always the attacker's
``src_ip``. Every event carries ``cat.session``, ``cat.sensor`` and ``cat.eventid``. ``event_id``
is the event's ``uuid`` when Cowrie wrote one, else ``<session>:<line>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from misuse.errors import ParseError
from misuse.events import ts_ok
from misuse.ingest.base import DeadLetter, RecordReader, open_text, read_guard

_PREFIX = "cowrie."
_PROBE_LINES = 20


def _ts(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if ts_ok(float(value)) else None
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None or not ts_ok(stamp.timestamp()):
        return None
    return stamp.timestamp()


def _num(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


class CowrieReader(RecordReader):
    """Read a Cowrie JSON log into events.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cowrie.json"
    >>> ev = {"eventid": "cowrie.login.failed", "timestamp": "2018-05-06T17:44:05.866769Z", "session": "s1",
    ...       "src_ip": "5.6.7.8", "username": "root", "password": "1234", "sensor": "hp1"}
    >>> _ = p.write_text(json.dumps(ev) + "\\n")
    >>> e = next(CowrieReader().events(p))
    >>> e.kind, e.entity, e.peer, e.action, e.cat["password"]
    ('auth', 'root', '5.6.7.8', 'login.failed', '1234')
    """

    name = "cowrie"

    def records(self, path: Path, dead: DeadLetter) -> Iterator[dict[str, object]]:
        users: dict[str, str] = {}  # session -> logged-in user, dropped when the session closes
        good = 0
        bad = 0
        first_bad = ""
        with read_guard(path), open_text(path) as fh:
            for n, raw in enumerate(fh, start=1):
                text = raw.strip()
                if not text:
                    continue
                reason, obj = self._decode(text)
                if obj is None:
                    bad += 1
                    first_bad = first_bad or text[:60]
                    if not good and bad >= _PROBE_LINES:
                        raise ParseError(f"not a Cowrie JSON log: first line is {first_bad!r}", source=str(path))
                    dead.add(str(path), n, reason, text)
                    continue
                good += 1
                yield _record(obj, users, path.name, n)
        if not good:
            what = f"no Cowrie event (first line: {first_bad!r})" if first_bad else "no events"
            raise ParseError(f"not a Cowrie JSON log: {what}", source=str(path))

    @staticmethod
    def _decode(text: str) -> tuple[str, dict[str, Any] | None]:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            return f"not valid JSON: {exc}", None
        if not isinstance(obj, dict):
            return "not a JSON object", None
        eventid = obj.get("eventid")
        if not isinstance(eventid, str) or not eventid.startswith(_PREFIX):
            return f"'eventid' is not a Cowrie event id: {eventid!r}", None
        ts = _ts(obj.get("timestamp"))
        if ts is None:
            return f"'timestamp' is missing or not ISO 8601 with a zone: {obj.get('timestamp')!r}", None
        obj["timestamp"] = ts
        return "", obj


def _record(obj: dict[str, Any], users: dict[str, str], name: str, n: int) -> dict[str, object]:
    eventid = str(obj["eventid"])[len(_PREFIX) :]
    session = _str(obj.get("session")) or ""
    src_ip = _str(obj.get("src_ip")) or ""
    rec: dict[str, object] = {
        "event_id": _str(obj.get("uuid")) or f"{session}:{n}",
        "ts": obj["timestamp"],
        "entity": users.get(session) or src_ip or "unknown",
        "peer": src_ip,
        "kind": "session",
        "action": eventid,
        "source": f"{name}:{n}",
        "cat.session": session,
        "cat.sensor": _str(obj.get("sensor")),
        "cat.eventid": str(obj["eventid"]),
    }
    if eventid in ("login.success", "login.failed"):
        user = _str(obj.get("username")) or ""
        rec.update(kind="auth", entity=user or "unknown", action=eventid)
        rec["cat.password"] = _str(obj.get("password"))
        if eventid == "login.success" and session:
            users[session] = user or "unknown"
    elif eventid == "session.connect":
        rec["action"] = "connect"
        rec["num.src_port"] = _num(obj.get("src_port"))
        rec["num.dst_port"] = _num(obj.get("dst_port"))
        rec["cat.protocol"] = _str(obj.get("protocol"))
    elif eventid == "session.closed":
        rec["action"] = "closed"
        rec["num.duration"] = _num(obj.get("duration"))
        users.pop(session, None)
    elif eventid == "client.version":
        rec["cat.client"] = _str(obj.get("version"))
    elif eventid in ("command.input", "command.failed"):
        command = _str(obj.get("input")) or ""
        words = command.split()
        rec.update(kind="command", action=words[0] if words else "")
        rec["cat.input"] = command
        rec["cat.result"] = "failed" if eventid == "command.failed" else "ok"
    elif eventid.startswith("session.file_download"):
        rec.update(kind="file", action="download" + eventid[len("session.file_download") :])
        rec["cat.url"] = _str(obj.get("url"))
        rec["cat.shasum"] = _str(obj.get("shasum"))
    elif eventid.startswith("direct-tcpip"):
        rec["kind"] = "tunnel"
        rec["cat.dst"] = _str(obj.get("dst_ip"))
        rec["num.dst_port"] = _num(obj.get("dst_port"))
    return rec
