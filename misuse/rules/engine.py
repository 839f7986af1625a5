"""The rule engine: one implementation for batches and live streams.

:meth:`RuleEngine.process` takes a frame of events (a whole file or a micro-batch), evaluates
every detection as a vectorised mask (:mod:`misuse.rules.detection`), and feeds the hits of
correlated rules, in time order, into the bounded windowed state of
:mod:`misuse.rules.correlation`. The state persists across calls: a stream calls ``process``
on each micro-batch (or :meth:`RuleEngine.process_one` per event, which builds a one-row frame
and runs the same code); a batch is :meth:`RuleEngine.run`, one call on the whole frame.

Detection hits are deduplicated per (rule, entity, ``alert_window`` bucket): the first batch
that hits a bucket raises one alert carrying that batch's hit count and event ids; later hits
in the same bucket are counted in :attr:`EngineStats.suppressed`. A batch therefore reports the
whole bucket's count, a one-event stream reports the first hit. Correlation rules raise one
alert each time a group fires. Rules that a correlation names are not alerted on their own
unless that correlation says ``generate: true`` (as in Sigma).

A hit is correlated only when every ``group-by`` field (after Sigma ``aliases``) has a value:
hits without one are counted in :attr:`EngineStats.ungrouped`, never put together in one
group. A field that names no column of the events at all is the rule not fitting the data:
with ``missing_fields="error"`` (what ``misuse rules run`` uses) it raises a
:class:`~misuse.rules.model.RuleError` naming the rule's file, line and field; with ``"skip"``
(the default, for live streams, where one micro-batch may lack a column the next one has) the
hits are counted as ungrouped and a warning is logged once per rule and field. A correlation
over a correlation may only group by fields its input groups by; that is checked when the
engine is built.
"""

from __future__ import annotations

import gc
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, SchemaError
from misuse.events import Event, events_to_frame
from misuse.rules.correlation import Fired
from misuse.rules.derive import Enricher
from misuse.rules.detection import FrameView
from misuse.rules.graph import Node, build_graph
from misuse.rules.model import Rule, RuleError
from misuse.rules.sigma import VIRTUAL, FieldMap

SEVERITY = {"informational": "low", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
MISSING_FIELDS = ("error", "skip")
log = logging.getLogger(__name__)


@dataclass
class EngineStats:
    """Counters of one engine: events seen, hits and alerts per rule, state size."""

    events: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    dropped: int = 0
    #: correlation rule id -> hits it could not group (a group-by or condition field had no value)
    ungrouped: dict[str, int] = field(default_factory=dict)
    #: correlation rule id -> why, for the first such hit (one line)
    ungrouped_reason: dict[str, str] = field(default_factory=dict)

    def add(self, table: dict[str, int], key: str, n: int) -> None:
        """Increment ``table[key]`` by ``n``."""
        table[key] = table.get(key, 0) + n


def _ts_seconds(frame: pd.DataFrame) -> np.ndarray:
    ts = frame["ts"]
    if pd.api.types.is_datetime64_any_dtype(ts):
        return ts.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    return ts.to_numpy(dtype="float64")


class _Ids:
    """Event ids of a batch, turned into strings only for the rows an alert cites."""

    def __init__(self, column: pd.Series) -> None:
        self.column = column

    def take(self, rows: np.ndarray) -> list[str]:
        return [str(x) for x in self.column.iloc[rows].tolist()]


def _plain(value: object) -> object:
    """A JSON-friendly scalar (None for missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _plain_values(values: pd.Series) -> list[object]:
    """:func:`_plain` of every value, column-wise where the dtype allows."""
    if values.dtype == object:
        return [_plain(v) for v in values.tolist()]
    return values.astype(object).where(values.notna(), None).tolist()


def _when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) while a batch is evaluated.

    Alerts and window state hold no reference cycles, so collections during a batch free
    nothing; but with pandas and pyarrow loaded a full collection costs 50-100 ms, and the
    tens of thousands of alerts of a dense rule set off two or three of them per batch. Paused,
    what the batch leaves alive is scanned once, after it. The pause must end only after the
    batch's temporaries are freed (outside the function that made them): a collection while
    they are alive moves them to the oldest generation and so brings on a full collection
    later. The collector is left as it was found.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class RuleEngine:
    """Evaluate detection and correlation rules over batches and streams.

    Parameters
    ----------
    rules:
        Loaded rules (:func:`misuse.rules.model.load_rules`).
    fields:
        Field mapping (defaults to :class:`~misuse.rules.sigma.FieldMap`).
    alert_window:
        Seconds of one deduplication bucket for detection hits.
    max_groups, max_hits:
        Bounds of each correlation's state (groups, hits per group).
    evidence:
        Most event ids attached to one alert.
    enricher:
        Adds derived columns (:mod:`misuse.rules.derive`) to each batch before evaluation.
    missing_fields:
        What a correlation does with hits whose events have no column for a ``group-by`` (or
        condition ``field``) field: ``"error"`` raises a :class:`RuleError` naming the rule, line
        and field (for batches: the rule does not fit the data); ``"skip"`` counts them in
        :attr:`EngineStats.ungrouped` and logs a warning once (for streams).

    Examples
    --------
    >>> from misuse.rules.model import parse_rules
    >>> rules = parse_rules('''
    ... title: Failed login
    ... id: r1
    ... logsource: {product: linux, service: auth}
    ... detection: {sel: {action: login.failed}, condition: sel}
    ... ---
    ... title: Brute force
    ... id: r2
    ... misuse_type: brute_force
    ... correlation: {type: event_count, rules: [r1], group-by: [peer], timespan: 5m,
    ...               condition: {gte: 3}}
    ... ''')
    >>> events = [Event(ts=float(i), entity="root", kind="auth", action="login.failed",
    ...                 peer="1.2.3.4", event_id=f"e{i}") for i in range(3)]
    >>> [a.detector for a in RuleEngine(rules).run(events_to_frame(events))]
    ['rule:r2']
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        fields: FieldMap | None = None,
        alert_window: float = 300.0,
        max_groups: int = 100_000,
        max_hits: int = 10_000,
        evidence: int = 50,
        enricher: Enricher | None = None,
        missing_fields: str = "skip",
    ) -> None:
        if missing_fields not in MISSING_FIELDS:
            raise InvalidParameterError(
                f"The 'missing_fields' parameter of RuleEngine must be one of {', '.join(MISSING_FIELDS)}. "
                f"Got {missing_fields!r} instead."
            )
        self.missing_fields = missing_fields
        self.rules = list(rules)
        self.enricher = enricher
        self.fields = fields or FieldMap()
        self.alert_window = float(alert_window)
        self.max_groups = max_groups
        self.max_hits = max_hits
        self.evidence = evidence
        self._build()
        self.reset()

    def _build(self) -> None:
        self.nodes, self.order = build_graph(self.rules, self.max_groups, self.max_hits, self.evidence)

    def reset(self) -> None:
        """Forget all windowed state and counters."""
        if self.enricher is not None:
            self.enricher = Enricher(self.enricher.max_keys)
        for node in self.nodes.values():
            if node.state is not None:
                node.state.groups.clear()
        self.stats = EngineStats()
        self._emitted: dict[str, OrderedDict[tuple[str, int], None]] = {}  # rule -> (entity, bucket)
        self._watermark = -math.inf

    def state_size(self) -> int:
        """Groups currently held across all correlations (bounded by ``max_groups`` each)."""
        return sum(len(n.state) for n in self.nodes.values() if n.state is not None)

    def run(self, frame: pd.DataFrame) -> list[Alert]:
        """Evaluate all rules over one batch from a fresh state."""
        self.reset()
        return self.process(frame)

    def process_one(self, event: Event | Mapping[str, object]) -> list[Alert]:
        """Evaluate one event (a one-row frame through the same code as batches).

        The one-row frame is built directly (``ts`` as epoch seconds) rather than through
        :func:`~misuse.events.normalize_frame`, which costs more than the rules themselves.
        """
        rec = event.to_record() if isinstance(event, Event) else dict(event)
        if "ts" not in rec or "entity" not in rec:
            return self.process(events_to_frame([event]))  # raises the SchemaError
        ts = rec["ts"]
        if not isinstance(ts, int | float):
            ts = pd.Timestamp(ts).timestamp()  # type: ignore[arg-type]
        rec["ts"] = float(ts)
        rec.setdefault("event_id", f"e{self.stats.events}")
        for col in ("peer", "kind", "action"):
            rec.setdefault(col, "")
        return self.process(pd.DataFrame({k: [v] for k, v in rec.items()}))

    def process(self, frame: pd.DataFrame) -> list[Alert]:
        """Evaluate one micro-batch, keeping windowed state for the next."""
        if len(frame) == 0:
            return []
        for col in ("ts", "entity", "event_id"):
            if col not in frame.columns:
                raise SchemaError(f"rule engine: event frame has no '{col}' column")
        with _gc_paused():  # ends once the batch's temporaries are freed; see _gc_paused
            return self._evaluate(frame)

    def _evaluate(self, frame: pd.DataFrame) -> list[Alert]:
        ts = _ts_seconds(frame)
        if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
            order = np.argsort(ts, kind="stable")
            frame = frame.iloc[order].reset_index(drop=True)
            ts = ts[order]
        self.stats.events += len(frame)
        if self.enricher is not None:
            frame = self.enricher.transform(frame)
        view = FrameView(frame, self.fields)
        ids = _Ids(frame["event_id"])
        alerts: list[Alert] = []
        hits: dict[str, np.ndarray] = {}
        for key, node in self.nodes.items():
            if node.compiled is None:
                continue
            idx = np.flatnonzero(node.compiled.mask(view))
            hits[key] = idx
            self.stats.add(self.stats.hits, key, len(idx))
            if len(idx) and node.alerts:
                new = self._detection_alerts(node, view, idx, ts, ids)
                self.stats.add(self.stats.alerts, key, len(new))
                alerts.extend(new)
        fired_rows: dict[str, list[tuple[float, dict[str, str], Fired]]] = {}
        for key in self.order:
            node = self.nodes[key]
            assert node.state is not None
            fired_rows[key] = self._correlate(node, view, hits, fired_rows, ts, ids)
            for _, _, fired in fired_rows[key]:
                alerts.append(self._correlation_alert(node, fired))
                self.stats.add(self.stats.alerts, node.rule.id, 1)
            self.stats.dropped = sum(n.state.dropped for n in self.nodes.values() if n.state is not None)
        self._watermark = max(self._watermark, float(ts[-1]))
        for node in self.nodes.values():
            if node.state is not None:
                node.state.sweep(self._watermark)
        return alerts

    def _group_values(
        self, node: Node, rule_idx: int, view: FrameView, idx: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """The hits of input ``rule_idx`` that have every group-by value, and those values.

        None when a group-by field names no column of the events (raised in "error" mode).
        Hits with a missing value are counted in ``stats.ungrouped``.
        """
        assert node.state is not None
        src = self.nodes[node.inputs[rule_idx]]
        out = []
        keep = np.ones(len(idx), dtype=bool)
        first_missing = ""
        for name in node.fields[rule_idx]:
            col = view.resolve(name, src.rule.logsource)
            if col is None:
                self._no_column(node, src, name, "group-by", len(idx))
                return None
            codes, uniq = view.factorized(col)
            hit_codes = codes[idx]
            if not first_missing and (hit_codes < 0).any():
                first_missing = name
            keep &= hit_codes >= 0
            out.append(np.array([*uniq, ""], dtype=object)[hit_codes])
        if first_missing:
            self._ungrouped(node, int((~keep).sum()), f"no value for group-by field {first_missing!r}")
            return idx[keep], [v[keep] for v in out]
        return idx, out

    def _no_column(self, node: Node, src: Node, name: str, role: str, n: int) -> None:
        """A group-by or condition field of a correlation that names no column of the events."""
        rule = node.rule
        corr = node.state.corr if node.state is not None else None
        key = "group-by" if role == "group-by" else "condition"
        if rule.correlation is not None and corr is not None:
            line, where = corr.line(key), f"correlation.{key}"
        else:  # "selection | count(x) by y": the detection's condition holds the fields
            line, where = rule.line, "detection.condition"
        what = f"{role} field {name!r} of rule {rule.title!r}"
        why = (
            f"{what} names no column of the events that rule {src.rule.title!r} matched "
            f"(no '{name}', 'num.{name}' or 'cat.{name}' column, nor an alias of its logsource)"
        )
        if self.missing_fields == "error":
            raise RuleError(why, rule.source, line, where)
        if rule.id not in self.stats.ungrouped_reason:
            log.warning("%s line %s: field '%s': %s; %d hit(s) not correlated", rule.source, line, where, why, n)
        self._ungrouped(node, n, why)

    def _ungrouped(self, node: Node, n: int, why: str) -> None:
        self.stats.add(self.stats.ungrouped, node.rule.id, n)
        self.stats.ungrouped_reason.setdefault(node.rule.id, why)

    def _correlate(
        self,
        node: Node,
        view: FrameView,
        hits: dict[str, np.ndarray],
        fired_rows: dict[str, list[tuple[float, dict[str, str], Fired]]],
        ts: np.ndarray,
        ids: _Ids,
    ) -> list[tuple[float, dict[str, str], Fired]]:
        state = node.state
        assert state is not None
        corr = state.corr
        feed: list[tuple[float, int, tuple[str, ...], object, str]] = []
        for rule_idx, ref in enumerate(node.inputs):
            src = self.nodes[ref]
            if src.compiled is not None:
                idx = hits.get(ref, np.zeros(0, np.int64))
                if not len(idx):
                    continue
                grouped = self._group_values(node, rule_idx, view, idx)
                if grouped is None:
                    continue
                idx, groups = grouped
                if not len(idx):
                    continue
                values: np.ndarray | list[None]
                if corr.value_field:
                    col = view.resolve(corr.value_field, src.rule.logsource)
                    if col is None:
                        self._no_column(node, src, corr.value_field, "condition", len(idx))
                        continue
                    if corr.type == "value_sum":
                        values = view.numeric(col)[idx]
                    else:
                        codes, uniq = view.factorized(col)
                        values = np.array([*uniq, None], dtype=object)[codes[idx]]
                else:
                    values = [None] * len(idx)
                keys = list(zip(*groups, strict=True)) if groups else [()] * len(idx)
                eids = ids.take(idx)
                for j, i in enumerate(idx.tolist()):
                    v = values[j]
                    feed.append(
                        (float(ts[i]), rule_idx, keys[j], float(v) if isinstance(v, np.floating) else v, eids[j])
                    )
            else:
                for when, group, fired in fired_rows.get(ref, []):
                    key = tuple(group[g] for g in node.fields[rule_idx])  # checked at build (_check_chain)
                    value = group[corr.value_field] if corr.value_field else None
                    for eid in fired.event_ids[-1:]:
                        feed.append((when, rule_idx, key, value, eid))
        feed.sort(key=lambda f: f[0])
        out = []
        for when, rule_idx, key, val, eid in feed:
            for fired in state.feed(when, key, val, eid, rule_idx):
                out.append((when, dict(zip(corr.group_by, key, strict=True)), fired))
        return out

    def _new_buckets(self, rule_id: str, keys: list[tuple[str, int]]) -> list[int]:
        """Indices of the (entity, bucket) keys not alerted on before; remembers them.

        Per rule, beyond 10,000 keys the first remembered are forgotten, but never those of the newest
        two buckets.
        """
        emitted = self._emitted.setdefault(rule_id, OrderedDict())
        if not emitted and len(set(keys)) == len(keys):
            keep = list(range(len(keys)))  # the common batch case: nothing to look up
            emitted.update(dict.fromkeys(keys))
        else:
            keep = []
            for g, k in enumerate(keys):
                if k not in emitted:
                    emitted[k] = None
                    keep.append(g)
        newest = max(b for _, b in keys)
        while len(emitted) > 10_000 and next(iter(emitted))[1] < newest - 1:
            emitted.popitem(last=False)
        return keep

    def _detection_alerts(self, node: Node, view: FrameView, idx: np.ndarray, ts: np.ndarray, ids: _Ids) -> list[Alert]:
        """One alert per (entity, ``alert_window`` bucket) of hits not alerted on before.

        Grouping, first and last rows, first values and evidence are array operations over all
        hits at once; what is left per alert is building the :class:`Alert` itself.
        """
        rule = node.rule
        assert node.compiled is not None
        ent_codes, ent_names = view.factorized("entity")
        bucket = np.floor(ts[idx] / self.alert_window).astype(np.int64)
        ents = ent_codes[idx]
        order = np.lexsort((idx, bucket, ents))
        s_idx, s_b, s_e = idx[order], bucket[order], ents[order]
        cut = np.flatnonzero((np.diff(s_b) != 0) | (np.diff(s_e) != 0)) + 1
        starts = np.concatenate(([0], cut))
        ends = np.concatenate((cut, [len(s_idx)]))
        names = np.array([*ent_names, ""], dtype=object)[s_e[starts]].tolist()
        keep = self._new_buckets(rule.id, list(zip(names, s_b[starts].tolist(), strict=True)))
        self.stats.suppressed += len(s_idx) - int((ends - starts)[keep].sum())
        if not keep:
            return []
        lo, hi = starts[keep], ends[keep]
        counts = (hi - lo).tolist()
        firsts = s_idx[lo]
        fields = [(f, view.resolve(f, rule.logsource)) for f in node.compiled.fields()]
        fields = [(f, c) for f, c in fields if c is not None]
        w = 1.0 / len(fields) if fields else 0.0
        columns: list[list[dict[str, Any]]] = []  # per field, its contribution to every alert
        for name, col in fields:
            assert col is not None
            if col in VIRTUAL:
                vals = _plain_values(view.fields.virtual(col, view.frame.iloc[firsts]))
            else:
                vals = _plain_values(view.series(col).iloc[firsts])
            columns.append([{"feature": name, "typical": None, "actual": v, "weight": w} for v in vals])
        columns.append([{"feature": "hits", "typical": 0, "actual": n, "weight": 0.0} for n in counts])
        # evidence: the first `evidence` rows of each kept group, in one gather
        group_of = np.repeat(np.arange(len(starts)), ends - starts)
        wanted = np.zeros(len(starts), bool)
        wanted[keep] = True
        ev_ids = ids.take(s_idx[wanted[group_of] & (np.arange(len(s_idx)) - starts[group_of] < self.evidence)])
        ev_cut = [0, *np.cumsum(np.minimum(hi - lo, self.evidence)).tolist()]
        evidence = [ev_ids[a:b] for a, b in pairwise(ev_cut)]
        entities = [names[g] for g in keep]
        when = datetime.fromtimestamp  # as _when, without a call per alert
        t_first = [when(t, UTC) for t in ts[firsts].tolist()]
        last_ts = ts[s_idx[hi - 1]].tolist()
        t_last = [a if n == 1 else when(t, UTC) for a, n, t in zip(t_first, counts, last_ts, strict=True)]
        title = rule.title
        summaries = [
            f"{title}: {n} matching event(s) for {e or '(no entity)'}" for e, n in zip(entities, counts, strict=True)
        ]
        severity, misuse_type, detector = SEVERITY[rule.level], rule.misuse_type, f"rule:{rule.id}"
        created = datetime.now(UTC)
        return [
            Alert(
                entity=e,
                window_start=t0,
                window_end=t1,
                score=float(n),
                threshold=1.0,
                severity=severity,
                misuse_type=misuse_type,
                detector=detector,
                summary=summary,
                contributions=list(contrib),
                evidence=ev,
                created_at=created,
            )
            for e, t0, t1, n, summary, contrib, ev in zip(
                entities, t_first, t_last, counts, summaries, zip(*columns, strict=True), evidence, strict=True
            )
        ]

    def _correlation_alert(self, node: Node, fired: Fired) -> Alert:
        rule = node.rule
        assert node.state is not None
        corr = node.state.corr
        group = dict(zip(corr.group_by, fired.key, strict=True))
        entity = fired.key[0] if fired.key else "*"
        what = {
            "event_count": "count()",
            "value_count": f"count({corr.value_field})",
            "value_sum": f"sum({corr.value_field})",
            "periodic": "mean interval (s)",
        }.get(corr.type, f"{corr.type}({', '.join(corr.rules)})")
        bound = next(iter(corr.condition.values()), float(len(corr.rules)))
        by = ", ".join(f"{k}={v}" for k, v in group.items())
        contributions: list[dict[str, Any]] = [
            {
                "feature": f"{what} by {', '.join(corr.group_by) or '-'}",
                "typical": bound,
                "actual": fired.value,
                "weight": 1.0,
            }
        ]
        contributions += [{"feature": k, "typical": None, "actual": v, "weight": 0.0} for k, v in group.items()]
        return Alert(
            entity=entity,
            window_start=_when(fired.first_ts),
            window_end=_when(fired.last_ts),
            score=float(fired.value),
            threshold=float(bound),
            severity=SEVERITY[rule.level],
            misuse_type=rule.misuse_type,
            detector=f"rule:{rule.id}",
            summary=f"{rule.title}: {what} = {fired.value:g} within {corr.timespan:g}s ({by or 'all events'})",
            contributions=contributions,
            evidence=fired.event_ids,
        )
