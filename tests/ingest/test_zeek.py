"""ZeekReader: TSV and JSON logs, header handling, dead letters, IoT-23 labels."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import ParseError
from misuse.ingest.base import DeadLetter
from misuse.ingest.zeek import ZeekReader, log_path_from_name

CONN_FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
]
CONN_TYPES = [
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
]


def header(fields: list[str], types: list[str], path: str = "conn") -> list[str]:
    return [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        f"#path\t{path}",
        "#open\t2019-03-15-14-50-49",
        "#fields\t" + "\t".join(fields),
        "#types\t" + "\t".join(types),
    ]


def conn_row(ts: float, uid: str, service: str = "-", dur: str = "1.5") -> str:
    values = [str(ts), uid, "10.0.0.1", "40000", "10.0.0.2", "80", "tcp", service, dur, "10", "20"]
    values += ["SF", "-", "-", "0", "ShAdDaFf", "3", "180", "2", "120", "(empty)"]
    return "\t".join(values)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_conn_log_maps_fields_and_keeps_line_numbers(tmp_path: Path) -> None:
    p = write(
        tmp_path / "conn.log",
        [*header(CONN_FIELDS, CONN_TYPES), conn_row(10.0, "C1", "http"), conn_row(11.0, "C2")],
    )

    frame = ZeekReader().read(p)

    assert frame["event_id"].tolist() == ["C1", "C2"]
    assert frame["source"].tolist() == ["conn.log:9", "conn.log:10"]
    assert frame["action"].tolist() == ["http", "tcp"]
    assert set(frame["kind"]) == {"flow"}
    assert frame["num.dst_port"].tolist() == [80.0, 80.0]
    assert frame["num.orig_bytes"].tolist() == [10.0, 10.0]
    assert frame["cat.conn_state"].tolist() == ["SF", "SF"]
    assert frame["ts"].iloc[0].timestamp() == 10.0
    assert frame["label"].isna().all()


def test_several_header_blocks_close_lines_and_blank_lines(tmp_path: Path) -> None:
    block = header(CONN_FIELDS, CONN_TYPES)
    lines = [
        *block,
        conn_row(1.0, "A"),
        "",
        conn_row(2.0, "B"),
        "#close\t2019",
        *block,
        conn_row(3.0, "C"),
        "#close\tx",
    ]
    p = write(tmp_path / "conn.log", lines)
    dead = DeadLetter()

    frame = ZeekReader().read(p, dead=dead)

    assert frame["event_id"].tolist() == ["A", "B", "C"]
    assert frame["source"].tolist() == ["conn.log:9", "conn.log:11", "conn.log:21"]
    assert dead.count == 0


def test_crlf_line_ends_and_leading_blank_lines(tmp_path: Path) -> None:
    text = "\n\n" + "\r\n".join([*header(CONN_FIELDS, CONN_TYPES), conn_row(1.0, "A"), conn_row(2.0, "B")]) + "\r\n"
    p = tmp_path / "conn.log"
    p.write_bytes(text.encode())
    dead = DeadLetter()

    frame = ZeekReader().read(p, dead=dead)

    assert (frame["event_id"].tolist(), dead.count) == (["A", "B"], 0)
    assert frame["source"].tolist() == ["conn.log:11", "conn.log:12"]
    assert frame["num.resp_ip_bytes"].tolist() == [120.0, 120.0]


def test_bad_lines_go_to_dead_letter_with_true_line_numbers(tmp_path: Path) -> None:
    bad_count = "\t".join(conn_row(2.0, "B").split("\t")[:19])
    bad_number = conn_row(3.0, "C", dur="abc")
    lines = [*header(CONN_FIELDS, CONN_TYPES), conn_row(1.0, "A"), bad_count, bad_number, conn_row(4.0, "D")]
    p = write(tmp_path / "conn.log", lines)
    dead = DeadLetter()

    frame = ZeekReader().read(p, dead=dead)

    assert frame["event_id"].tolist() == ["A", "D"]
    assert frame["source"].tolist() == ["conn.log:9", "conn.log:12"]
    assert dead.count == 2
    assert {(s["line"], s["reason"].split(":")[0]) for s in dead.samples} == {
        (10, "expected 21 fields, got 19"),
        (11, "field 'duration' is not a number"),
    }


def test_out_of_range_and_unset_times_are_dead_letters(tmp_path: Path) -> None:
    lines = [*header(CONN_FIELDS, CONN_TYPES), conn_row(1e25, "A"), conn_row(2.0, "B"), "-" + conn_row(3.0, "C")[3:]]
    dead = DeadLetter()

    frame = ZeekReader().read(write(tmp_path / "conn.log", lines), dead=dead)

    assert frame["event_id"].tolist() == ["B"]
    assert [(s["line"], s["reason"].split(":")[0]) for s in dead.samples] == [
        (9, "field 'ts' is out of range"),
        (11, "field 'ts' is unset"),
    ]


def test_custom_separator_unset_and_empty_markers(tmp_path: Path) -> None:
    lines = [
        "#separator \\x2c",
        "#empty_field,EMPTY",
        "#unset_field,NONE",
        "#fields,ts,uid,id.orig_h,id.resp_h,proto,service,tunnel_parents",
        "#types,time,string,addr,addr,enum,string,set[string]",
        "5.0,U1,1.1.1.1,2.2.2.2,udp,NONE,EMPTY",
    ]
    p = write(tmp_path / "conn.log", lines)

    frame = ZeekReader().read(p)

    assert frame["action"].tolist() == ["udp"]
    assert frame["cat.service"].tolist() == [None]
    assert frame["num.duration"].isna().all()


def test_set_separator_is_honoured(tmp_path: Path) -> None:
    fields = ["ts", "uid", "id.orig_h", "id.resp_h", "query", "qtype_name", "answers"]
    types = ["time", "string", "addr", "addr", "string", "string", "vector[string]"]
    lines = header(fields, types, path="dns")
    lines[1] = "#set_separator\t|"
    p = write(tmp_path / "dns.log", [*lines, "1.0\tD1\t10.0.0.5\t8.8.8.8\ta.io\tA\t1.1.1.1|2.2.2.2|3.3.3.3"])

    frame = ZeekReader().read(p)

    assert frame["num.answers"].tolist() == [3.0]


def test_iot23_space_joined_labels(tmp_path: Path) -> None:
    fields = [*CONN_FIELDS[:-1], "tunnel_parents   label   detailed-label"]
    types = [*CONN_TYPES[:-1], "set[string]   string   string"]
    rows = [
        conn_row(1.0, "A").replace("\t(empty)", "\t-   Benign   -"),
        conn_row(2.0, "B").replace("\t(empty)", "\t-   Malicious   DDoS"),
        conn_row(3.0, "C").replace("\t(empty)", "\t-   Malicious   -"),
        conn_row(4.0, "D").replace("\t(empty)", "\t-   Malicious"),
    ]
    p = write(tmp_path / "conn.log.labeled", [*header(fields, types), *rows, "#close\t2019   benign   -"])
    dead = DeadLetter()

    frame = ZeekReader().read(p, dead=dead)

    assert frame["label"].tolist() == ["benign", "DDoS", "Malicious"]
    assert dead.count == 1
    assert dead.samples[0]["line"] == 12


def test_tab_separated_iot23_labels(tmp_path: Path) -> None:
    fields = [*CONN_FIELDS, "label", "det_label"]
    types = [*CONN_TYPES, "string", "string"]
    rows = [conn_row(1.0, "A") + "\tBenign\t-", conn_row(2.0, "B") + "\tMalicious\tC&C"]
    p = write(tmp_path / "conn.log.labeled", [*header(fields, types), *rows])

    assert ZeekReader().read(p)["label"].tolist() == ["benign", "C&C"]


def test_dns_http_ssh_mappings(tmp_path: Path) -> None:
    dns = write(
        tmp_path / "dns.log",
        [
            *header(
                [
                    "ts",
                    "uid",
                    "id.orig_h",
                    "id.orig_p",
                    "id.resp_h",
                    "id.resp_p",
                    "query",
                    "qtype_name",
                    "answers",
                ],
                ["time", "string", "addr", "port", "addr", "port", "string", "string", "vector[string]"],
                path="dns",
            ),
            "1.0\tD1\t10.0.0.5\t5353\t8.8.8.8\t53\texample.com\tA\t1.2.3.4,5.6.7.8",
            "2.0\tD1\t10.0.0.5\t5353\t8.8.8.8\t53\tx.org\tAAAA\t-",
        ],
    )
    http = write(
        tmp_path / "http.log",
        [
            *header(
                ["ts", "uid", "id.orig_h", "id.resp_h", "method", "host", "uri", "user_agent", "status_code"],
                ["time", "string", "addr", "addr", "string", "string", "string", "string", "count"],
                path="http",
            ),
            "1.0\tH1\t10.0.0.5\t1.1.1.1\tGET\tcam.local\t/login\tcurl/7\t401",
        ],
    )
    ssh = write(
        tmp_path / "ssh.log",
        [
            *header(
                ["ts", "uid", "id.orig_h", "id.resp_h", "auth_success", "auth_attempts", "client", "server"],
                ["time", "string", "addr", "addr", "bool", "count", "string", "string"],
                path="ssh",
            ),
            "1.0\tS1\t6.6.6.6\t10.0.0.5\tF\t3\tSSH-2.0-libssh\tSSH-2.0-OpenSSH",
            "2.0\tS2\t6.6.6.6\t10.0.0.5\tT\t1\tSSH-2.0-libssh\tSSH-2.0-OpenSSH",
            "3.0\tS3\t6.6.6.6\t10.0.0.5\t-\t-\tSSH-2.0-libssh\tSSH-2.0-OpenSSH",
        ],
    )

    d = ZeekReader().read(dns)
    h = ZeekReader().read(http)
    s = ZeekReader().read(ssh)

    assert d["event_id"].tolist() == ["D1:9", "D1:10"]
    assert d["action"].tolist() == ["A", "AAAA"]
    assert d["peer"].tolist() == ["8.8.8.8", "8.8.8.8"]
    assert d["num.query_len"].tolist() == [11.0, 5.0]
    assert d["num.answers"].tolist() == [2.0, 0.0]
    assert (h["kind"].iloc[0], h["action"].iloc[0], h["cat.host"].iloc[0]) == ("http", "GET", "cam.local")
    assert (h["cat.status"].iloc[0], h["num.status_code"].iloc[0]) == ("401", 401.0)
    assert s["action"].tolist() == ["auth.failed", "auth.success", "auth.unknown"]
    assert s["num.auth_attempts"].iloc[0] == 3.0


def test_json_log_and_other_paths(tmp_path: Path) -> None:
    objs = [
        {
            "ts": 1.5,
            "uid": "J1",
            "id.orig_h": "10.0.0.1",
            "id.resp_h": "10.0.0.2",
            "proto": "tcp",
            "duration": 2.0,
        },
        {"ts": "2021-03-08T13:05:55.000000Z", "uid": "J2", "id.orig_h": "10.0.0.1", "proto": "udp"},
    ]
    p = tmp_path / "conn.json"
    p.write_text("\n".join([json.dumps(objs[0]), "{broken", json.dumps(objs[1])]) + "\n")
    files = tmp_path / "files.log.gz"
    with gzip.open(files, "wt") as fh:
        fh.write(json.dumps({"ts": 3.0, "fuid": "F1", "mime_type": "text/plain", "seen_bytes": 12}) + "\n")
    dead = DeadLetter()

    frame = ZeekReader(log="conn").read(p, dead=dead)
    other = ZeekReader().read(files)

    assert frame["event_id"].tolist() == ["J1", "J2"]
    assert frame["source"].tolist() == ["conn.json:1", "conn.json:3"]
    assert frame["ts"].iloc[1].isoformat() == "2021-03-08T13:05:55+00:00"
    assert (dead.count, dead.samples[0]["line"]) == (1, 2)
    assert (other["kind"].iloc[0], other["cat.mime_type"].iloc[0], other["num.seen_bytes"].iloc[0]) == (
        "files",
        "text/plain",
        12.0,
    )


def test_batches_are_bounded(tmp_path: Path) -> None:
    rows = [conn_row(float(i), f"C{i}") for i in range(7)]
    p = write(tmp_path / "conn.log", [*header(CONN_FIELDS, CONN_TYPES), *rows])

    sizes = [len(f) for f in ZeekReader().batches(p, batch_size=3)]

    assert sizes == [3, 3, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"hello world\n", "not a Zeek log"),
        (b"#path\tconn\n1.0\tC1\n", "no #fields header"),
        (b"#separator ab\n", "#separator must be one character"),
        (b"#separator \\x09\n#fields\tts\tui", "no #fields header: the file ends inside its header"),
        (b"#separator \\x09\n#fiel", "no #fields header"),
        (b"#separator \\x09\n#path\tconn\n", "no #fields header"),
    ],
)
def test_wrong_files_raise_parse_error_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "conn.log"
    p.write_bytes(content)

    with pytest.raises(ParseError, match=message) as info:
        ZeekReader().read(p)

    assert "conn.log" in str(info.value)


def test_a_header_cut_at_the_end_after_data_is_a_dead_letter(tmp_path: Path) -> None:
    lines = [*header(CONN_FIELDS, CONN_TYPES), conn_row(1.0, "C1"), "#close\t2019-03-15-15-00-00"]
    p = tmp_path / "conn.log"
    p.write_text("\n".join([*lines, *header(CONN_FIELDS, CONN_TYPES)[:-2]]) + "\n#fields\tts\tui")
    dead = DeadLetter()

    frame = ZeekReader().read(p, dead=dead)

    assert frame["event_id"].tolist() == ["C1"]
    assert [(s["line"], s["reason"]) for s in dead.samples] == [(17, "header line cut at the end of the file")]


def test_log_path_from_name() -> None:
    assert log_path_from_name("/x/dns.log.labeled") == "dns"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), with_header=st.booleans())
def test_any_bytes_give_frames_or_parse_error(tmp_path: Path, data: bytes, with_header: bool) -> None:
    prefix = ("\n".join(header(CONN_FIELDS, CONN_TYPES)) + "\n").encode() if with_header else b""
    p = tmp_path / "fuzz.log"
    p.write_bytes(prefix + data)

    try:
        frames = list(ZeekReader().batches(p, dead=DeadLetter()))
    except ParseError as exc:
        assert "fuzz.log" in str(exc)
    else:
        assert all(set(f.columns) >= {"event_id", "ts", "entity", "source"} for f in frames)


@pytest.mark.realdata
def test_iot23_34_1_label_counts(shared_data: Path) -> None:
    path = shared_data / "iot23/CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled"
    dead = DeadLetter()

    frame = ZeekReader().read(path, dead=dead)

    assert len(frame) == 23_145
    assert dead.count == 0
    assert frame["label"].value_counts().to_dict() == {
        "DDoS": 14_394,
        "C&C": 6_706,
        "benign": 1_923,
        "PartOfAHorizontalPortScan": 122,
    }
    assert frame["event_id"].is_unique
    assert (frame["entity"] == "192.168.1.195").mean() > 0.9


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("scenario", "flows"), [("CTU-Honeypot-Capture-4-1", 452), ("CTU-Honeypot-Capture-5-1", 1_374)]
)
def test_iot23_honeypots_space_joined_are_benign(shared_data: Path, scenario: str, flows: int) -> None:
    dead = DeadLetter()

    frame = ZeekReader().read(shared_data / "iot23" / scenario / "bro/conn.log.labeled", dead=dead)

    assert (len(frame), dead.count) == (flows, 0)
    assert set(frame["label"]) == {"benign"}
