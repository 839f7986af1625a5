"""The rule format: a compatible subset of Sigma, validated on load.

A rule file holds one or more YAML documents. Each is either a *detection rule* (``detection``
with named selections and a ``condition``) or a *correlation rule* (``correlation`` with a
``type``, the ``rules`` it counts, ``group-by``, ``timespan`` and a ``condition``), as in the
Sigma specification. Supported Sigma attributes: ``title``, ``id``, ``name``, ``status``,
``description``, ``references``, ``author``, ``date``, ``modified``, ``logsource``, ``tags``
(MITRE ATT&CK ids such as ``attack.t1110``), ``falsepositives``, ``level``, ``fields`` and
``related``. Project attributes (ignored by other Sigma tools): ``misuse_type`` (one of
:class:`~misuse.alerts.types.MisuseType`), ``confidence`` (the probability, 0..1, that a hit is
a true positive, used by risk fusion) and ``tests`` (where the rule's test lives).

Validation errors name the file, the line and the field::

    pack/telnet.yml line 12: field 'detection.condition': unknown selection 'sel2' (known: selection)

Inside ``correlation`` only the Sigma keys (``type``, ``rules``, ``aliases``, ``group-by``,
``timespan``, ``condition``, ``generate``) and, for ``periodic``, ``max_cv`` and ``min_interval``
are accepted; anything else is an error rather than silently ignored. ``aliases`` follows the
Sigma correlation specification: ``{alias: {rule name or id: field}}`` names, per correlated
rule, the field whose value the alias stands for, and every alias is used in ``group-by``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from misuse.alerts.types import MisuseType
from misuse.errors import SchemaError

LEVELS = ("informational", "low", "medium", "high", "critical")
STATUSES = ("stable", "test", "experimental", "deprecated", "unsupported")
CORRELATION_TYPES = (
    "event_count",
    "value_count",
    "value_sum",
    "temporal",
    "temporal_ordered",
    "periodic",  # project extension: periodic contact (beaconing)
)
CONDITION_OPS = ("gt", "gte", "lt", "lte", "eq", "neq")
CORRELATION_KEYS = ("type", "rules", "aliases", "group-by", "timespan", "condition", "generate")
PERIODIC_KEYS = ("max_cv", "min_interval")
EXTENSION_TYPES = frozenset({"periodic"})
_TIMESPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_KNOWN_KEYS = frozenset(
    {
        "title",
        "id",
        "name",
        "status",
        "description",
        "references",
        "author",
        "date",
        "modified",
        "logsource",
        "detection",
        "correlation",
        "tags",
        "falsepositives",
        "level",
        "fields",
        "related",
        "license",
        "taxonomy",
        "scope",
        "misuse_type",
        "confidence",
        "tests",
        "generate",
    }
)


class RuleError(SchemaError):
    """A rule file is not a valid rule; the message names file, line and field.

    Parameters
    ----------
    message:
        What is wrong.
    source:
        The rule file (or "<text>").
    line:
        1-based line of the offending field, when known.
    field_name:
        Dotted path of the offending field (``detection.condition``).
    """

    def __init__(self, message: str, source: str, line: int | None = None, field_name: str = "") -> None:
        self.source = source
        self.line = line
        self.field_name = field_name
        where = source + (f" line {line}" if line else "")
        what = f"field '{field_name}': " if field_name else ""
        super().__init__(f"{where}: {what}{message}")


@dataclass(frozen=True)
class Correlation:
    """The ``correlation`` section of a Sigma correlation rule.

    Attributes
    ----------
    type:
        ``event_count``, ``value_count``, ``value_sum``, ``temporal``, ``temporal_ordered`` or the
        project extension ``periodic`` (intervals between events with a coefficient of variation at
        most ``max_cv``).
    rules:
        Ids or names of the rules whose hits are correlated.
    group_by:
        Fields whose values must be equal within one group.
    timespan:
        Window length in seconds.
    condition:
        Operator -> number (``{"gte": 10}``); for value_count/value_sum also ``field``.
    value_field:
        The field counted (value_count) or summed (value_sum).
    max_cv:
        ``periodic`` only: the largest coefficient of variation of the inter-event intervals.
    min_interval:
        ``periodic`` only: the smallest mean interval in seconds (floods are regular too).
    generate:
        Whether the detection rules it names also alert on their own (Sigma ``generate``).
    aliases:
        Sigma field-name aliases: alias -> (rule id or name -> the field holding the alias's value
        in that rule's events). Each alias is a ``group_by`` entry.
    lines:
        The line of each key of the ``correlation`` section, for errors found after loading.
    """

    type: str
    rules: tuple[str, ...]
    group_by: tuple[str, ...]
    timespan: float
    condition: Mapping[str, float]
    value_field: str = ""
    max_cv: float = 0.2
    min_interval: float = 0.0
    generate: bool = False
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)

    def line(self, key: str) -> int | None:
        """The line of ``key`` (dotted: ``aliases.ip.rule_a``) in the ``correlation`` section, else of
        the nearest enclosing key, else of the section (None if not known)."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            hit = self.lines.get(".".join(parts[:n]))
            if hit:
                return hit
        return self.lines.get("__section__")


@dataclass(frozen=True)
class Rule:
    """One rule as loaded and validated.

    ``raw`` keeps the document exactly as read, so export writes the rule back unchanged.
    """

    title: str
    id: str
    level: str
    raw: Mapping[str, Any]
    source: str = "<text>"
    line: int = 1
    name: str = ""
    status: str = "experimental"
    description: str = ""
    references: tuple[str, ...] = ()
    author: str = ""
    tags: tuple[str, ...] = ()
    logsource: Mapping[str, str] = field(default_factory=dict)
    detection: Mapping[str, Any] = field(default_factory=dict)
    correlation: Correlation | None = None
    misuse_type: str = MisuseType.ANOMALY.value
    confidence: float = 0.5
    falsepositives: tuple[str, ...] = ()

    @property
    def condition(self) -> str | list[str]:
        """The detection condition (empty for correlation rules)."""
        cond = self.detection.get("condition", "")
        return list(cond) if isinstance(cond, list) else str(cond)

    @property
    def attack_ids(self) -> list[str]:
        """MITRE ATT&CK technique ids from the tags (``attack.t1110.001`` -> ``T1110.001``)."""
        return [t.split(".", 1)[1].upper() for t in self.tags if re.match(r"^attack\.t\d{4}", t, re.I)]


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records the line of every mapping key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[str(key) if not isinstance(key, str) else key] = loader.construct_object(value_node, deep=True)
        lines[str(key)] = key_node.start_mark.line + 1
    mapping["__lines__"] = lines
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]


def strip_lines(value: Any) -> Any:
    """Remove the line bookkeeping that loading adds to every mapping."""
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k not in ("__lines__", "__line__")}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


def _line(doc: Mapping[str, Any], key: str) -> int | None:
    lines = doc.get("__lines__", {})
    return lines.get(key) or doc.get("__line__")


def parse_timespan(text: object, source: str, line: int | None, where: str) -> float:
    """Seconds in a Sigma timespan such as ``15m`` or ``24h``.

    >>> parse_timespan("15m", "x.yml", 3, "correlation.timespan")
    900.0
    """
    m = _TIMESPAN.match(str(text).strip())
    if m is None:
        raise RuleError(f"expected a timespan like 30s, 15m, 24h or 7d, got {text!r}", source, line, where)
    return float(m[1]) * _UNITS[m[2]]


def load_rules(path: str | Path) -> list[Rule]:
    """Load and validate every rule in a YAML file or, for a folder, in its ``*.yml``/``*.yaml`` files.

    Raises
    ------
    RuleError
        For a document that is not a valid rule (naming file, line and field), and for a file that
        is not UTF-8 text or holds no rule (empty, or comments only).
    """
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.rglob("*.yml"), *p.rglob("*.yaml")])
        return [r for f in files for r in load_rules(f)]
    if not p.is_file():
        raise RuleError("no such rule file", str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RuleError(f"not a YAML rule file: not UTF-8 text (byte {exc.start}: {exc.reason})", str(p)) from None
    rules = parse_rules(text, source=str(p))
    if not rules:
        raise RuleError("no rule in the file (it is empty or holds only comments)", str(p))
    return rules


def parse_rules(text: str, source: str = "<text>") -> list[Rule]:
    """Parse and validate the rules in a YAML text (one or more documents).

    Examples
    --------
    >>> rules = parse_rules('''
    ... title: Telnet connection
    ... id: 1f0c2a3e-0000-4000-8000-000000000001
    ... logsource: {category: network_connection}
    ... detection:
    ...   selection: {dst_port: [23, 2323]}
    ...   condition: selection
    ... level: low
    ... ''')
    >>> rules[0].title, rules[0].level
    ('Telnet connection', 'low')
    """
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LineLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]  # one line, also for a ReaderError
        raise RuleError(f"not valid YAML: {problem}", source, line) from None
    return [_validate(doc, source) for doc in docs]


def _validate(doc: Any, source: str) -> Rule:
    if not isinstance(doc, dict):
        raise RuleError(f"a rule must be a mapping, got {type(doc).__name__}", source, 1)
    top = doc.get("__line__", 1)
    for key in ("title", "id"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise RuleError(f"required, must be a non-empty string (got {doc.get(key)!r})", source, top, key)
    level = str(doc.get("level", "medium"))
    if level not in LEVELS:
        raise RuleError(f"must be one of {', '.join(LEVELS)}, got {level!r}", source, _line(doc, "level"), "level")
    status = str(doc.get("status", "experimental"))
    if status not in STATUSES:
        raise RuleError(f"must be one of {', '.join(STATUSES)}, got {status!r}", source, _line(doc, "status"), "status")
    unknown = sorted(k for k in doc if k not in _KNOWN_KEYS and not k.startswith("__") and not k.startswith("x-"))
    if unknown:
        raise RuleError(
            f"unknown attribute (Sigma attributes or misuse_type/confidence/tests, or an x- prefix): {unknown[0]!r}",
            source,
            _line(doc, unknown[0]),
            unknown[0],
        )
    has_det, has_corr = "detection" in doc, "correlation" in doc
    if has_det == has_corr:
        raise RuleError("a rule needs exactly one of 'detection' or 'correlation'", source, top, "detection")
    mtype = str(doc.get("misuse_type", MisuseType.ANOMALY.value))
    if mtype not in {m.value for m in MisuseType}:
        raise RuleError(
            f"must be one of {', '.join(m.value for m in MisuseType)}, got {mtype!r}",
            source,
            _line(doc, "misuse_type"),
            "misuse_type",
        )
    conf = doc.get("confidence", 0.5)
    if not isinstance(conf, int | float) or isinstance(conf, bool) or not 0.0 < float(conf) < 1.0:
        raise RuleError(f"must be a number in (0, 1), got {conf!r}", source, _line(doc, "confidence"), "confidence")
    detection: dict[str, Any] = {}
    correlation = None
    generate = doc.get("generate")
    if generate is not None and (has_det or not isinstance(generate, bool)):
        why = "only a correlation rule has it" if has_det else f"must be true or false, got {generate!r}"
        raise RuleError(why, source, _line(doc, "generate"), "generate")
    if has_det:
        detection = _check_detection(doc["detection"], source, _line(doc, "detection"))
    else:
        correlation = _check_correlation(doc["correlation"], source, _line(doc, "correlation"), generate)
    logsource = doc.get("logsource", {}) or {}
    if not isinstance(logsource, dict):
        raise RuleError("must be a mapping", source, _line(doc, "logsource"), "logsource")
    return Rule(
        title=doc["title"].strip(),
        id=str(doc["id"]).strip(),
        level=level,
        raw=strip_lines(doc),
        source=source,
        line=int(top),
        name=str(doc.get("name", "") or ""),
        status=status,
        description=str(doc.get("description", "") or "").strip(),
        references=tuple(str(r) for r in _as_list(doc.get("references"))),
        author=str(doc.get("author", "") or ""),
        tags=tuple(str(t) for t in _as_list(doc.get("tags"))),
        logsource={k: str(v) for k, v in strip_lines(logsource).items()},
        detection=detection,
        correlation=correlation,
        misuse_type=mtype,
        confidence=float(conf),
        falsepositives=tuple(str(f) for f in _as_list(doc.get("falsepositives"))),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _check_detection(det: Any, source: str, line: int | None) -> dict[str, Any]:
    from misuse.rules.detection import parse_condition, split_field  # detection imports this module

    if not isinstance(det, dict):
        raise RuleError("must be a mapping of selections plus 'condition'", source, line, "detection")
    if "condition" not in det:
        raise RuleError("required", source, det.get("__line__", line), "detection.condition")
    names = [k for k in det if k not in ("condition", "timeframe") and not k.startswith("__")]
    if not names:
        raise RuleError("no selections defined", source, det.get("__line__", line), "detection")
    for name in names:
        body = det[name]
        where = f"detection.{name}"
        sel_line = _line(det, name)
        if isinstance(body, dict):
            maps = [body]
        elif isinstance(body, list):
            if all(isinstance(b, dict) for b in body):
                maps = body
            elif all(not isinstance(b, dict | list) for b in body):
                maps = []  # keywords
            else:
                raise RuleError("a list must hold only keywords or only field maps", source, sel_line, where)
        elif isinstance(body, str | int | float):
            maps = []
        else:
            raise RuleError(f"must be a map or a list, got {type(body).__name__}", source, sel_line, where)
        for m in maps:
            for key in m:
                if key.startswith("__"):
                    continue
                try:
                    _, mods = split_field(key)
                    _check_values(m[key], mods)
                except ValueError as exc:
                    raise RuleError(str(exc), source, _line(m, key), f"{where}.{key}") from None
    conditions = det["condition"] if isinstance(det["condition"], list) else [det["condition"]]
    for cond in conditions:
        try:
            parse_condition(str(cond), names)
        except ValueError as exc:
            raise RuleError(str(exc), source, _line(det, "condition"), "detection.condition") from None
    if "timeframe" in det:
        parse_timespan(det["timeframe"], source, _line(det, "timeframe"), "detection.timeframe")
    return det


def _check_values(values: Any, mods: tuple[str, ...]) -> None:
    """Raise ValueError for a value its modifiers cannot use (bad regex, network, number)."""
    import ipaddress

    for v in values if isinstance(values, list) else [values]:
        if isinstance(v, dict | list):
            raise ValueError(f"a value must be a scalar, got {type(v).__name__}")
        if "re" in mods:
            try:
                re.compile(str(v))
            except re.error as exc:
                raise ValueError(f"bad regular expression {v!r}: {exc}") from None
        if "cidr" in mods:
            try:
                ipaddress.ip_network(str(v), strict=False)
            except ValueError:
                raise ValueError(f"not a network in CIDR notation: {v!r}") from None
        if {"gt", "gte", "lt", "lte"} & set(mods):
            try:
                float(v)
            except (TypeError, ValueError):
                raise ValueError(f"comparison needs a number, got {v!r}") from None


def _check_correlation(corr: Any, source: str, line: int | None, top_generate: bool | None = None) -> Correlation:
    """Validate a ``correlation`` section; ``top_generate`` is a top-level ``generate`` (Sigma 2's
    schema puts it there, pySigma reads it inside the section; either is honoured)."""
    if not isinstance(corr, dict):
        raise RuleError("must be a mapping", source, line, "correlation")
    ctype = corr.get("type")
    if ctype not in CORRELATION_TYPES:
        raise RuleError(
            f"must be one of {', '.join(CORRELATION_TYPES)}, got {ctype!r}",
            source,
            _line(corr, "type"),
            "correlation.type",
        )
    allowed = CORRELATION_KEYS + (PERIODIC_KEYS if ctype == "periodic" else ())
    for key in corr:
        if key.startswith("__") or key in allowed:
            continue
        why = (
            f"only the periodic type has {key!r}"
            if key in PERIODIC_KEYS
            else f"unknown correlation attribute {key!r} (allowed: {', '.join(allowed)})"
        )
        raise RuleError(why, source, _line(corr, key), f"correlation.{key}")
    rules = _as_list(corr.get("rules"))
    if not rules or not all(isinstance(r, str) for r in rules):
        raise RuleError("must list one or more rule ids or names", source, _line(corr, "rules"), "correlation.rules")
    group_by = _as_list(corr.get("group-by"))
    if not all(isinstance(g, str) and g for g in group_by) or len(set(group_by)) != len(group_by):
        raise RuleError(
            f"must be a list of distinct field names, got {strip_lines(corr.get('group-by'))!r}",
            source,
            _line(corr, "group-by"),
            "correlation.group-by",
        )
    aliases = _check_aliases(corr, group_by, source)
    timespan = parse_timespan(corr.get("timespan"), source, _line(corr, "timespan"), "correlation.timespan")
    cond = corr.get("condition", {})
    cond_line = _line(corr, "condition")
    value_field = ""
    ops: dict[str, float] = {}
    if ctype in ("temporal", "temporal_ordered"):
        if len(rules) < 2:
            raise RuleError(
                "temporal correlation needs at least two rules", source, _line(corr, "rules"), "correlation.rules"
            )
    else:
        if not isinstance(cond, dict):
            raise RuleError("must be a mapping such as {gte: 10}", source, cond_line, "correlation.condition")
        for key, val in strip_lines(cond).items():
            if key == "field":
                value_field = str(val)
            elif key in CONDITION_OPS and isinstance(val, int | float) and not isinstance(val, bool):
                ops[key] = float(val)
            else:
                raise RuleError(
                    f"expected one of {', '.join(CONDITION_OPS)} with a number, or 'field'; got {key}: {val!r}",
                    source,
                    cond_line,
                    "correlation.condition",
                )
        if not any(k in ops for k in ("gt", "gte", "eq")):
            raise RuleError(
                "needs a lower bound (gt, gte or eq): upper bounds alone would need end-of-window timers",
                source,
                cond_line,
                "correlation.condition",
            )
        if ctype in ("value_count", "value_sum") and not value_field:
            raise RuleError(f"{ctype} needs 'field'", source, cond_line, "correlation.condition")
    max_cv = corr.get("max_cv", 0.2)
    if ctype == "periodic" and (not isinstance(max_cv, int | float) or isinstance(max_cv, bool) or max_cv <= 0):
        raise RuleError(
            f"must be a positive number, got {max_cv!r}", source, _line(corr, "max_cv"), "correlation.max_cv"
        )
    min_interval = corr.get("min_interval", 0.0)
    if not isinstance(min_interval, int | float) or isinstance(min_interval, bool) or min_interval < 0:
        raise RuleError(
            f"must be a number of seconds >= 0, got {min_interval!r}",
            source,
            _line(corr, "min_interval"),
            "correlation.min_interval",
        )
    generate = corr.get("generate")
    if generate is not None and not isinstance(generate, bool):
        raise RuleError(
            f"must be true or false, got {generate!r}", source, _line(corr, "generate"), "correlation.generate"
        )
    if generate is not None and top_generate is not None and generate != top_generate:
        raise RuleError(
            f"is {generate}, but the rule's top-level generate is {top_generate}",
            source,
            _line(corr, "generate"),
            "correlation.generate",
        )
    lines = {k: v for k, v in corr.get("__lines__", {}).items() if isinstance(v, int)}
    raw_aliases = corr.get("aliases") or {}
    for alias, alias_line in raw_aliases.get("__lines__", {}).items():
        lines[f"aliases.{alias}"] = alias_line
        for ref, ref_line in raw_aliases[alias].get("__lines__", {}).items():
            lines[f"aliases.{alias}.{ref}"] = ref_line
    if line is not None:
        lines["__section__"] = line
    return Correlation(
        type=str(ctype),
        rules=tuple(rules),
        group_by=tuple(group_by),
        timespan=timespan,
        condition=ops,
        value_field=value_field,
        max_cv=float(max_cv),
        min_interval=float(min_interval),
        generate=bool(generate if generate is not None else top_generate),
        aliases=aliases,
        lines=lines,
    )


def _check_aliases(corr: dict[str, Any], group_by: list[str], source: str) -> dict[str, dict[str, str]]:
    """The ``aliases`` of a correlation section: ``{alias: {rule: field}}``, each alias in group-by.

    Which rules the keys name (and that every correlated rule has a field) is checked when the
    rules are put together (:class:`~misuse.rules.engine.RuleEngine`), since a key may be the
    ``name`` of a rule listed by ``id``.
    """
    raw = corr.get("aliases")
    if raw is None:
        return {}
    line = _line(corr, "aliases")
    if not isinstance(raw, dict):
        raise RuleError("must map each alias to {rule name: field}", source, line, "correlation.aliases")
    out: dict[str, dict[str, str]] = {}
    for alias, mapping in raw.items():
        if alias.startswith("__"):
            continue
        where, at = f"correlation.aliases.{alias}", _line(raw, alias)
        if not isinstance(mapping, dict):
            raise RuleError(f"must map rule names to field names, got {strip_lines(mapping)!r}", source, at, where)
        fields = {}
        for ref, name in mapping.items():
            if ref.startswith("__"):
                continue
            if not isinstance(name, str) or not name:
                raise RuleError(f"must be a field name, got {name!r}", source, _line(mapping, ref), f"{where}.{ref}")
            fields[str(ref)] = name
        if not fields:
            raise RuleError("must map at least one rule name to a field name", source, at, where)
        if alias not in group_by:
            raise RuleError(
                f"alias {alias!r} is not used in group-by ({', '.join(group_by) or 'empty'}); "
                "Sigma aliases name group-by fields",
                source,
                at,
                where,
            )
        out[str(alias)] = fields
    return out


def iter_rule_files(paths: list[Path]) -> Iterator[Path]:
    """The rule files under the given files and folders, sorted."""
    for p in paths:
        if p.is_dir():
            yield from sorted([*p.rglob("*.yml"), *p.rglob("*.yaml")])
        else:
            yield p
