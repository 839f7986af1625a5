"""Rule loading and validation, public Sigma rules, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.rules.model import RuleError, load_rules, parse_rules
from misuse.rules.sigma import export_sigma

FIXTURES = Path(__file__).parent / "fixtures" / "sigma"
GOOD = """title: Telnet
id: r1
logsource: {category: network_connection}
detection:
  selection:
    dst_port: [23, 2323]
  condition: selection
level: low
"""


def test_public_sigma_rules_load_unchanged() -> None:
    # prepare / execute
    rules = load_rules(FIXTURES)
    # assert: the four files hold five documents, their ids and authors as published
    assert {r.id for r in rules} == {
        "e76b413a-83d0-4b94-8e4c-85db4a5b8bdc",
        "8d9c5b6a-9b42-4d71-9b3f-sshbruteforce01",
        "fc947f8e-ea81-4b14-9a7b-13f888f94e18",
        "f698fb2a-f888-4b4f-b309-fcc56d7096b5",
        "f55634e2-baa3-489b-bbce-0c9818cf62ee",
    }
    corr = next(r for r in rules if r.correlation is not None)
    assert corr.correlation is not None and corr.correlation.timespan == 900.0
    assert corr.attack_ids == ["T1110.001"]
    assert all(r.author for r in rules)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (GOOD.replace("level: low", "level: severe"), 8, "level"),
        (GOOD.replace("condition: selection", "condition: selection and sel2"), 7, "detection.condition"),
        (GOOD.replace("dst_port:", "dst_port|base64offset:"), 6, "detection.selection.dst_port|base64offset"),
        (GOOD.replace("title: Telnet\n", ""), 1, "title"),
        (GOOD + "colour: red\n", 9, "colour"),
        (GOOD + "misuse_type: hacking\n", 9, "misuse_type"),
        (GOOD.replace("dst_port: [23, 2323]", "peer|cidr: 10.0.0.0/33"), 6, "detection.selection.peer|cidr"),
        (GOOD.replace("dst_port: [23, 2323]", "entity|re: '(unclosed'"), 6, "detection.selection.entity|re"),
        (GOOD.replace("dst_port: [23, 2323]", "dst_port|gte: many"), 6, "detection.selection.dst_port|gte"),
    ],
)
def test_validation_names_file_line_and_field(text: str, line: int, field: str, tmp_path: Path) -> None:
    # prepare
    path = tmp_path / "bad.yml"
    path.write_text(text)
    # execute
    with pytest.raises(RuleError) as info:
        load_rules(path)
    # assert
    assert info.value.line == line
    assert info.value.field_name == field
    assert str(info.value).startswith(f"{path} line {line}: field '{field}'")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\xff", r"r\.yml: not a YAML rule file: not UTF-8 text \(byte 1"),
        (b"", r"r\.yml: no rule in the file"),
        (b"# nothing yet\n", r"r\.yml: no rule in the file"),
        (b"title: x\x00\n", r"r\.yml: not valid YAML: unacceptable character #x0000"),
    ],
)
def test_unreadable_or_empty_rule_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "r.yml"
    path.write_bytes(content)

    with pytest.raises(RuleError, match=message) as info:
        load_rules(path)

    assert "\n" not in str(info.value)


def test_correlation_validation() -> None:
    # prepare: value_count without a field, and an upper bound only
    base = "title: c\nid: c1\ncorrelation:\n  type: {t}\n  rules: [r1]\n  timespan: 5m\n  condition: {c}\n"
    # execute / assert
    with pytest.raises(RuleError, match="needs 'field'"):
        parse_rules(base.format(t="value_count", c="{gte: 3}"))
    with pytest.raises(RuleError, match="lower bound"):
        parse_rules(base.format(t="event_count", c="{lt: 3}"))
    with pytest.raises(RuleError, match="timespan like"):
        parse_rules(base.format(t="event_count", c="{gte: 3}").replace("5m", "five minutes"))


def test_export_round_trip() -> None:
    # prepare
    rules = load_rules(FIXTURES)
    # execute
    text = export_sigma(rules)
    again = parse_rules(text)
    # assert: same rules, and plain YAML that a Sigma tool can read
    assert [r.raw for r in again] == [r.raw for r in rules]
    assert all("title" in d for d in yaml.safe_load_all(text))


def test_strict_export_refuses_extensions() -> None:
    # prepare
    from misuse.rules import builtin_pack

    rules = builtin_pack()
    # execute / assert
    with pytest.raises(RuleError, match="extension"):
        export_sigma(rules, strict=True)
    assert export_sigma([r for r in rules if r.correlation is None or r.correlation.type != "periodic"], strict=True)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_rules_or_a_rule_error(text: str) -> None:
    # prepare / execute
    try:
        rules = parse_rules(text)
    except RuleError as exc:
        # assert
        assert str(exc).startswith("<text>")
        return
    assert isinstance(rules, list)


CORR = """title: c
id: c1
correlation:
  type: event_count
  rules: [r1]
  group-by: [peer]
  timespan: 5m
  condition:
    gte: 3
level: high
"""


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (CORR.replace("  timespan", "  ordered: true\n  timespan"), 7, "correlation.ordered", "unknown correlation"),
        (CORR.replace("  timespan", "  max_cv: 0.3\n  timespan"), 7, "correlation.max_cv", "only the periodic"),
        (CORR.replace("  timespan", "  generate: yes please\n  timespan"), 7, "correlation.generate", "true or false"),
        (CORR.replace("[peer]", "[peer, peer]"), 6, "correlation.group-by", "distinct field names"),
        (CORR.replace("  timespan", "  aliases: [peer]\n  timespan"), 7, "correlation.aliases", "must map"),
        (
            CORR.replace("  timespan", "  aliases:\n    addr: {r1: src_ip}\n  timespan"),
            8,
            "correlation.aliases.addr",
            "not used in group-by",
        ),
        (
            CORR.replace("[peer]", "[addr]").replace("  timespan", "  aliases:\n    addr: {r1: [a, b]}\n  timespan"),
            8,
            "correlation.aliases.addr.r1",
            "must be a field name",
        ),
        (CORR + "generate: maybe\n", 11, "generate", "true or false"),
        (GOOD + "generate: true\n", 9, "generate", "only a correlation rule"),
    ],
)
def test_correlation_keys_are_checked_not_ignored(
    text: str, line: int, field: str, message: str, tmp_path: Path
) -> None:
    # prepare
    path = tmp_path / "corr.yml"
    path.write_text(text)
    # execute
    with pytest.raises(RuleError, match=message) as info:
        load_rules(path)
    # assert: the error names the file, the key's own line and the field
    assert (info.value.line, info.value.field_name) == (line, field)
    assert str(info.value).startswith(f"{path} line {line}: field '{field}'")


def test_correlation_aliases_generate_and_lines_are_kept() -> None:
    # prepare
    text = CORR.replace("[peer]", "[addr]").replace(
        "  timespan", "  aliases:\n    addr: {r1: src_ip, r2: dst_ip}\n  timespan"
    )
    # execute
    (plain,) = parse_rules(CORR)
    (aliased,) = parse_rules(text)
    (top,) = parse_rules(CORR + "generate: true\n")
    # assert
    assert aliased.correlation is not None and plain.correlation is not None and top.correlation is not None
    assert aliased.correlation.aliases == {"addr": {"r1": "src_ip", "r2": "dst_ip"}}
    assert plain.correlation.line("rules") == 5 and plain.correlation.line("condition") == 8
    assert (plain.correlation.generate, top.correlation.generate) == (False, True)
