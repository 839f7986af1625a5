"""Events already in the event model, as JSON lines: the format of the HTTP/MQTT ingest API, of
``misuse simulate``'s ``app.jsonl`` and of anything a user converts themselves.

Each line is one object with ``ts`` (ISO-8601 or epoch seconds) and ``entity``, and optionally
``event_id, peer, kind, action, label, source``, numeric attributes as ``"num.<name>"`` keys or a
``"num": {...}`` object, and categorical ones as ``"cat.<name>"`` or ``"cat": {...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from misuse.errors import ParseError
from misuse.events import CAT_PREFIX, NUM_PREFIX, ts_ok
from misuse.ingest.base import DeadLetter, RecordReader, open_text

FIELDS = ("event_id", "entity", "peer", "kind", "action", "label", "source")


def parse_event_object(obj: Any, where: str) -> dict[str, object]:
    """Validate one event object and flatten it into a record of the columnar form.

    Raises
    ------
    ParseError
        Naming ``where`` and the field that is wrong.
    """
    if not isinstance(obj, Mapping):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}", source=where)
    if "entity" not in obj or not isinstance(obj["entity"], str) or not obj["entity"]:
        raise ParseError("field 'entity' is missing or not a non-empty string", source=where)
    if "ts" not in obj:
        raise ParseError("field 'ts' is missing", source=where)
    rec: dict[str, object] = {"ts": _ts(obj["ts"], where)}
    for f in FIELDS:
        v = obj.get(f)
        if v is not None and not isinstance(v, str | int | float):
            raise ParseError(f"field '{f}' must be a string, got {type(v).__name__}", source=where)
        if v is not None:
            rec[f] = str(v)
    nums = dict(obj.get("num") or {})
    cats = dict(obj.get("cat") or {})
    for k, v in obj.items():
        if k.startswith(NUM_PREFIX):
            nums[k[len(NUM_PREFIX) :]] = v
        elif k.startswith(CAT_PREFIX):
            cats[k[len(CAT_PREFIX) :]] = v
    for k, v in nums.items():
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
            raise ParseError(f"numeric attribute '{k}' must be a finite number, got {v!r}", source=where)
        rec[NUM_PREFIX + k] = float(v)
    for k, v in cats.items():
        if v is not None:
            rec[CAT_PREFIX + k] = str(v)
    return rec


def _ts(v: object, where: str) -> float:
    if isinstance(v, bool):
        raise ParseError(f"field 'ts' must be ISO-8601 or epoch seconds, got {v!r}", source=where)
    if isinstance(v, int | float):
        if not math.isfinite(float(v)):
            raise ParseError(f"field 'ts' is not finite: {v!r}", source=where)
        return _in_range(float(v), v, where)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ParseError(f"field 'ts' is not ISO-8601: {v!r}", source=where) from None
        if dt.tzinfo is None:
            raise ParseError(f"field 'ts' has no timezone (UTC expected, e.g. 'Z'): {v!r}", source=where)
        return _in_range(dt.timestamp(), v, where)
    raise ParseError(f"field 'ts' must be ISO-8601 or epoch seconds, got {type(v).__name__}", source=where)


def _in_range(ts: float, v: object, where: str) -> float:
    if not ts_ok(ts):
        raise ParseError(f"field 'ts' is out of range (years 1677 to 2262): {v!r}", source=where)
    return ts


class EventJsonReader(RecordReader):
    """Reader of JSON-lines files holding events in the event model."""

    name = "events-jsonl"

    def records(self, path: Path, dead: DeadLetter) -> Iterator[dict[str, object]]:
        """Yield one record per valid line; bad lines go to ``dead`` with their line number."""
        good = 0
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path.name}:{lineno}"
                try:
                    rec = parse_event_object(json.loads(line), where)
                except json.JSONDecodeError as exc:
                    dead.add(path.name, lineno, f"invalid JSON: {exc.msg}", line)
                    continue
                except ParseError as exc:
                    dead.add(path.name, lineno, exc.reason, line)
                    continue
                rec.setdefault("source", where)
                rec.setdefault("event_id", where)
                good += 1
                yield rec
        if good == 0 and dead.count:
            raise ParseError(f"no valid event in the file ({dead.count} bad lines; first: {dead.first()})", str(path))
