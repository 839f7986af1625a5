"""Sigma detections compiled into vectorised predicates over event frames.

A detection is compiled once (:class:`CompiledDetection`) into a predicate that takes a
:class:`FrameView` and returns a boolean mask, one value per event. Batches evaluate it over
the whole frame; the streaming path evaluates the same predicate on a micro-batch (or a
one-row frame). String tests run on the *distinct* values of a column (``pd.factorize``) and
are mapped back through the codes, so a selection costs a factorize plus a gather, not a
Python loop over events.

Supported: selections as field maps (AND), lists of maps (OR) and keyword lists; values with
``*``/``?`` wildcards (case-insensitive, as in Sigma), lists (OR, or AND with ``|all``), null,
numbers; modifiers ``contains``, ``startswith``, ``endswith``, ``all``, ``re`` (with ``i``,
``m``, ``s``), ``cidr``, ``exists``, ``gt``, ``gte``, ``lt``, ``lte``, ``cased``, ``fieldref``;
conditions with ``and``, ``or``, ``not``, parentheses, ``1 of``/``any of``/``all of`` with a
name pattern or ``them``, and the older aggregation ``| count(field) by group > n``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd

from misuse.rules.sigma import MESSAGE, VIRTUAL, FieldMap

MODIFIERS = frozenset(
    {"contains", "startswith", "endswith", "all", "re", "i", "m", "s", "cidr", "exists"}
    | {"gt", "gte", "lt", "lte", "cased", "fieldref"}
)
_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9_*?.\-]+)")
Mask = np.ndarray


def split_field(key: str) -> tuple[str, tuple[str, ...]]:
    """Split ``field|mod1|mod2`` into the field name and its modifiers.

    Raises
    ------
    ValueError
        For an unknown modifier.
    """
    parts = str(key).split("|")
    mods = tuple(parts[1:])
    for m in mods:
        if m not in MODIFIERS:
            raise ValueError(f"unsupported modifier {m!r} (supported: {', '.join(sorted(MODIFIERS))})")
    return parts[0], mods


@dataclass(frozen=True)
class Aggregation:
    """The older Sigma aggregation ``selection | count(field) by group > n``."""

    field: str
    group_by: tuple[str, ...]
    op: str
    value: float


_AGG = re.compile(
    r"^count\(\s*([\w.\-]*)\s*\)(?:\s+by\s+([\w.\-]+(?:\s*,\s*[\w.\-]+)*))?\s*(>=|<=|>|<|==|=)\s*(\d+(?:\.\d+)?)$"
)
_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "=": "eq", "==": "eq"}


def parse_condition(text: str, names: Sequence[str]) -> tuple[Any, Aggregation | None]:
    """Parse a condition into a small tree (and an aggregation, if any).

    Raises
    ------
    ValueError
        For a syntax error or a selection name that is not defined.
    """
    expr, _, agg_text = text.partition("|")
    agg = None
    if agg_text.strip():
        m = _AGG.match(agg_text.strip())
        if m is None:
            raise ValueError(f"unsupported aggregation {agg_text.strip()!r} (expected 'count(field) by group > n')")
        if m[3] in ("<", "<="):
            raise ValueError("aggregations with an upper bound need end-of-window timers and are not supported")
        groups = tuple(g.strip() for g in (m[2] or "").split(",") if g.strip())
        agg = Aggregation(field=m[1], group_by=groups, op=_OPS[m[3]], value=float(m[4]))
    tokens = _tokenize(expr)
    parser = _Parser(tokens, list(names))
    tree = parser.parse_or()
    if parser.pos != len(tokens):
        raise ValueError(f"unexpected {tokens[parser.pos]!r} in condition {text!r}")
    return tree, agg


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read condition {text!r} at character {pos + 1}")
        tokens.append(m[1])
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not tokens:
        raise ValueError("empty condition")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], names: list[str]) -> None:
        self.tokens = tokens
        self.names = names
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        tok = self._peek()
        if tok is None:
            raise ValueError("condition ends too early")
        self.pos += 1
        return tok

    def parse_or(self) -> Any:
        parts = [self.parse_and()]
        while (self._peek() or "").lower() == "or":
            self._take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def parse_and(self) -> Any:
        parts = [self.parse_not()]
        while (self._peek() or "").lower() == "and":
            self._take()
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def parse_not(self) -> Any:
        if (self._peek() or "").lower() == "not":
            self._take()
            return ("not", self.parse_not())
        return self.parse_atom()

    def parse_atom(self) -> Any:
        tok = self._take()
        if tok == "(":
            inner = self.parse_or()
            if self._take() != ")":
                raise ValueError("missing ')' in condition")
            return inner
        if tok.lower() in ("1", "any", "all") and (self._peek() or "").lower() == "of":
            self._take()
            target = self._take()
            pattern = "*" if target.lower() == "them" else target
            matched = [n for n in self.names if fnmatchcase(n, pattern)]
            if not matched:
                raise ValueError(f"no selection matches {target!r} (known: {', '.join(self.names)})")
            return ("all" if tok.lower() == "all" else "or", [("sel", n) for n in matched])
        if tok in ("(", ")") or tok.lower() in ("and", "or", "not", "of"):
            raise ValueError(f"unexpected {tok!r} in condition")
        if tok not in self.names:
            raise ValueError(f"unknown selection {tok!r} (known: {', '.join(self.names)})")
        return ("sel", tok)


SMALL = 16  # frames up to this many rows (single events, tiny micro-batches) skip pd.factorize


def _is_na(value: object) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def factorize_small(values: list[object]) -> tuple[np.ndarray, list[str]]:
    """``pd.factorize`` for a few values, without its per-call cost (about 0.1 ms).

    Codes in order of first appearance, -1 for missing values; distinct values as strings.

    >>> factorize_small(["b", None, "a", "b"])
    (array([ 0, -1,  1,  0]), ['b', 'a'])
    """
    seen: dict[object, int] = {}
    codes = np.empty(len(values), dtype=np.intp)
    for i, v in enumerate(values):
        codes[i] = -1 if _is_na(v) else seen.setdefault(v, len(seen))
    return codes, [str(u) for u in seen]


class FrameView:
    """An event frame plus per-column caches shared by every rule evaluated on it.

    Parameters
    ----------
    frame:
        Events in the canonical form (:func:`misuse.events.normalize_frame`).
    fields:
        How Sigma field names map onto the frame's columns.
    """

    def __init__(self, frame: pd.DataFrame, fields: FieldMap | None = None) -> None:
        self.frame = frame
        self.fields = fields or FieldMap()
        self.n = len(frame)
        self.columns = frozenset(frame.columns)  # once: iterating a string Index is slow
        self._resolved: dict[tuple[str, tuple[tuple[str, str], ...]], str | None] = {}
        self._factor: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._numeric: dict[str, np.ndarray] = {}
        self._series: dict[str, pd.Series] = {}
        self._is_num: dict[str, bool] = {}

    def series(self, column: str) -> pd.Series:
        """A column of the frame, looked up once."""
        hit = self._series.get(column)
        if hit is None:
            hit = self.frame[column]
            self._series[column] = hit
        return hit

    def resolve(self, name: str, logsource: Mapping[str, str]) -> str | None:
        """Column (or :data:`MESSAGE`) a Sigma field name refers to; None when absent (cached)."""
        key = (name, tuple((k, str(v)) for k, v in logsource.items()))
        if key not in self._resolved:
            self._resolved[key] = self.fields.resolve(name, self.columns, logsource)
        return self._resolved[key]

    def factorized(self, column: str) -> tuple[np.ndarray, list[str]]:
        """Codes (-1 for missing) and distinct values as strings, cached."""
        hit = self._factor.get(column)
        if hit is None:
            series = self.fields.virtual(column, self.frame) if column in VIRTUAL else self.series(column)
            if self.n <= SMALL and not isinstance(series.dtype, pd.CategoricalDtype):
                hit = factorize_small(series.tolist())
            else:
                codes, uniques = pd.factorize(series, use_na_sentinel=True)
                strs = ["" if u is None else str(u) for u in np.asarray(uniques, dtype=object)]
                hit = (np.asarray(codes), strs)
            self._factor[column] = hit
        return hit

    def numeric(self, column: str) -> np.ndarray:
        """The column as float64 (NaN where not a number), cached."""
        hit = self._numeric.get(column)
        if hit is None:
            series = self.series(column)
            if pd.api.types.is_numeric_dtype(series):
                hit = series.to_numpy(dtype="float64", na_value=np.nan)
            else:
                hit = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            self._numeric[column] = hit
        return hit

    def is_numeric(self, column: str) -> bool:
        """True for a numeric column."""
        hit = self._is_num.get(column)
        if hit is None:
            hit = column not in VIRTUAL and bool(pd.api.types.is_numeric_dtype(self.series(column)))
            self._is_num[column] = hit
        return hit

    def present(self, column: str) -> Mask:
        """Mask of events where the column has a value (not null, not "")."""
        if self.is_numeric(column):
            return ~np.isnan(self.numeric(column))
        codes, uniq = self.factorized(column)
        ok = np.array([u != "" for u in uniq] + [False], dtype=bool)
        return ok[codes]


def _wild_regex(value: str, cased: bool) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            out.append(re.escape(value[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$", 0 if cased else re.IGNORECASE | re.DOTALL)


def _string_test(value: Any, mods: tuple[str, ...]) -> Callable[[str], bool]:
    """A test on one distinct string value for one Sigma value with its modifiers."""
    if "re" in mods:
        flags = (re.IGNORECASE if "i" in mods else 0) | (re.MULTILINE if "m" in mods else 0)
        flags |= re.DOTALL if "s" in mods else 0
        rx = re.compile(str(value), flags)
        return lambda s: rx.search(s) is not None
    if "cidr" in mods:
        net = ipaddress.ip_network(str(value), strict=False)

        def in_net(s: str) -> bool:
            try:
                return ipaddress.ip_address(s) in net
            except ValueError:
                return False

        return in_net
    text = str(value)
    if "contains" in mods:
        text = f"*{text}*"
    elif "startswith" in mods:
        text = f"{text}*"
    elif "endswith" in mods:
        text = f"*{text}"
    cased = "cased" in mods
    if "*" not in text and "?" not in text and "\\" not in text:
        if cased:
            return lambda s: s == text
        low = text.lower()
        return lambda s: s.lower() == low
    rx = _wild_regex(text, cased)
    return lambda s: rx.match(s) is not None


def _value_mask(view: FrameView, column: str | None, value: Any, mods: tuple[str, ...]) -> Mask:
    n = view.n
    if "exists" in mods:
        want = bool(value) if not isinstance(value, str) else value.lower() == "true"
        has = np.zeros(n, bool) if column is None else view.present(column)
        return has if want else ~has
    if column is None:
        return np.full(n, value is None)
    if value is None:
        return ~view.present(column)
    if "fieldref" in mods:
        other = view.resolve(str(value), {})
        if other is None:
            return np.zeros(n, bool)
        if view.is_numeric(column) and view.is_numeric(other):
            return view.numeric(column) == view.numeric(other)
        left = view.series(column).astype(str).str.lower().to_numpy()
        right = view.series(other).astype(str).str.lower().to_numpy()
        return np.asarray(left == right, dtype=bool)
    for op in ("gt", "gte", "lt", "lte"):
        if op in mods:
            x = view.numeric(column) if column not in VIRTUAL else np.full(n, np.nan)
            v = float(value)
            with np.errstate(invalid="ignore"):
                return {"gt": x > v, "gte": x >= v, "lt": x < v, "lte": x <= v}[op]
    string_mods = {"contains", "startswith", "endswith", "re", "cidr"}
    if view.is_numeric(column) and not string_mods.intersection(mods):
        if str(value) == "*":
            return view.present(column)
        try:
            return view.numeric(column) == float(value)
        except (TypeError, ValueError):
            return np.zeros(n, bool)
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if str(value) == "*" and not string_mods.intersection(mods):
        return view.present(column)
    codes, uniq = view.factorized(column)
    if view.is_numeric(column):
        uniq = [f"{float(u):g}" if u else "" for u in uniq]
    test = _string_test(value, mods)
    ok = np.fromiter((test(u) for u in uniq), dtype=bool, count=len(uniq))
    return np.append(ok, False)[codes]


class CompiledDetection:
    """A rule's detection compiled once into a mask function over frames.

    Parameters
    ----------
    detection:
        The rule's ``detection`` mapping (selections plus ``condition``).
    logsource:
        The rule's logsource; it chooses the Sigma field aliases.

    Examples
    --------
    >>> import pandas as pd
    >>> det = {"sel": {"dst_port": [23, 2323]}, "condition": "sel"}
    >>> frame = pd.DataFrame({"entity": ["a", "b"], "num.dst_port": [23.0, 80.0]})
    >>> CompiledDetection(det, {}).mask(FrameView(frame)).tolist()
    [True, False]
    """

    def __init__(self, detection: Mapping[str, Any], logsource: Mapping[str, str]) -> None:
        self.logsource = dict(logsource)
        self.selections = {
            k: v for k, v in detection.items() if k not in ("condition", "timeframe") and not k.startswith("__")
        }
        conds = detection["condition"]
        cond_list = conds if isinstance(conds, list) else [conds]
        parsed = [parse_condition(str(c), list(self.selections)) for c in cond_list]
        self.trees = [t for t, _ in parsed]
        self.aggregation = next((a for _, a in parsed if a is not None), None)

    def fields(self) -> list[str]:
        """Every Sigma field name the detection tests (keywords count as ``message``)."""
        out: list[str] = []
        for body in self.selections.values():
            maps = body if isinstance(body, list) else [body]
            for m in maps:
                if isinstance(m, dict):
                    out.extend(split_field(k)[0] for k in m if not k.startswith("__"))
                else:
                    out.append("message")
        return list(dict.fromkeys(out))

    def _selection(self, view: FrameView, body: Any) -> Mask:
        if isinstance(body, dict):
            mask = np.ones(view.n, bool)
            for key, values in body.items():
                if key.startswith("__"):
                    continue
                name, mods = split_field(key)
                column = view.resolve(name, self.logsource)
                vals = values if isinstance(values, list) else [values]
                parts = [_value_mask(view, column, v, mods) for v in vals] or [np.zeros(view.n, bool)]
                mask &= np.logical_and.reduce(parts) if "all" in mods else np.logical_or.reduce(parts)
            return mask
        items = body if isinstance(body, list) else [body]
        if items and all(isinstance(b, dict) for b in items):
            return np.logical_or.reduce([self._selection(view, b) for b in items])
        parts = [_value_mask(view, MESSAGE, v, ("contains",)) for v in items]
        return np.logical_or.reduce(parts) if parts else np.zeros(view.n, bool)

    def _eval(self, view: FrameView, node: Any, cache: dict[str, Mask]) -> Mask:
        op = node[0]
        if op == "sel":
            if node[1] not in cache:
                cache[node[1]] = self._selection(view, self.selections[node[1]])
            return cache[node[1]]
        if op == "not":
            return ~self._eval(view, node[1], cache)
        parts = [self._eval(view, child, cache) for child in node[1]]
        return np.logical_or.reduce(parts) if op == "or" else np.logical_and.reduce(parts)

    def mask(self, view: FrameView) -> Mask:
        """Boolean mask of the events the detection matches."""
        if view.n == 0:
            return np.zeros(0, bool)
        cache: dict[str, Mask] = {}
        return np.logical_or.reduce([self._eval(view, t, cache) for t in self.trees])
