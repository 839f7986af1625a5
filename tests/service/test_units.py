"""Configuration, tokens, the refusal to start without credentials, Zeek tailing, metrics text."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from misuse.cli import app as cli
from misuse.errors import InvalidParameterError
from misuse.events import ts_ok
from misuse.rules import builtin_pack
from misuse.service.app import rule_engine
from misuse.service.auth import TokenStore, role_at_least
from misuse.service.config import load_config
from misuse.service.loadgen import scan_events, steady_events
from misuse.service.metrics import Metrics
from misuse.service.stream import Parsed, StreamProcessor, parse_objects, parse_payload
from misuse.service.worker import ZeekTailer, _Tail
from misuse.store.duck import Store

CONN_HEADER = [
    "#separator \\x09",
    "#path\tconn",
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state",
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring",
]


def test_config_precedence_file_env_overrides(tmp_path: Path) -> None:
    # prepare
    (tmp_path / "service.toml").write_text('[service]\nport = 9001\nmqtt_host = "broker.lan"\nbatch_max = 10\n')
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    env = {"MISUSE_PORT": "9002", "MISUSE_MQTT_PASSWORD_FILE": str(pw), "MISUSE_ZEEK_TAIL": "/a:/b"}
    # execute
    cfg = load_config({"project": tmp_path, "batch_max": 20}, env=env)
    # assert
    assert (cfg.port, cfg.mqtt_host, cfg.batch_max, cfg.mqtt_password) == (9002, "broker.lan", 20, "s3cret")
    assert cfg.zeek_tail == ("/a", "/b") and cfg.host == "127.0.0.1"
    assert cfg.alert_topic("a/b#") == "misuse/alerts/a_b_"


@pytest.mark.parametrize(
    ("overrides", "env", "needle"),
    [
        ({"port": 0}, {}, "port"),
        ({}, {"MISUSE_MQTT_PORT": "many"}, "mqtt_port"),
        ({"topic_prefix": "a/#"}, {}, "topic_prefix"),
        ({"nonsense": 1}, {}, "nonsense"),
        ({"store_url": "mysql://x"}, {}, "store_url"),
        ({"mqtt_topics": ["other/x"]}, {}, "mqtt_topics"),
        ({}, {"MISUSE_MQTT_TOPICS": "misuse/events/#/a"}, "mqtt_topics"),
    ],
)
def test_config_rejects_bad_values_naming_the_setting(overrides: dict, env: dict, needle: str) -> None:
    with pytest.raises(InvalidParameterError, match=needle):
        load_config(overrides, env=env)


def test_config_names_the_postgres_store_workers_and_subscriptions() -> None:
    env = {"MISUSE_STORE_URL": "postgresql://u:p@db:5432/misuse", "MISUSE_MQTT_CLIENT_ID": "worker-2"}
    # execute
    cfg = load_config({"mqtt_topics": ["misuse/events/gw-1/#", "misuse/events/+/lab"]}, env=env)
    default = load_config({}, env={})
    # assert
    assert cfg.store_url.startswith("postgresql://") and cfg.worker == "worker-2"
    assert cfg.subscriptions == ("misuse/events/gw-1/#", "misuse/events/+/lab")
    assert default.subscriptions == ("misuse/events/#",) and default.worker == "misuse-worker"
    assert load_config({"worker_id": "w9"}, env=env).worker == "w9"


def test_tokens_are_stored_hashed_and_checked_by_role(tmp_path: Path) -> None:
    # prepare
    ts = TokenStore(tmp_path / "tokens.json")
    # execute
    token = ts.create("alice", "analyst")
    raw = (tmp_path / "tokens.json").read_text()
    # assert
    assert token not in raw and token.split("_", 2)[2] not in raw
    assert json.loads(raw)["tokens"][0]["hash"]
    assert ts.verify(token).role == "analyst"  # type: ignore[union-attr]
    assert ts.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ts.verify("not-a-token") is None
    assert role_at_least("analyst", "viewer") and not role_at_least("analyst", "admin")
    with pytest.raises(InvalidParameterError, match="role"):
        ts.create("bob", "root")


def test_serve_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    # execute
    res = CliRunner().invoke(cli, ["serve", "--project", str(tmp_path)], env={"MISUSE_MQTT_USERNAME": ""})
    insecure_wide = CliRunner().invoke(
        cli, ["serve", "--project", str(tmp_path), "--insecure-dev", "--host", "0.0.0.0"]
    )
    no_pw_file = CliRunner().invoke(
        cli,
        ["serve", "--project", str(tmp_path), "--mqtt-username", "w", "--mqtt-password-file", str(tmp_path / "nope")],
    )
    # assert
    assert res.exit_code == 2
    assert "no API token" in res.output and "no broker credentials" in res.output and "refusing" in res.output
    assert insecure_wide.exit_code == 2 and "binds only a loopback address" in insecure_wide.output
    assert "0.0.0.0" in insecure_wide.output and "pass --insecure-dev" not in insecure_wide.output
    assert no_pw_file.exit_code == 3 and isinstance(no_pw_file.exception, SystemExit)  # a clean exit, no traceback
    assert f"--mqtt-password-file {tmp_path / 'nope'}: cannot read" in " ".join(no_pw_file.output.split())


def test_token_cli_prints_once_and_lists_without_secret(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["token", "create", "--name", "ops", "--role", "admin", "-p", str(tmp_path), "--json"]
    )
    token = json.loads(res.output)["token"]
    listed = CliRunner().invoke(cli, ["token", "list", "-p", str(tmp_path), "--json"])
    assert res.exit_code == 0 and token.startswith("msu_")
    assert json.loads(listed.output)[0]["role"] == "admin" and token not in listed.output


def test_payload_parsing_sets_bad_messages_aside_with_reasons() -> None:
    good = parse_payload(b'[{"ts": 1, "entity": "a"}, {"ts": 2, "entity": "b", "event_id": "x"}]', "t", "mqtt")
    bad = [parse_payload(p, "t", "mqtt").dead[0]["reason"] for p in (b"\xff\xfe", b"[]", b'{"ts": 1}', b"3")]
    assert [r["event_id"] for r in good.records][1] == "x" and str(good.records[0]["event_id"]).startswith("h:")
    assert "invalid JSON" in bad[0] and "empty" in bad[1] and "entity" in bad[2] and "object" in bad[3]


def test_times_the_event_model_cannot_hold_are_dead_letters_and_the_rest_is_kept() -> None:
    # prepare: one MQTT message holding good events and times out of range (number, ISO-8601)
    payload = json.dumps(
        [
            {"ts": 1.0, "entity": "a"},
            {"ts": 1e300, "entity": "a"},
            {"ts": -1e12, "entity": "b"},
            {"ts": "2263-01-01T00:00:00+00:00", "entity": "c"},
            {"ts": "2261-01-01T00:00:00+00:00", "entity": "c"},
        ]
    ).encode()
    # execute
    parsed = parse_payload(payload, "misuse/events/gw", "mqtt")
    # assert
    assert [r["entity"] for r in parsed.records] == ["a", "c"]
    assert [(d["line"], d["value"]) for d in parsed.dead] == [(1, 1e300), (2, -1e12), (3, "2263-01-01T00:00:00+00:00")]
    assert all(
        "field 'ts' is out of range" in d["reason"] and "1678-06-18 to 2261-07-15" in d["reason"] for d in parsed.dead
    )
    assert "1e+300" in parsed.dead[0]["reason"] and '"entity": "b"' in parsed.dead[1]["raw"]


def test_zeek_tailer_follows_a_growing_log_once_per_line(tmp_path: Path) -> None:
    # prepare
    log = tmp_path / "conn.log"
    log.write_text("\n".join(CONN_HEADER) + "\n")
    got: list[Parsed] = []
    tail = ZeekTailer([log], lambda p, origin: got.append(p))
    state = _Tail(log)
    # execute: lines appended in two steps, the second ending mid-line
    with log.open("a") as fh:
        fh.write("10.0\tC1\t10.0.0.1\t5000\t10.0.0.2\t80\ttcp\tSF\n")
    first = tail.poll(state)
    with log.open("a") as fh:
        fh.write("11.0\tC2\t10.0.0.1\t5001\t10.0.0.3\t22\ttcp\tS0\n12.0\tC3\t10.0.0")
    second = tail.poll(state)
    with log.open("a") as fh:
        fh.write(".4\t5002\t10.0.0.2\t80\ttcp\tSF\n")
    third = tail.poll(state)
    # assert
    ids = [r["event_id"] for p in got for r in p.records]
    assert (first, second, third) == (1, 1, 1) and ids == ["C1", "C2", "C3"]
    assert got[2].records[0]["entity"] == "10.0.0.4"
    assert got[1].records[0]["source"] == "conn.log:6"


ZEEK_HEADER = [
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tconn",
    "#open\t2024-01-01-00-00-00",
    *CONN_HEADER[2:],
]


def test_zeek_events_and_dead_letters_carry_the_files_own_line_numbers(tmp_path: Path) -> None:
    # prepare: Zeek's full 8-line header and 3,000 rows (lines 9-3,008), read in one poll
    log = tmp_path / "conn.log"
    rows = [f"{100 + i}.0\tC{i}\t10.0.0.1\t5000\t10.0.0.9\t80\ttcp\tSF" for i in range(3000)]
    log.write_text("\n".join(ZEEK_HEADER + rows) + "\n")
    got: list[Parsed] = []
    tail, state = ZeekTailer([log], lambda p, origin: got.append(p)), _Tail(log)
    tail.poll(state)
    # execute: the log grows by a garbage line (3,009), a good row (3,010), a comment and a good row (3,012)
    with log.open("a") as fh:
        fh.write("garbage\n5000.0\tCX\t10.0.0.1\t5000\t10.0.0.9\t80\ttcp\tSF\n#close\t2024-01-01-01-00-00\n")
        fh.write("5001.0\tCY\t10.0.0.1\t5000\t10.0.0.9\t80\ttcp\tSF\n")
    tail.poll(state)
    reread: list[Parsed] = []
    ZeekTailer([log], lambda p, origin: reread.append(p)).poll(_Tail(log))
    # assert
    first, grown = got
    assert [first.records[0]["source"], first.records[-1]["source"]] == ["conn.log:9", "conn.log:3008"]
    assert [(d["source"], d["line"]) for d in grown.dead] == [("conn.log", 3009)]
    assert [r["source"] for r in grown.records] == ["conn.log:3010", "conn.log:3012"]
    # read again from the start in one poll, every line keeps its number (and so its id)
    assert [r["source"] for r in reread[0].records] == [r["source"] for p in got for r in p.records]
    assert [d["line"] for d in reread[0].dead] == [3009]


def test_zeek_lines_are_read_again_when_handing_them_over_failed(tmp_path: Path) -> None:
    # prepare: a consumer that fails once (the store is down), and more than 100 bad lines
    log = tmp_path / "conn.log"
    rows = [f"{100 + i}.0\tC{i}\t10.0.0.1\t5000\t10.0.0.9\t80\ttcp\tSF" for i in range(5)]
    log.write_text("\n".join(CONN_HEADER + rows + ["bad"] * 150) + "\n")
    failures = [RuntimeError("store unavailable")]
    got: list[Parsed] = []

    def ingest(parsed: Parsed, origin: str) -> None:
        if failures:
            raise failures.pop()
        got.append(parsed)

    tail, state = ZeekTailer([log], ingest), _Tail(log)
    # execute
    with pytest.raises(RuntimeError):
        tail.poll(state)
    again = tail.poll(state)
    # assert: the same lines handed over at the second poll, none skipped; every bad line set aside
    assert again == 5 and [r["event_id"] for r in got[0].records] == [f"C{i}" for i in range(5)]
    assert [d["line"] for d in got[0].dead] == list(range(10, 160))
    assert tail.poll(state) == 0 and len(got) == 1


def test_a_zeek_line_the_store_always_refuses_is_set_aside_and_the_file_goes_on(tmp_path: Path) -> None:
    # prepare: the store refuses any hand-over holding C2, whatever is around it
    log = tmp_path / "conn.log"
    rows = [f"{100 + i}.0\tC{i}\t10.0.0.1\t5000\t10.0.0.9\t80\ttcp\tSF" for i in range(5)]
    log.write_text("\n".join(CONN_HEADER + rows[:3] + ["#close\tx"] + rows[3:]) + "\n")
    got: list[Parsed] = []

    def ingest(parsed: Parsed, origin: str) -> None:
        if any(r["event_id"] == "C2" for r in parsed.records):
            raise RuntimeError("value too long for the store")
        got.append(parsed)

    tail, state = ZeekTailer([log], ingest, attempts=3), _Tail(log)
    # execute: two failed polls keep the position; the third goes line by line
    for _ in range(2):
        with pytest.raises(RuntimeError):
            tail.poll(state)
        assert state.offset == 0 and not got
    handed = tail.poll(state)
    # assert: every other line arrived with its own number, C2 is a dead letter naming its line
    assert handed == 4 and tail.poll(state) == 0
    assert [r["event_id"] for p in got for r in p.records] == ["C0", "C1", "C3", "C4"]
    assert [r["source"] for p in got for r in p.records] == [f"conn.log:{n}" for n in (5, 6, 9, 10)]
    (dead,) = [d for p in got for d in p.dead]
    assert (dead["source"], dead["line"]) == ("conn.log", 7)
    assert "RuntimeError: value too long" in dead["reason"] and "C2" in dead["raw"]
    assert state.offset == log.stat().st_size and state.failures == 0


def test_zeek_position_stays_while_the_store_takes_nothing_and_nothing_is_lost(tmp_path: Path) -> None:
    # prepare: the store is down for five polls, dead letters included
    log = tmp_path / "conn.log"
    rows = [f"{100 + i}.0\tC{i}\t10.0.0.1\t5000\t10.0.0.9\t80\ttcp\tSF" for i in range(4)]
    log.write_text("\n".join(CONN_HEADER + rows) + "\n")
    calls: list[int] = []
    got: list[Parsed] = []

    def ingest(parsed: Parsed, origin: str) -> None:
        calls.append(1)
        if len(calls) <= 5:
            raise RuntimeError("store unavailable")
        got.append(parsed)

    tail, state = ZeekTailer([log], ingest, attempts=2), _Tail(log)
    # execute: refused are the chunk (poll 1), the chunk, the first line and its dead letter (poll 2),
    # the chunk again (poll 3, which then goes line by line as the store is back)
    outcomes: list[object] = []
    for _ in range(5):
        try:
            outcomes.append(tail.poll(state))
        except RuntimeError:
            outcomes.append("refused")
    # assert: nothing skipped, nothing set aside while the store was down, each line once
    assert outcomes == ["refused", "refused", 4, 0, 0] and len(calls) == 5 + 4
    assert [r["event_id"] for p in got for r in p.records] == ["C0", "C1", "C2", "C3"]
    assert not [d for p in got for d in p.dead] and state.offset == log.stat().st_size


def test_zeek_lines_reach_the_store_without_duplicates_after_a_reread(tmp_path: Path) -> None:
    # prepare
    log = tmp_path / "conn.log"
    rows = [f"{100 + i}.0\tC{i}\t10.0.0.{i % 3}\t5000\t10.0.0.9\t80\ttcp\tSF" for i in range(30)]
    log.write_text("\n".join(CONN_HEADER + rows) + "\n")
    with Store(tmp_path / "p") as store:
        proc = StreamProcessor(store, threading.RLock(), Metrics())
        # execute: a restart re-reads the file from the start
        ZeekTailer([log], proc.ingest).poll(_Tail(log))
        ZeekTailer([log], proc.ingest).poll(_Tail(log))
        proc.flush()
        n = store.con.execute("SELECT count(*), count(DISTINCT event_id) FROM stream_events").fetchone()
        w = store.con.execute("SELECT sum(n_events) FROM stream_windows").fetchone()
    # assert
    assert n == (30, 30) and w == (30,)


def _stream(root: Path, batches: list[list[dict]], fail_once: bool) -> tuple[dict[str, list], Metrics]:
    """Feed batches to a processor with the rule pack; with ``fail_once`` the second batch's
    transaction fails at its last step (everything written, windows and rules run) and is retried."""
    with Store(root) as store:
        proc = StreamProcessor(store, threading.RLock(), Metrics(), default_window=1.0, rules=rule_engine("builtin"))
        write_dead_letters = proc._dead_letters
        failures = [OSError("disk full")] if fail_once else []

        def dead_letters_then_fail(dead: list[dict], origin: str) -> None:
            write_dead_letters(dead, origin)
            if failures:
                raise failures.pop()

        proc._dead_letters = dead_letters_then_fail  # type: ignore[method-assign]
        for i, batch in enumerate(batches):
            parsed = parse_objects(batch, "gw", "mqtt", time.time())
            if i == 1 and fail_once:
                with pytest.raises(OSError, match="disk full"):
                    proc.ingest(parsed, "mqtt")
            proc.ingest(parsed, "mqtt")  # the same batch again, as the MQTT worker retries it
        proc.flush()
        queries = {
            "events": "SELECT count(*), count(DISTINCT event_id) FROM stream_events",
            "windows": "SELECT entity, window_start, n_events FROM stream_windows ORDER BY ALL",
            "alerts": "SELECT alert_id, detector, evidence FROM alerts ORDER BY ALL",
            "dead": "SELECT source, line, reason FROM dead_letters ORDER BY ALL",
        }
        tables = {k: store.con.execute(q).fetchall() for k, q in queries.items()}
    return tables, proc.metrics


def test_a_failed_transaction_leaves_no_trace_and_its_retry_counts_everything_once(tmp_path: Path) -> None:
    # prepare: steady flows and a scan (windows), an SSH brute force (a correlation rule), malformed MQTT
    # packets (a single-event rule) and one bad event (a dead letter), in two batches; the alerts fall in the second
    t0 = time.time() - 120
    events = [*steady_events(4, 40.0, t0, 6.0), *scan_events("dev-001", t0 + 3.2, n=150, span=0.5)]
    events += [
        {"ts": t0 + 3 + i / 10, "entity": "root", "peer": "203.0.113.9", "kind": "auth", "action": "login.failed",
         "event_id": f"bf-{i}"}
        for i in range(12)
    ]  # fmt: skip
    events += [
        {"ts": t0 + 4 + i / 10, "entity": "dev-003", "peer": "10.0.3.200", "kind": "packet", "action": "mqtt",
         "event_id": f"malformed-{i}", "num": {"mqtt_malformed": 1.0}}
        for i in range(3)
    ]  # fmt: skip
    events.sort(key=lambda e: e["ts"])
    half = len(events) // 2
    batches = [events[:half], [*events[half:], {"ts": t0, "entity": ""}]]
    # execute
    expected, _ = _stream(tmp_path / "once", batches, fail_once=False)
    got, metrics = _stream(tmp_path / "retried", batches, fail_once=True)
    # assert: the same events, windows (counts), alerts (ids, evidence) and dead letters as without the failure
    assert got == expected
    assert got["events"] == [(len(events), len(events))] and sum(w[2] for w in got["windows"]) == len(events)
    titles = {f"rule:{r.id}": r.title for r in builtin_pack()}
    raised = {titles[a[1]] for a in got["alerts"]}
    sweep = "Network sweep (unanswered attempts to many hosts, any port)"  # the scan: 150 addresses in 0.5 s
    assert raised == {"Malformed MQTT packet", "SSH/telnet brute force from one source", sweep}
    assert len(got["dead"]) == 1
    assert metrics.get("misuse_ingest_failures_total", origin="mqtt") == 1
    assert metrics.total("misuse_events_stored_total") == len(events)
    assert metrics.total("misuse_rule_events_total") == len(events)


def test_windows_stay_open_when_closing_them_failed(tmp_path: Path) -> None:
    # prepare: open windows (10 s, all events inside them), and a store that fails the first time windows are written
    events = list(steady_events(3, 30.0, (time.time() - 60) // 10 * 10, 2.0))
    with Store(tmp_path / "p") as store:
        proc = StreamProcessor(store, threading.RLock(), Metrics(), default_window=10.0)
        proc.ingest(parse_objects(events, "gw", "mqtt", time.time()), "mqtt")
        upsert, failures = proc.tables.upsert_windows, [OSError("disk full")]

        def fail_once(rows: object) -> None:
            if failures:
                raise failures.pop()
            upsert(rows)  # type: ignore[arg-type]

        proc.tables.upsert_windows = fail_once  # type: ignore[method-assign]
        # execute
        with pytest.raises(OSError):
            proc.flush()
        still_open = proc.open_events()
        proc.flush()
        counted = store.con.execute("SELECT sum(n_events) FROM stream_windows").fetchone()
    # assert
    assert still_open == len(events) and counted == (len(events),)
    assert proc.metrics.get("misuse_ingest_failures_total", origin="window-close") == 1


def test_metrics_render_counters_and_histograms() -> None:
    m = Metrics()
    m.inc("misuse_alerts_total", misuse_type='odd"type')
    m.observe("misuse_batch_seconds", 0.02, count=3)
    text = m.render()
    assert 'misuse_alerts_total{misuse_type="odd\\"type"} 1' in text
    assert 'misuse_batch_seconds_bucket{le="0.025"} 3' in text and "misuse_batch_seconds_count 3" in text


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300)
    | st.from_regex(rb'\{"ts": ?-?[0-9.e+-]{0,8}, ?"entity": ?"[a-z]{0,3}".{0,30}\}', fullmatch=True)
)
def test_any_payload_gives_events_or_dead_letters_and_nothing_else(payload: bytes) -> None:
    parsed = parse_payload(payload, "prop", "mqtt")
    assert len(parsed.records) + len(parsed.dead) >= 1
    assert all(isinstance(d["reason"], str) and d["reason"] for d in parsed.dead)
    assert all(isinstance(r["ts"], float) and ts_ok(r["ts"]) and r["entity"] and r["event_id"] for r in parsed.records)


def test_docs_cover_every_setting_and_endpoint() -> None:
    from dataclasses import fields

    from misuse.service.app import create_app
    from misuse.service.config import ServiceConfig

    doc = (Path(__file__).resolve().parents[2] / "docs" / "service.md").read_text()
    missing = [f.name for f in fields(ServiceConfig) if f"`{f.name}`" not in doc]
    paths = {getattr(r, "path", "") for r in create_app(load_config({}, env={})).routes}
    api_paths = {p for p in paths if p.startswith(("/api", "/metrics"))}
    assert not missing, f"settings not in docs/service.md: {missing}"
    # every table either backend creates is named in the storage section
    from misuse.service.backends import DuckStreamTables, PgStreamTables
    from misuse.store import postgres

    ddl = postgres._DDL + DuckStreamTables.DDL + PgStreamTables.DDL
    tables = {m.group(1) for stmt in ddl if (m := re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", stmt))}
    storage = doc.split("## Storage", 1)[1].split("\n## ", 1)[0]
    assert len(tables) == 8 and not [t for t in tables if f"`{t}`" not in storage], "tables missing from docs"
    assert "not implemented" not in storage
    assert not [p for p in api_paths if f"`{p}`" not in doc], "endpoints missing from docs/service.md"
