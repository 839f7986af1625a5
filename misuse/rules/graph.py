"""The rule graph: which rules feed which correlation, reading which fields, in what order.

:func:`build_graph` turns loaded rules into :class:`Node` objects for
:class:`~misuse.rules.engine.RuleEngine`: a compiled detection per detection rule, windowed
state per correlation (and per old-style ``selection | count() by`` aggregation), the rules each
correlation names resolved from ids or names, the field each ``group-by`` entry reads in each
input rule's events (Sigma ``aliases`` resolved), and the correlations in dependency order. Every
problem that does not depend on the events is raised here, naming file, line and field: a
duplicate id or name, a reference to a rule that is not loaded, an alias that names the wrong
rules or misses one, a correlation over a correlation grouped by a field its input does not group
by, and cycles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from misuse.rules.correlation import CorrelationState
from misuse.rules.detection import CompiledDetection
from misuse.rules.model import Correlation, Rule, RuleError, parse_timespan


@dataclass
class Node:
    """One rule (or an aggregation's implied correlation) as the engine evaluates it."""

    rule: Rule
    compiled: CompiledDetection | None = None
    state: CorrelationState | None = None
    #: rule ids feeding a correlation
    inputs: list[str] = field(default_factory=list)
    #: per input: the field each group-by entry reads in its events (aliases resolved)
    fields: list[tuple[str, ...]] = field(default_factory=list)
    #: whether the rule's own hits raise alerts (not for rules a correlation counts)
    alerts: bool = True


def build_graph(
    rules: Iterable[Rule], max_groups: int, max_hits: int, evidence: int
) -> tuple[dict[str, Node], list[str]]:
    """The nodes by id (aggregations as ``<id>#count``) and the correlations in evaluation order.

    Raises
    ------
    RuleError
        For rules that do not fit together (see the module docstring).
    """
    nodes: dict[str, Node] = {}
    lookup: dict[str, str] = {}
    for rule in rules:
        if rule.id in nodes:
            raise RuleError(f"duplicate rule id {rule.id!r}", rule.source, rule.line, "id")
        node = Node(rule)
        if rule.correlation is None:
            node.compiled = CompiledDetection(rule.detection, rule.logsource)
        nodes[rule.id] = node
        for key in (rule.id, rule.name):
            if key and lookup.get(key, rule.id) != rule.id:
                other = nodes[lookup[key]].rule
                raise RuleError(
                    f"{key!r} already names rule {other.title!r} ({other.source} line {other.line})",
                    rule.source,
                    rule.line,
                    "name" if key == rule.name else "id",
                )
            if key:
                lookup[key] = rule.id
    for node in list(nodes.values()):
        corr = node.rule.correlation
        agg = node.compiled.aggregation if node.compiled is not None else None
        if agg is not None:  # "selection | count(x) by y > n": a correlation over the rule itself
            window = node.rule.detection.get("timeframe", "1h")
            corr = Correlation(
                type="value_count" if agg.field else "event_count",
                rules=(node.rule.id,),
                group_by=agg.group_by,
                timespan=parse_timespan(window, node.rule.source, node.rule.line, "detection.timeframe"),
                condition={agg.op: agg.value},
                value_field=agg.field,
            )
            shadow = Node(node.rule, inputs=[node.rule.id], fields=[agg.group_by])
            shadow.state = CorrelationState(corr, max_groups, max_hits, evidence)
            nodes[node.rule.id + "#count"] = shadow
            node.alerts = False
            continue
        if corr is None:
            continue
        for ref in corr.rules:
            if ref not in lookup:
                why = f"names rule {ref!r}, which is not loaded"
                raise RuleError(why, node.rule.source, corr.line("rules"), "correlation.rules")
            node.inputs.append(lookup[ref])
        node.fields = _input_fields(node.rule, corr, node.inputs, lookup)
        node.state = CorrelationState(corr, max_groups, max_hits, evidence)
    for node in nodes.values():
        if node.state is not None and not node.state.corr.generate:
            for ref in node.inputs:
                if nodes[ref].compiled is not None:
                    nodes[ref].alerts = False
    order = _topological(nodes)
    for node in nodes.values():
        if node.state is not None and node.rule.correlation is not None:
            _check_chain(nodes, node)
    return nodes, order


def _input_fields(rule: Rule, corr: Correlation, inputs: list[str], lookup: Mapping[str, str]) -> list[tuple[str, ...]]:
    """Per correlated rule, the field each ``group-by`` entry reads (Sigma aliases resolved)."""
    by_input: dict[str, dict[str, str]] = {ref: {} for ref in inputs}
    for alias, mapping in corr.aliases.items():
        where = f"correlation.aliases.{alias}"
        for ref, name in mapping.items():
            at = corr.line(f"aliases.{alias}.{ref}")
            if ref not in lookup:
                raise RuleError(f"names rule {ref!r}, which is not loaded", rule.source, at, where)
            if lookup[ref] not in by_input:
                raise RuleError(
                    f"names rule {ref!r}, which this correlation does not list in 'rules'", rule.source, at, where
                )
            by_input[lookup[ref]][alias] = name
    out = []
    for ref, ref_name in zip(inputs, corr.rules, strict=True):
        names = []
        for g in corr.group_by:
            if g in corr.aliases and g not in by_input[ref]:
                raise RuleError(
                    f"gives no field for rule {ref_name!r}: an alias needs one for every rule in 'rules'",
                    rule.source,
                    corr.line(f"aliases.{g}"),
                    f"correlation.aliases.{g}",
                )
            names.append(by_input[ref].get(g, g))
        out.append(tuple(names))
    return out


def _check_chain(nodes: Mapping[str, Node], node: Node) -> None:
    """A correlation fed by a correlation groups only by fields its input groups by."""
    corr = node.rule.correlation
    assert corr is not None
    for ref, names in zip(node.inputs, node.fields, strict=True):
        inner = nodes[ref].rule.correlation
        if inner is None or ref == node.rule.id:
            continue
        title = nodes[ref].rule.title
        for name in names:
            if name not in inner.group_by:
                raise RuleError(
                    f"field {name!r} is not a group-by field of the correlation {title!r} it counts (that one "
                    f"groups by {', '.join(inner.group_by) or 'nothing'}); group by one of those, or map it with "
                    "'aliases'",
                    node.rule.source,
                    corr.line("group-by"),
                    "correlation.group-by",
                )
        if corr.value_field and corr.value_field not in inner.group_by:
            raise RuleError(
                f"field {corr.value_field!r} is not a group-by field of the correlation {title!r} it counts",
                node.rule.source,
                corr.line("condition"),
                "correlation.condition",
            )


def _topological(nodes: Mapping[str, Node]) -> list[str]:
    order: list[str] = []
    done: set[str] = set()

    def visit(key: str, path: tuple[str, ...]) -> None:
        if key in done:
            return
        if key in path:
            rule = nodes[key].rule
            where = rule.correlation.line("rules") if rule.correlation is not None else rule.line
            raise RuleError(f"correlation cycle: {' -> '.join((*path, key))}", rule.source, where, "correlation.rules")
        node = nodes[key]
        for ref in node.inputs:
            if ref != key:
                visit(ref, (*path, key))
        done.add(key)
        if node.state is not None:
            order.append(key)

    for key in nodes:
        visit(key, ())
    return order
