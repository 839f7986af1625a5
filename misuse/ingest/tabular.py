"""CSV and JSON-lines files into events through a declarative column mapping.

A mapping (a dict, a YAML file, or the name of a built-in one in ``misuse/ingest/mappings/``:
``ton_iot``, ``nbaiot``, ``edge_iiotset``, ``iot_on_demand``) says where each event field comes
from::

    name: my_sensors
    header: true                  # false: give `columns: [a, b, c]`
    delimiter: ","
    file_pattern: "(?P<device>[a-z]+)_log\\.csv"   # named groups usable in templates, with {file}
    ts:                           # one of:
      column: date                #   a column (+ time_column to combine date and time)
      format: "%d-%b-%y"          #   strptime format, or a list of alternatives
      time_column: time
      time_format: "%H:%M:%S"
      timezone: UTC               #   zone of naive stamps (default UTC)
      # epoch: s                  #   epoch numbers in s / ms / us / ns
      # row_index: true           #   no time in the data: synthetic, base + row index seconds
    entity: {template: "ton:{device}", lower: true}   # or {column: x} or {constant: x}; a bare
    peer: ip_dst                  # string is a column name
    kind: {constant: telemetry}
    action: {column: event}
    label: {column: type, map: {normal: benign}}      # unmapped values pass through
    num: numeric                  # a list of columns, or "numeric": all unused numeric columns
    cat: remaining                # a list, or "remaining": all other unused columns
    exclude: [label]              # columns never turned into attributes

A ``row_index`` time is synthetic: it orders the rows and nothing more. Rows whose time does not
parse or whose field count is wrong go to the dead letters with their file line.

A column's type is fixed once per file and never changed by a stray value. A column listed under
``num`` is numeric; with ``num: numeric``, a free column is numeric when at least
:data:`NUMERIC_SHARE` of its values in the first batch are numbers. Either way, a row whose numeric
column holds a non-number (in any batch) is a bad record: it goes to the dead letters with its
file line, the column and the value. An empty cell or ``nan`` is a missing value, not a bad one.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from misuse.errors import ParseError, SchemaError
from misuse.events import TS_LIMIT, normalize_frame
from misuse.ingest.base import DEFAULT_BATCH, DeadLetter, Reader, open_text, read_guard

MAPPINGS_DIR = Path(__file__).parent / "mappings"
_TOP_KEYS = frozenset(
    {"name", "description", "format", "header", "columns", "delimiter", "file_pattern", "strip"}
    | {"ts", "event_id", "entity", "peer", "kind", "action", "label", "num", "cat", "exclude"}
)
_VALUE_KEYS = frozenset({"column", "constant", "template", "map", "lower", "default"})
_TS_KEYS = frozenset({"column", "format", "time_column", "time_format", "timezone", "epoch", "row_index", "base"})
_EPOCH_UNITS = ("s", "ms", "us", "ns")
#: with ``num: numeric``, the least share of a column's first-batch values that must be numbers for
#: the column to be numeric (the others are bad records); below it the column is categorical
NUMERIC_SHARE = 0.99


@dataclass(frozen=True)
class ValueSpec:
    """Where one event field comes from: a column, a constant or a template, then an optional map."""

    column: str | None = None
    constant: str | None = None
    template: str | None = None
    map: dict[str, str] = field(default_factory=dict)
    lower: bool = False
    default: str = ""

    def fields(self) -> list[str]:
        """The names this spec reads (columns or file variables)."""
        if self.column is not None:
            return [self.column]
        if self.template is not None:
            return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]
        return []


@dataclass(frozen=True)
class TimeSpec:
    """How to build ``ts``."""

    column: str | None = None
    formats: tuple[str, ...] = ()
    time_column: str | None = None
    time_format: str | None = None
    timezone: str = "UTC"
    epoch: str | None = None
    row_index: bool = False
    base: float = 0.0


@dataclass(frozen=True)
class ColumnMapping:
    """A validated column mapping (see the module docstring for the fields)."""

    name: str
    origin: str
    ts: TimeSpec
    entity: ValueSpec
    format: str | None = None
    header: bool = True
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    file_pattern: str | None = None
    strip: bool = True
    event_id: ValueSpec | None = None
    peer: ValueSpec = ValueSpec(constant="")
    kind: ValueSpec = ValueSpec(constant="event")
    action: ValueSpec = ValueSpec(constant="")
    label: ValueSpec | None = None
    num: tuple[str, ...] | str = ()
    cat: tuple[str, ...] | str = ()
    exclude: tuple[str, ...] = ()


def builtin_mappings() -> list[str]:
    """Names of the mappings shipped with the package."""
    return sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml"))


def load_mapping(spec: str | Path | Mapping[str, Any] | ColumnMapping) -> ColumnMapping:
    """Load and validate a column mapping: a built-in name, a YAML file path or a dict.

    Raises
    ------
    SchemaError
        Naming the file (or "<dict>") and the field that is wrong.

    Examples
    --------
    >>> load_mapping("ton_iot").ts.formats
    ('%d-%b-%y',)
    >>> load_mapping({"ts": {"row_index": True}, "entity": {"constant": "x"}, "nmu": []})
    Traceback (most recent call last):
    ...
    misuse.errors.SchemaError: mapping <dict>: unknown field 'nmu' (known: action, cat, ...)
    """
    if isinstance(spec, ColumnMapping):
        return spec
    if isinstance(spec, Mapping):
        return _validate(dict(spec), "<dict>")
    path = Path(spec)
    if not path.is_file() and str(spec) in builtin_mappings():
        path = MAPPINGS_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise SchemaError(f"mapping {spec}: no such file and no built-in mapping (built-in: {builtin_mappings()})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SchemaError(f"mapping {path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except yaml.YAMLError as exc:
        raise SchemaError(f"mapping {path}{yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise SchemaError(f"mapping {path}: expected a YAML mapping at the top, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return _validate(data, str(path))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: `` line L column C: not valid YAML: <problem> (<context>)``.

    >>> try:
    ...     yaml.safe_load("entity: a: b\\n")
    ... except yaml.YAMLError as exc:
    ...     print("bad.yaml" + yaml_problem(exc))
    bad.yaml line 1 column 10: not valid YAML: mapping values are not allowed here
    """
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context != problem and context_mark is not None:
        problem = f"{problem} ({context} from line {context_mark.line + 1})"
    return f"{where}: not valid YAML: {' '.join(str(problem).split())}"


def _fail(origin: str, where: str, message: str) -> SchemaError:
    return SchemaError(f"mapping {origin}: field '{where}': {message}")


def _str(value: object, origin: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(origin, where, f"expected a string, got {value!r}")
    return str(value)


def _names(value: object, origin: str, where: str, keyword: str | None = None) -> tuple[str, ...] | str:
    if keyword is not None and value == keyword:
        return keyword
    if not isinstance(value, list):
        extra = f" or '{keyword}'" if keyword else ""
        raise _fail(origin, where, f"expected a list of column names{extra}, got {value!r}")
    return tuple(_str(v, origin, f"{where}[{i}]") for i, v in enumerate(value))


def _value(value: object, origin: str, where: str) -> ValueSpec:
    if isinstance(value, str):
        return ValueSpec(column=value)
    if not isinstance(value, dict):
        raise _fail(origin, where, f"expected a column name or a mapping, got {value!r}")
    unknown = set(value) - _VALUE_KEYS
    if unknown:
        raise _fail(origin, where, f"unknown keys {sorted(unknown)} (known: {sorted(_VALUE_KEYS)})")
    sources = [k for k in ("column", "constant", "template") if k in value]
    if len(sources) != 1:
        raise _fail(origin, where, f"give exactly one of column, constant, template; got {sources}")
    mapping = value.get("map", {})
    if not isinstance(mapping, dict):
        raise _fail(origin, f"{where}.map", f"expected a mapping of values, got {mapping!r}")
    template = value.get("template")
    if template is not None:
        try:
            list(string.Formatter().parse(_str(template, origin, f"{where}.template")))
        except ValueError as exc:
            raise _fail(origin, f"{where}.template", str(exc)) from None
    return ValueSpec(
        column=_str(value["column"], origin, f"{where}.column") if "column" in value else None,
        constant=_str(value["constant"], origin, f"{where}.constant") if "constant" in value else None,
        template=template,
        map={str(k): _str(v, origin, f"{where}.map.{k}") for k, v in mapping.items()},
        lower=bool(value.get("lower", False)),
        default=_str(value.get("default", ""), origin, f"{where}.default"),
    )


def _time(value: object, origin: str) -> TimeSpec:
    if isinstance(value, str):
        return TimeSpec(column=value)
    if not isinstance(value, dict):
        raise _fail(origin, "ts", f"expected a column name or a mapping, got {value!r}")
    unknown = set(value) - _TS_KEYS
    if unknown:
        raise _fail(origin, "ts", f"unknown keys {sorted(unknown)} (known: {sorted(_TS_KEYS)})")
    if bool(value.get("row_index")) == ("column" in value):
        raise _fail(origin, "ts", "give either 'column' or 'row_index: true'")
    fmt = value.get("format", [])
    formats = tuple(_str(f, origin, "ts.format") for f in (fmt if isinstance(fmt, list) else [fmt]))
    epoch = value.get("epoch")
    if epoch is not None and epoch not in _EPOCH_UNITS:
        raise _fail(origin, "ts.epoch", f"expected one of {_EPOCH_UNITS}, got {epoch!r}")
    tz = _str(value.get("timezone", "UTC"), origin, "ts.timezone")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(origin, "ts.timezone", f"unknown time zone {tz!r}") from None
    base = value.get("base", 0.0)
    if isinstance(base, bool) or not isinstance(base, int | float) or not -TS_LIMIT < base < TS_LIMIT:
        raise _fail(origin, "ts.base", f"expected a number of epoch seconds within +-{TS_LIMIT:g}, got {base!r}")
    return TimeSpec(
        column=_str(value["column"], origin, "ts.column") if "column" in value else None,
        formats=formats,
        time_column=_str(value["time_column"], origin, "ts.time_column") if "time_column" in value else None,
        time_format=_str(value["time_format"], origin, "ts.time_format") if "time_format" in value else None,
        timezone=tz,
        epoch=epoch,
        row_index=bool(value.get("row_index", False)),
        base=float(base),
    )


def _validate(data: dict[str, Any], origin: str) -> ColumnMapping:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        known = ", ".join(sorted(_TOP_KEYS))
        raise SchemaError(f"mapping {origin}: unknown field '{sorted(unknown)[0]}' (known: {known})")
    for required in ("ts", "entity"):
        if required not in data:
            raise _fail(origin, required, "is required")
    fmt = data.get("format")
    if fmt not in (None, "csv", "jsonl"):
        raise _fail(origin, "format", f"expected 'csv' or 'jsonl', got {fmt!r}")
    header = data.get("header", True)
    columns = _names(data.get("columns", []), origin, "columns")
    if not header and not columns:
        raise _fail(origin, "columns", "is required when 'header' is false")
    delimiter = _str(data.get("delimiter", ","), origin, "delimiter")
    if len(delimiter) != 1:
        raise _fail(origin, "delimiter", f"expected one character, got {delimiter!r}")
    pattern = data.get("file_pattern")
    if pattern is not None:
        try:
            re.compile(_str(pattern, origin, "file_pattern"))
        except re.error as exc:
            raise _fail(origin, "file_pattern", f"not a regular expression: {exc}") from None
    optional = {k: _value(data[k], origin, k) for k in ("event_id", "peer", "kind", "action", "label") if k in data}
    return ColumnMapping(
        name=_str(data.get("name", "mapping"), origin, "name"),
        origin=origin,
        ts=_time(data["ts"], origin),
        entity=_value(data["entity"], origin, "entity"),
        format=fmt,
        header=bool(header),
        columns=tuple(columns),
        delimiter=delimiter,
        file_pattern=pattern,
        strip=bool(data.get("strip", True)),
        num=_names(data.get("num", []), origin, "num", keyword="numeric"),
        cat=_names(data.get("cat", []), origin, "cat", keyword="remaining"),
        exclude=tuple(_names(data.get("exclude", []), origin, "exclude")),
        **optional,  # type: ignore[arg-type]
    )


class TabularReader(Reader):
    """Read a CSV or JSON-lines file into events through a column mapping.

    Parameters
    ----------
    mapping:
        A built-in mapping name, a YAML path, a dict or a :class:`ColumnMapping`.
    timezone:
        Overrides the mapping's ``ts.timezone`` (the zone of naive time stamps).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "cam.csv"
    >>> _ = p.write_text("time,dev,temp,state\\n2021-03-08 13:05:55,cam1,21.5,on\\n")
    >>> m = {"ts": {"column": "time", "timezone": "America/New_York"}, "entity": "dev",
    ...      "num": "numeric", "cat": "remaining"}
    >>> f = TabularReader(m).read(p)
    >>> f[["ts", "entity", "num.temp", "cat.state"]].values.tolist()
    [[Timestamp('2021-03-08 18:05:55+0000', tz='UTC'), 'cam1', 21.5, 'on']]
    """

    name = "tabular"

    def __init__(self, mapping: str | Path | Mapping[str, Any] | ColumnMapping, timezone: str | None = None) -> None:
        loaded = load_mapping(mapping)
        if timezone is not None:
            loaded = replace(loaded, ts=replace(loaded.ts, timezone=timezone))
            _time({"row_index": True, "timezone": timezone}, f"{loaded.origin} (timezone option)")
        self.mapping = loaded

    def batches(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        dead: DeadLetter | None = None,
    ) -> Iterator[pd.DataFrame]:
        dead = dead if dead is not None else DeadLetter()
        p = Path(path)
        rows = 0
        with read_guard(p), open_text(p) as fh:
            first = fh.readline()
            jsonl = self.mapping.format == "jsonl" or (self.mapping.format is None and first.lstrip().startswith("{"))
            if not first.strip():
                raise ParseError("first line is empty, expected a header or a record", source=str(p))
            source = (
                _json_batches(fh, first, batch_size, p, dead)
                if jsonl
                else self._csv_batches(fh, first, batch_size, p, dead)
            )
            mapper = _Mapper(self.mapping, p, jsonl)
            for raw, lines in source:
                frame = mapper.frame(raw, lines, dead)
                rows += len(frame)
                if len(frame):
                    yield frame
        if rows == 0:
            raise ParseError(f"no usable rows ({dead.first() or 'no data'})", source=str(p))

    def _csv_batches(
        self, fh: IO[str], first: str, batch_size: int, p: Path, dead: DeadLetter
    ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        m = self.mapping
        if m.header:
            names = [c.strip() for c in next(csv.reader(io.StringIO(first), delimiter=m.delimiter), [])]
            start = 2
        else:
            names = list(m.columns)
            start = 1
        if not names or len(set(names)) != len(names) or "" in names:
            raise ParseError(f"header has empty or repeated column names: {first.strip()[:80]!r}", source=str(p))
        bad: list[int] = []

        def on_invalid(row: Any) -> str:
            bad.append(row.number + start - 1)
            reason = f"expected {row.expected_columns} fields, got {row.actual_columns}"
            dead.add(str(p), row.number + start - 1, reason, str(row.text))
            return "skip"

        stream = _Utf8Stream(([] if m.header else [first]), fh)
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 20),
                parse_options=pacsv.ParseOptions(
                    delimiter=m.delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False
                ),
                convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
            )
            next_line = start
            for batch in reader:
                frame = batch.to_pandas()
                pending = np.asarray(sorted(b for b in bad if b >= next_line), dtype=np.int64)
                candidates = np.arange(next_line, next_line + len(frame) + len(pending), dtype=np.int64)
                lines = candidates[~np.isin(candidates, pending)][: len(frame)]
                next_line = int(lines[-1]) + 1 if len(lines) else next_line
                blank = (frame.isna() | (frame == "")).all(axis=1).to_numpy()
                for start_at in range(0, len(frame), batch_size):
                    part = slice(start_at, start_at + batch_size)
                    keep = ~blank[part]
                    yield frame.iloc[part].loc[keep].reset_index(drop=True), lines[part][keep]
        except pa.ArrowInvalid as exc:
            raise ParseError(f"unreadable CSV: {exc}", source=str(p)) from None


class _Utf8Stream(io.RawIOBase):
    """Bytes for pyarrow from a text stream (so undecodable bytes are already replaced)."""

    def __init__(self, head: list[str], fh: IO[str]) -> None:
        self._buf = "".join(head).encode("utf-8")
        self._fh = fh

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while len(self._buf) < len(b):
            text = self._fh.read(1 << 16)
            if not text:
                break
            self._buf += text.encode("utf-8")
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _json_batches(
    fh: IO[str], first: str, batch_size: int, p: Path, dead: DeadLetter
) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    recs: list[dict[str, object]] = []
    lines: list[int] = []
    for n, line in enumerate(itertools.chain([first], fh), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            dead.add(str(p), n, f"not valid JSON: {exc}", text)
            continue
        if not isinstance(obj, dict):
            dead.add(str(p), n, "not a JSON object", text)
            continue
        recs.append(
            {str(k): None if v is None else (v if isinstance(v, str) else json.dumps(v)) for k, v in obj.items()}
        )
        lines.append(n)
        if len(recs) >= batch_size:
            yield pd.DataFrame.from_records(recs), np.asarray(lines, dtype=np.int64)
            recs, lines = [], []
    if recs:
        yield pd.DataFrame.from_records(recs), np.asarray(lines, dtype=np.int64)


class _Mapper:
    """Applies a mapping to raw string frames of one file."""

    def __init__(self, mapping: ColumnMapping, path: Path, jsonl: bool) -> None:
        self.m = mapping
        self.path = path
        name = path.name
        for suffix in (".gz", ".xz", ".bz2"):
            name = name.removesuffix(suffix)
        self.vars: dict[str, str] = {"file": name.rsplit(".", 1)[0] if "." in name else name}
        if mapping.file_pattern:
            hit = re.search(mapping.file_pattern, path.name)
            if hit:
                self.vars.update({k: v for k, v in hit.groupdict().items() if v is not None})
        self.first_line = 2 if mapping.header and not jsonl else 1
        self.num: list[str] | None = None
        self.cat: list[str] = []
        #: numeric column -> why it is numeric (ends the dead-letter reason of a non-number in it)
        self.why: dict[str, str] = {}

    def _specs(self) -> list[tuple[str, ValueSpec]]:
        m = self.m
        specs = [("entity", m.entity), ("peer", m.peer), ("kind", m.kind), ("action", m.action)]
        specs += [(k, v) for k, v in (("label", m.label), ("event_id", m.event_id)) if v is not None]
        return specs

    def _resolve(self, raw: pd.DataFrame) -> None:
        """On the first batch: check the columns exist, pick the num and cat columns."""
        m = self.m
        needed = [(where, f) for where, spec in self._specs() for f in spec.fields()]
        needed += [(f"ts.{k}", c) for k, c in (("column", m.ts.column), ("time_column", m.ts.time_column)) if c]
        needed += [("num", c) for c in (m.num if isinstance(m.num, tuple) else ())]
        needed += [("cat", c) for c in (m.cat if isinstance(m.cat, tuple) else ())]
        columns = [str(c) for c in raw.columns]
        for where, col in needed:
            if col not in columns and col not in self.vars:
                raise ParseError(
                    f"mapping {m.name}: field '{where}' names column '{col}', not in the file "
                    f"(columns: {columns[:12]}{'...' if len(columns) > 12 else ''}; "
                    f"file variables: {sorted(self.vars)})",
                    source=str(self.path),
                )
        used = {c for _, c in needed if not (isinstance(m.num, tuple) and c in m.num)}
        used |= {c for _, c in needed if isinstance(m.cat, tuple) and c in m.cat} - set(m.cat)
        used |= set(m.exclude)
        free = [c for c in columns if c not in used]
        if isinstance(m.num, tuple):
            self.why = dict.fromkeys(m.num, f"listed under 'num' in mapping {m.name}")
        else:
            listed_cat = set(m.cat) if isinstance(m.cat, tuple) else set()
            for col in (c for c in free if c not in listed_cat):
                numbers, present = _numeric_count(raw[col])
                if present and numbers >= NUMERIC_SHARE * present:
                    self.why[col] = f"numeric: {numbers:,} of the first {present:,} values are numbers"
        self.num = list(self.why)
        self.cat = list(m.cat) if isinstance(m.cat, tuple) else [c for c in free if c not in self.why]

    def frame(self, raw: pd.DataFrame, lines: np.ndarray, dead: DeadLetter) -> pd.DataFrame:
        cleaned = {}
        for col in raw.columns:
            values = raw[col].reset_index(drop=True)
            if self.m.strip and values.notna().any():
                values = values.str.strip()
            cleaned[col] = values.where(values != "")
        raw = pd.DataFrame(cleaned, index=pd.RangeIndex(len(raw)))
        if self.num is None:
            self._resolve(raw)
        keep = np.ones(len(raw), dtype=bool)
        ts = np.array(self._ts(raw, lines), dtype="float64")
        with np.errstate(invalid="ignore"):
            far = np.isfinite(ts) & ~(np.abs(ts) < TS_LIMIT)
            ts[~(np.abs(ts) < TS_LIMIT)] = np.nan
        for i in np.flatnonzero(np.isnan(ts)):
            keep[i] = False
            what = "time out of range (years 1677 to 2262)" if far[i] else "cannot read the time from"
            dead.add(str(self.path), int(lines[i]), f"{what} {self._ts_text(raw, int(i))!r}", "")
        line_s = pd.Series(lines, dtype="int64").astype(str).to_numpy(dtype=object)
        out: dict[str, Any] = {"ts": ts, "source": self.path.name + ":" + line_s}
        for where, spec in self._specs():
            out[where] = self._values(spec, raw, where)
        out.setdefault("event_id", out["source"])
        out.setdefault("label", None)
        for col in self.num or []:
            text = _column(raw, col)
            values = _to_float(text)
            wrong = _not_numbers(text, values) & keep
            for i in np.flatnonzero(wrong):
                reason = f"column '{col}' is not a number: {text.iat[i]!r} ({self.why[col]})"
                dead.add(str(self.path), int(lines[i]), reason, "")
            keep &= ~wrong
            out["num." + col] = values
        for col in self.cat:
            out["cat." + col] = _column(raw, col).to_numpy(dtype=object)
        frame = pd.DataFrame(out)
        if not keep.all():
            frame = frame.loc[keep].reset_index(drop=True)
        return normalize_frame(frame)

    def _values(self, spec: ValueSpec, raw: pd.DataFrame, where: str) -> np.ndarray:
        n = len(raw)
        if spec.constant is not None:
            s = pd.Series([spec.constant] * n, dtype=object)
        elif spec.column is not None:
            s = self._field(raw, spec.column)
        else:
            s = pd.Series([""] * n, dtype=object)
            for literal, name, _, _ in string.Formatter().parse(spec.template or ""):
                s = s + literal
                if name:
                    s = s + self._field(raw, name).fillna("")
        if spec.lower:
            s = s.str.lower()
        if spec.map:
            mapped = s.map(spec.map)
            s = mapped.where(mapped.notna(), s)
        fill = None if where == "label" and not spec.default else spec.default
        values: np.ndarray = s.astype(object).where(s.notna(), fill).to_numpy(dtype=object)
        return values

    def _field(self, raw: pd.DataFrame, name: str) -> pd.Series:
        if name in raw.columns:
            return raw[name].reset_index(drop=True).astype(object)
        return pd.Series([self.vars.get(name)] * len(raw), dtype=object)

    def _ts(self, raw: pd.DataFrame, lines: np.ndarray) -> np.ndarray:
        t = self.m.ts
        if t.row_index:
            return t.base + (lines - self.first_line).astype("float64")
        text = _column(raw, t.column or "")
        formats = list(t.formats)
        if t.time_column:
            text = text.fillna("") + " " + _column(raw, t.time_column).fillna("")
            formats = [f"{f} {t.time_format}" for f in formats] if t.time_format else formats
        if t.epoch:
            factor = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.epoch]
            return pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64") / factor
        text = text.astype(object).where(text.notna(), None)
        if not formats:
            return _seconds(_to_datetime(text, "mixed"), t.timezone)
        seconds = np.full(len(text), np.nan)
        for fmt in formats:
            todo = np.isnan(seconds)
            if not todo.any():
                break
            seconds[todo] = _seconds(_to_datetime(text[todo], fmt), t.timezone)
        return seconds

    def _ts_text(self, raw: pd.DataFrame, i: int) -> str:
        t = self.m.ts
        parts = [raw[c].iat[i] for c in (t.column, t.time_column) if c and c in raw.columns]
        return " ".join(str(v) for v in parts)


def _to_datetime(text: pd.Series, fmt: str) -> pd.Series:
    """Date-times from text in one format (or "mixed"); NaT where a value does not parse.

    Values with different UTC offsets come back in UTC.
    """
    try:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    except ValueError:  # mixed offsets
        parsed = None
    if parsed is None or not pd.api.types.is_datetime64_any_dtype(parsed):
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
    return parsed


def _seconds(parsed: pd.Series, timezone: str) -> np.ndarray:
    """Epoch seconds of date-times (naive ones are in ``timezone``); NaN for NaT.

    Microseconds hold years 1..9999, so a far-off time comes out as a number that the caller sets
    aside as out of range instead of overflowing nanoseconds.
    """
    parsed = parsed.dt.as_unit("us")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize(timezone, ambiguous=False, nonexistent="shift_forward")
    stamps = parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    seconds: np.ndarray = stamps.view("int64") / 1e6
    seconds[np.isnat(stamps)] = np.nan
    return seconds


def _column(raw: pd.DataFrame, name: str) -> pd.Series:
    if name in raw.columns:
        return raw[name].reset_index(drop=True)
    return pd.Series([None] * len(raw), dtype=object)


def _to_float(values: pd.Series) -> np.ndarray:
    """Numbers from a column of strings; NaN where a value is missing or not a number."""
    try:
        return pa.array(values, type=pa.string(), from_pandas=True).cast(pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")


def _not_numbers(text: pd.Series, values: np.ndarray) -> np.ndarray:
    """Where a column of strings holds something other than a number or a missing value.

    ``values`` is ``_to_float(text)``; an empty cell and ``nan`` count as missing.
    """
    wrong = np.isnan(values) & text.notna().to_numpy()
    if wrong.any():
        spelled = text[wrong].str.lower().str.lstrip("+-") == "nan"
        wrong[np.flatnonzero(wrong)[spelled.to_numpy()]] = False
    return wrong


def _numeric_count(text: pd.Series) -> tuple[int, int]:
    """How many values of a column of strings are numbers, and how many are present at all.

    >>> _numeric_count(pd.Series(["1", "2.5", "abc", None, "nan"]))
    (3, 4)
    """
    present = int(text.notna().sum())
    return present - int(_not_numbers(text, _to_float(text)).sum()), present
