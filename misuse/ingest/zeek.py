"""Zeek logs (TSV and JSON) into events.

TSV logs are parsed vectorised with :mod:`pyarrow.csv`, one block of lines at a time, so memory
stays bounded and a 1M-line ``conn.log`` takes a few seconds. Header lines (``#separator``,
``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#fields``, ``#types``,
``#open``/``#close``) are honoured wherever they appear, so concatenated logs with several header
blocks read as one. JSON logs hold one object per line.

Mappings (``kind``, ``entity``, ``peer``, ``action``):

======  ========  ===========  ===========  ==============================================
log     kind      entity       peer         action
======  ========  ===========  ===========  ==============================================
conn    flow      id.orig_h    id.resp_h    ``service`` if set, else ``proto``
dns     dns       id.orig_h    id.resp_h    ``qtype_name`` (the resolver is the peer)
http    http      id.orig_h    id.resp_h    ``method``
ssh     ssh       id.orig_h    id.resp_h    auth.success / auth.failed / auth.unknown
other   <path>    id.orig_h    id.resp_h    <path>; numeric fields -> num., others -> cat.
======  ========  ===========  ===========  ==============================================

Set and vector values come out joined by "," whatever ``#set_separator`` said.
``event_id`` is the Zeek ``uid`` for ``conn`` (unique there) and ``uid:line`` for the other logs.
IoT-23 ``conn.log.labeled`` files carry ``label`` and ``detailed-label``: the event label is
"benign" for Benign, else the detailed label (``DDoS``, ``C&C``...), or "Malicious" when it is
``-``. Their variant whose last three values are joined by runs of spaces is handled.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from misuse.errors import ParseError
from misuse.events import BENIGN, TS_LIMIT, normalize_frame, ts_ok
from misuse.ingest.base import DEFAULT_BATCH, DeadLetter, Reader, open_binary, read_guard

NUMERIC_TYPES = frozenset({"time", "interval", "count", "int", "double", "port"})
_BLOCK = 4 << 20
_WS = re.compile(r"\s{2,}|\t")
_LABEL_FIELDS = ("label",)
_DETAIL_FIELDS = ("detailed-label", "detailed_label", "det_label")
_CONN_NUM = {
    "duration": "duration",
    "orig_bytes": "orig_bytes",
    "resp_bytes": "resp_bytes",
    "orig_pkts": "orig_pkts",
    "resp_pkts": "resp_pkts",
    "orig_ip_bytes": "orig_ip_bytes",
    "resp_ip_bytes": "resp_ip_bytes",
    "missed_bytes": "missed_bytes",
    "id.orig_p": "src_port",
    "id.resp_p": "dst_port",
}
_CONN_CAT = ("proto", "service", "conn_state", "history", "uid")


@dataclass
class _Header:
    """What the ``#`` lines of one header block said."""

    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    path: str = ""
    fields: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    packed: int = 1  # values held by the last physical column (3 for IoT-23's space-joined tail)


def log_path_from_name(path: str | Path) -> str:
    """Guess the Zeek log path (``conn``, ``dns``...) from a file name such as ``conn.log.labeled``.

    >>> log_path_from_name("logs/conn.00:00:00-01:00:00.log.gz")
    'conn'
    """
    return Path(path).name.split(".", 1)[0].lower()


class ZeekReader(Reader):
    """Read a Zeek log (TSV with ``#`` headers, or JSON lines) into events.

    Parameters
    ----------
    log:
        Log path to map as (``conn``, ``dns``, ``http``, ``ssh`` or any other name); None takes the
        ``#path`` header, else the file name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> rows = ["#separator \\\\x09",
    ...         "#fields\\tts\\tuid\\tid.orig_h\\tid.orig_p\\tid.resp_h\\tid.resp_p\\tproto",
    ...         "#types\\ttime\\tstring\\taddr\\tport\\taddr\\tport\\tenum",
    ...         "10.5\\tC1\\t10.0.0.1\\t5000\\t10.0.0.2\\t80\\ttcp"]
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "conn.log"
    >>> _ = p.write_text("\\n".join(rows) + "\\n")
    >>> frame = ZeekReader().read(p)
    >>> frame[["event_id", "entity", "peer", "action", "num.dst_port"]].values.tolist()
    [['C1', '10.0.0.1', '10.0.0.2', 'tcp', 80.0]]
    """

    name = "zeek"

    def __init__(self, log: str | None = None) -> None:
        self.log = log

    def batches(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        dead: DeadLetter | None = None,
    ) -> Iterator[pd.DataFrame]:
        dead = dead if dead is not None else DeadLetter()
        p = Path(path)
        with read_guard(p), open_binary(p) as fh:
            head = fh.read(_BLOCK)
            first = head.lstrip()[:1]
            if first == b"{":
                frames = self._json_frames(p, head, fh, batch_size, dead)
            elif first == b"#":
                frames = self._tsv_frames(p, head, fh, dead)
            else:
                raise ParseError(
                    f"not a Zeek log: starts with {head[:20]!r}, expected '#' headers or a JSON object",
                    source=str(p),
                )
            for frame in frames:
                for start in range(0, len(frame), batch_size):
                    yield frame.iloc[start : start + batch_size].reset_index(drop=True)

    # ---- TSV ---------------------------------------------------------------------------------

    def _tsv_frames(self, p: Path, head: bytes, fh: Any, dead: DeadLetter) -> Iterator[pd.DataFrame]:
        hdr = _Header()
        line_no = 1  # file line number of the first line of ``buf``
        buf = head
        eof = False
        while buf or not eof:
            if not eof:
                more = fh.read(_BLOCK)
                eof = not more
                buf += more
            cut = len(buf) if eof else buf.rfind(b"\n") + 1
            if cut == 0:  # one line longer than the block: keep reading
                continue
            block, buf = buf[:cut], buf[cut:]
            yield from self._tsv_block(p, block, line_no, hdr, dead)
            line_no += block.count(b"\n")
        if not hdr.fields:
            raise ParseError(
                "no #fields header: the file ends inside its header (cut or not a Zeek log)", source=str(p)
            )

    def _tsv_block(self, p: Path, block: bytes, line_no: int, hdr: _Header, dead: DeadLetter) -> Iterator[pd.DataFrame]:
        pos = 0
        while pos < len(block):
            if block[pos : pos + 1] == b"#":
                end = block.find(b"\n", pos)
                if end < 0 and block.startswith((b"#fields", b"#types"), pos):
                    # the file ends inside this line: a cut header names no (or the wrong) fields;
                    # with no header before it, the check at the end of the file says so
                    if hdr.fields:
                        dead.add(str(p), line_no, "header line cut at the end of the file", block[pos:])
                    return
                end = len(block) if end < 0 else end + 1
                self._header_line(p, block[pos:end], line_no, hdr)
                line_no += 1
                pos = end
                continue
            nxt = block.find(b"\n#", pos)
            end = len(block) if nxt < 0 else nxt + 1
            part = block[pos:end]
            if not part.strip():  # blank lines only
                line_no += part.count(b"\n")
                pos = end
                continue
            if not hdr.fields:
                raise ParseError(f"no #fields header before data: {part[:40]!r}", source=str(p), line=line_no)
            n_lines = part.count(b"\n") + (0 if part.endswith(b"\n") else 1)
            frame = self._tsv_part(p, part, line_no, n_lines, hdr, dead)
            if frame is not None and len(frame):
                yield frame
            line_no += n_lines
            pos = end

    def _header_line(self, p: Path, raw: bytes, line_no: int, hdr: _Header) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if text.startswith("#separator"):
            value = text[len("#separator") :].strip()
            try:
                sep = value.encode("latin-1", "replace").decode("unicode_escape")
            except UnicodeDecodeError:
                sep = ""
            if len(sep) != 1 or sep in "\r\n#":
                raise ParseError(f"#separator must be one character, got {value!r}", source=str(p), line=line_no)
            hdr.separator = sep
            return
        key, _, rest = text[1:].partition(hdr.separator)
        if key == "fields":
            names = rest.split(hdr.separator)
            tail = _WS.split(names[-1].strip())
            hdr.packed = len(tail)
            hdr.fields = names[:-1] + tail
            if len(set(hdr.fields)) != len(hdr.fields) or "" in hdr.fields:
                raise ParseError(f"#fields has empty or repeated names: {rest[:80]!r}", source=str(p), line=line_no)
            hdr.types = []
        elif key == "types":
            names = rest.split(hdr.separator)
            hdr.types = names[:-1] + _WS.split(names[-1].strip())
        elif key == "set_separator":
            hdr.set_separator = rest
        elif key == "empty_field":
            hdr.empty_field = rest
        elif key == "unset_field":
            hdr.unset_field = rest
        elif key == "path":
            hdr.path = rest.strip()

    def _tsv_part(
        self, p: Path, part: bytes, first_line: int, n_lines: int, hdr: _Header, dead: DeadLetter
    ) -> pd.DataFrame | None:
        """Parse consecutive data lines (no header among them) into an event frame."""
        if b"\r" in part:  # CRLF endings lose their CR; pyarrow would split lines at a bare CR
            part = part.replace(b"\r\n", b"\n").replace(b"\r", b"\\x0d")
        try:
            part.decode("utf-8")
        except UnicodeDecodeError:
            part = part.decode("utf-8", "replace").encode("utf-8")
        fields = hdr.fields
        phys = fields if hdr.packed == 1 else [*fields[: -hdr.packed], "__packed__"]
        types = hdr.types if len(hdr.types) == len(fields) else ["string"] * len(fields)
        numeric = {f for f, t in zip(fields, types, strict=True) if t in NUMERIC_TYPES}
        if hdr.packed > 1:
            numeric -= set(fields[-hdr.packed :])
        bad: list[tuple[int, str, str]] = []

        def on_invalid(row: Any) -> str:
            text = str(row.text)
            if text.strip():
                bad.append((row.number, f"expected {row.expected_columns} fields, got {row.actual_columns}", text))
            else:
                bad.append((row.number, "", text))
            return "skip"

        def read(data: bytes, typed: bool) -> pa.Table:
            bad.clear()
            col_types = {c: (pa.float64() if typed and c in numeric else pa.string()) for c in phys}
            return pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=phys, use_threads=False, block_size=1 << 24),
                parse_options=pacsv.ParseOptions(
                    delimiter=hdr.separator,
                    quote_char=False,
                    ignore_empty_lines=False,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=col_types,
                    null_values=[hdr.unset_field],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )

        try:
            table = read(part, typed=True)
            slow = False
        except pa.ArrowInvalid:
            try:
                table = read(part, typed=False)
            except pa.ArrowInvalid as exc:
                raise ParseError(f"unreadable Zeek data: {exc}", source=str(p), line=first_line) from None
            slow = True
        parsed = np.ones(n_lines + 1, dtype=bool)
        parsed[0] = False
        for number, reason, text in bad:
            parsed[number] = False
            if reason:
                dead.add(str(p), first_line + number - 1, reason, text)
        rows = np.flatnonzero(parsed)
        if len(rows) != table.num_rows:
            raise ParseError("could not align parsed rows with lines", source=str(p), line=first_line)
        lines = rows + (first_line - 1)
        keep = np.ones(table.num_rows, dtype=bool)
        if part.startswith(b"\n") or b"\n\n" in part:
            keep &= ~_blank_rows(table)
        if slow:
            for col in numeric:
                text = table.column(col).to_numpy(zero_copy_only=False)
                values = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce").to_numpy(dtype="float64")
                wrong = np.isnan(values) & pd.notna(text) & keep
                for i in np.flatnonzero(wrong):
                    dead.add(str(p), int(lines[i]), f"field '{col}' is not a number: {text[i]!r}", "")
                keep &= ~wrong
                table = table.set_column(table.column_names.index(col), col, pa.array(values, from_pandas=True))
        parts = None
        if hdr.packed > 1:
            parts, ok = self._split_packed(table, hdr, lines, keep, p, dead)
            keep &= ok
        if "ts" in table.column_names:
            ts = table.column("ts").to_numpy(zero_copy_only=False)
            if ts.dtype == object:
                ts = pd.to_numeric(pd.Series(ts, dtype=object), errors="coerce").to_numpy(dtype="float64")
            with np.errstate(invalid="ignore"):
                wrong = ~(np.abs(ts.astype("float64")) < TS_LIMIT) & keep
            for i in np.flatnonzero(wrong):
                reason = "field 'ts' is unset" if np.isnan(ts[i]) else f"field 'ts' is out of range: {ts[i]}"
                dead.add(str(p), int(lines[i]), reason, "")
            keep &= ~wrong
        if not keep.all():
            mask = pa.array(keep)
            table = table.filter(mask)
            parts = parts.filter(mask) if parts is not None else None
            lines = lines[keep]
        if parts is not None:
            table = table.drop_columns(["__packed__"])
            for pos, name in enumerate(hdr.fields[-hdr.packed :]):
                value = pc.list_element(parts, pos)
                table = table.append_column(name, pc.if_else(pc.equal(value, hdr.unset_field), None, value))
        containers = {f for f, t in zip(fields, types, strict=True) if t.startswith(("set[", "vector["))}
        for idx, col in enumerate(table.column_names):
            values = table.column(idx)
            if col not in numeric and pa.types.is_string(values.type):
                values = pc.if_else(pc.equal(values, hdr.empty_field), "", values)
                if col in containers and hdr.set_separator not in ("", ","):
                    values = pc.replace_substring(values, hdr.set_separator, ",")  # one form downstream
                table = table.set_column(idx, col, values)
        log = self.log or hdr.path or log_path_from_name(p)
        return to_events(table, log, p.name, lines)

    @staticmethod
    def _split_packed(
        table: pa.Table, hdr: _Header, lines: np.ndarray, keep: np.ndarray, p: Path, dead: DeadLetter
    ) -> tuple[pa.Array, np.ndarray]:
        """Split IoT-23's space-joined last column; return the parts and the rows that split right."""
        packed = pc.utf8_trim_whitespace(pc.fill_null(table.column("__packed__").combine_chunks(), ""))
        parts = pc.split_pattern_regex(packed, r"\s+")
        counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        ok = counts == hdr.packed
        for i in np.flatnonzero(~ok & keep):
            reason = f"expected {hdr.packed} space-separated values in the last field, got {counts[i]}"
            dead.add(str(p), int(lines[i]), reason, str(packed[i]))
        return parts, ok

    # ---- JSON --------------------------------------------------------------------------------

    def _json_frames(self, p: Path, head: bytes, fh: Any, batch_size: int, dead: DeadLetter) -> Iterator[pd.DataFrame]:
        stream = io.TextIOWrapper(
            io.BufferedReader(_Prefixed(head, fh)), encoding="utf-8", errors="replace", newline="\n"
        )
        log = self.log or log_path_from_name(p)
        recs: list[dict[str, Any]] = []
        lines: list[int] = []
        for n, line in enumerate(stream, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                dead.add(str(p), n, f"not valid JSON: {exc}", text)
                continue
            ts = _json_ts(obj.get("ts")) if isinstance(obj, dict) else None
            if ts is None:
                got = f" (got {obj.get('ts')!r:.40})" if isinstance(obj, dict) else ""
                dead.add(str(p), n, f"not a JSON object with a valid 'ts' in range{got}", text)
                continue
            obj["ts"] = ts
            recs.append({k: _flat(v) for k, v in obj.items()})
            lines.append(n)
            if len(recs) >= batch_size:
                yield _json_frame(recs, log, p.name, lines)
                recs, lines = [], []
        if recs:
            yield _json_frame(recs, log, p.name, lines)


class _Prefixed(io.RawIOBase):
    """A raw stream that first returns already-read bytes, then the rest of ``fh``."""

    def __init__(self, head: bytes, fh: Any) -> None:
        self._head = head
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._fh.read(len(b))
        b[: len(data)] = data
        return len(data)


def _json_ts(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if ts_ok(float(value)) else None
    if isinstance(value, str):
        try:
            stamp = pd.to_datetime(value, utc=True, errors="coerce")
        except (ValueError, OverflowError):
            return None
        if pd.isna(stamp):
            return None
        ts = float(stamp.timestamp())
        return ts if ts_ok(ts) else None
    return None


def _flat(value: object) -> object:
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, list | dict):
        return ",".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
    return value


def _json_frame(recs: list[dict[str, Any]], log: str, name: str, lines: list[int]) -> pd.DataFrame:
    raw = pd.DataFrame.from_records(recs)
    arrays: dict[str, pa.Array] = {}
    for col in raw.columns:
        values = raw[col]
        present = values.notna()
        as_num = pd.to_numeric(values, errors="coerce")
        if present.any() and as_num.notna().sum() == present.sum():
            arrays[str(col)] = pa.array(as_num.to_numpy(dtype="float64"), from_pandas=True)
        else:
            text = values.astype(object).where(~present, values.astype(str)).where(present, None)
            arrays[str(col)] = pa.array(text.tolist(), type=pa.string())
    return to_events(pa.table(arrays), log, name, np.asarray(lines, dtype=np.int64))


def _blank_rows(table: pa.Table) -> np.ndarray:
    """Rows parsed from empty lines: every value null or empty."""
    blank = np.ones(table.num_rows, dtype=bool)
    for values in table.columns:
        empty = pc.fill_null(pc.equal(values.cast(pa.string()), ""), True)
        blank &= empty.to_numpy(zero_copy_only=False)
    return blank


# ---- mapping raw Zeek columns to events ------------------------------------------------------


def _col(raw: pa.Table, name: str) -> pa.Array:
    if name in raw.column_names:
        return raw.column(name).combine_chunks()
    return pa.nulls(raw.num_rows, pa.string())


def _num(raw: pa.Table, name: str) -> pa.Array:
    a = _col(raw, name)
    if pa.types.is_floating(a.type) or pa.types.is_integer(a.type) or pa.types.is_null(a.type):
        return a.cast(pa.float64())
    values = pd.to_numeric(pd.Series(a.to_numpy(zero_copy_only=False), dtype=object), errors="coerce")
    return pa.array(values.to_numpy(dtype="float64"), from_pandas=True)


def _text(raw: pa.Table, name: str, default: str = "") -> pa.Array:
    a = _col(raw, name)
    if not pa.types.is_string(a.type):
        a = a.cast(pa.string())
    return pc.fill_null(a, default)


def _obj(a: pa.Array) -> np.ndarray:
    """An Arrow column as an object array (None for missing), the form of ``cat.`` columns."""
    if not pa.types.is_string(a.type):
        a = a.cast(pa.string())
    return a.to_numpy(zero_copy_only=False)


def to_events(raw: pa.Table, log: str, name: str, lines: np.ndarray) -> pd.DataFrame:
    """Map a table of raw Zeek columns (numbers as floats, unset as null) to an event frame.

    Parameters
    ----------
    raw:
        One row per log line, columns named as in ``#fields``.
    log:
        The log path (``conn``, ``dns``, ``http``, ``ssh`` or another name).
    name:
        File name used in ``source`` ("conn.log:42").
    lines:
        File line number of each row.
    """
    line_s = pa.array(lines, type=pa.int64()).cast(pa.string())
    uid = _text(raw, "uid")
    base: dict[str, pa.Array] = {
        "event_id": uid
        if log == "conn" and "uid" in raw.column_names
        else pc.binary_join_element_wise(uid, line_s, ":"),
        "ts": _num(raw, "ts"),
        "entity": _text(raw, "id.orig_h"),
        "peer": _text(raw, "id.resp_h"),
        "source": pc.binary_join_element_wise(pa.scalar(name), line_s, ":"),
    }
    num: dict[str, pa.Array] = {}
    cat: dict[str, pa.Array] = {}
    if log == "conn":
        kind = "flow"
        base["action"] = pc.coalesce(
            pc.if_else(pc.equal(_text(raw, "service"), ""), None, _col(raw, "service")), _text(raw, "proto")
        )
        num = {dst: _num(raw, src) for src, dst in _CONN_NUM.items()}
        cat = {c: _col(raw, c) for c in _CONN_CAT}
    elif log == "dns":
        kind = "dns"
        base["action"] = _text(raw, "qtype_name", "unknown")
        answers = _text(raw, "answers")
        num = {
            "query_len": pc.utf8_length(_text(raw, "query")).cast(pa.float64()),
            "answers": pc.if_else(
                pc.equal(answers, ""), 0.0, pc.add(pc.count_substring(answers, ","), 1).cast(pa.float64())
            ),
        }
        num |= {c: _num(raw, c) for c in ("rcode", "qtype", "rtt", "trans_id")}
        cat = {c: _col(raw, c) for c in ("query", "rcode_name", "proto", "uid")}
    elif log == "http":
        kind = "http"
        base["action"] = _text(raw, "method")
        status = _num(raw, "status_code")
        num = {c: _num(raw, c) for c in ("status_code", "request_body_len", "response_body_len", "trans_depth")}
        cat = {c: _col(raw, c) for c in ("host", "uri", "user_agent", "referrer", "uid")}
        cat["status"] = pc.cast(pc.cast(status, pa.int64(), safe=False), pa.string())
    elif log == "ssh":
        kind = "ssh"
        ok = pc.utf8_lower(_text(raw, "auth_success"))
        base["action"] = pc.if_else(
            pc.is_in(ok, pa.array(["t", "true"])),
            "auth.success",
            pc.if_else(pc.is_in(ok, pa.array(["f", "false"])), "auth.failed", "auth.unknown"),
        )
        num = {"auth_attempts": _num(raw, "auth_attempts")}
        cat = {c: _col(raw, c) for c in ("client", "server", "version", "direction", "uid")}
    else:
        kind = log
        base["action"] = pa.array([log] * raw.num_rows, type=pa.string())
        skip = {"ts", "id.orig_h", "id.resp_h", *_LABEL_FIELDS, *_DETAIL_FIELDS}
        for c in raw.column_names:
            a = _col(raw, c)
            if c in skip:
                continue
            if pa.types.is_floating(a.type) or pa.types.is_integer(a.type):
                num[c.replace(".", "_")] = a.cast(pa.float64())
            else:
                cat[c.replace(".", "_")] = a
    if log in ("dns", "http", "ssh"):
        num["src_port"] = _num(raw, "id.orig_p")
        num["dst_port"] = _num(raw, "id.resp_p")
    table = pa.table({**base, **{"num." + k: v for k, v in num.items()}})
    frame = table.to_pandas()
    frame["kind"] = kind
    objects = {"cat." + k: pd.Series(_obj(v), dtype=object, index=frame.index) for k, v in cat.items()}
    objects["label"] = pd.Series(_labels(raw), dtype=object, index=frame.index)
    frame = pd.concat([frame, pd.DataFrame(objects, index=frame.index)], axis=1)  # object columns stay object
    return normalize_frame(frame)


def _labels(raw: pa.Table) -> np.ndarray | None:
    label_col = next((c for c in _LABEL_FIELDS if c in raw.column_names), None)
    if label_col is None:
        return None
    label = _col(raw, label_col)
    detail_col = next((c for c in _DETAIL_FIELDS if c in raw.column_names), None)
    detail = _text(raw, detail_col) if detail_col else pa.nulls(raw.num_rows, pa.string())
    generic = pc.fill_null(pc.is_in(detail, pa.array(["", "-"])), True)
    is_benign = pc.fill_null(pc.equal(pc.utf8_lower(label), BENIGN), False)
    out = pc.if_else(is_benign, BENIGN, pc.if_else(generic, label, detail))
    return _obj(out)
