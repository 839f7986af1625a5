"""TabularReader and load_mapping: CSV / JSONL through declarative column mappings."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import ParseError, SchemaError
from misuse.ingest.base import DeadLetter
from misuse.ingest.tabular import TabularReader, builtin_mappings, load_mapping

BASIC = {
    "ts": {"column": "t", "format": "%Y-%m-%d %H:%M:%S"},
    "entity": {"template": "dev:{device}"},
    "peer": "dst",
    "kind": {"constant": "telemetry"},
    "action": {"column": "state"},
    "label": {"column": "y", "map": {"0": "benign"}},
    "num": "numeric",
    "cat": "remaining",
    "exclude": ["y"],
    "file_pattern": r"(?P<device>\w+)_log",
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_template_map_and_attribute_detection(tmp_path: Path) -> None:
    p = write(
        tmp_path / "cam1_log.csv",
        "t,dst,state,temp,mode,y\n"
        "2021-01-01 00:00:00,10.0.0.1,on,21.5,eco,0\n"
        "2021-01-01 00:00:05,10.0.0.1,off,22,x,ddos\n",
    )

    frame = TabularReader(BASIC).read(p)

    assert frame["entity"].tolist() == ["dev:cam1", "dev:cam1"]
    assert frame["peer"].tolist() == ["10.0.0.1", "10.0.0.1"]
    assert frame["action"].tolist() == ["on", "off"]
    assert frame["label"].tolist() == ["benign", "ddos"]
    assert frame["num.temp"].tolist() == [21.5, 22.0]
    assert frame["cat.mode"].tolist() == ["eco", "x"]
    assert "num.y" not in frame.columns and "cat.y" not in frame.columns
    assert frame["source"].tolist() == ["cam1_log.csv:2", "cam1_log.csv:3"]
    assert frame["ts"].iloc[1].isoformat() == "2021-01-01T00:00:05+00:00"


def test_date_and_time_columns_with_spaces_bom_and_timezone(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_bytes("\ufeffdate,time,v\r\n25-Apr-19, 8:59:02 ,1\r\n25-Apr-19,19:19:40,2\r\n".encode())
    mapping = {
        "ts": {"column": "date", "format": "%d-%b-%y", "time_column": "time", "time_format": "%H:%M:%S"},
        "entity": {"constant": "e"},
        "num": ["v"],
    }

    utc = TabularReader(mapping).read(p)
    local = TabularReader(mapping, timezone="Australia/Sydney").read(p)

    assert [t.isoformat() for t in utc["ts"]] == ["2019-04-25T08:59:02+00:00", "2019-04-25T19:19:40+00:00"]
    assert local["ts"].iloc[0].isoformat() == "2019-04-24T22:59:02+00:00"


def test_headerless_alternative_formats_and_row_index(tmp_path: Path) -> None:
    p = write(
        tmp_path / "ev.csv",
        '"March 08, 2021 at 01:05:55PM","lock-1","event_lock"\n"March 08, 2021 at 01:06PM","lock-1","x"\n',
    )
    mapping = {
        "header": False,
        "columns": ["timestamp", "device", "event"],
        "ts": {"column": "timestamp", "format": ["%B %d, %Y at %I:%M:%S%p", "%B %d, %Y at %I:%M%p"]},
        "entity": "device",
        "action": "event",
    }

    frame = TabularReader(mapping, timezone="America/New_York").read(p)
    synthetic = TabularReader({"ts": {"row_index": True, "base": 100}, "entity": {"constant": "d"}}).read(
        write(tmp_path / "n.csv", "a,b\n1,2\n3,4\n")
    )

    assert [t.isoformat() for t in frame["ts"]] == ["2021-03-08T18:05:55+00:00", "2021-03-08T18:06:00+00:00"]
    assert frame["action"].tolist() == ["event_lock", "x"]
    assert [t.timestamp() for t in synthetic["ts"]] == [100.0, 101.0]


def test_epoch_and_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        fh.write(json.dumps({"ms": 1500, "who": "u1", "n": 3}) + "\n")
        fh.write("not json\n")
        fh.write(json.dumps({"ms": 2500, "who": "u2", "n": "x"}) + "\n")
    mapping = {"ts": {"column": "ms", "epoch": "ms"}, "entity": "who", "num": ["n"]}
    dead = DeadLetter()

    frame = TabularReader(mapping).read(p, dead=dead)

    assert frame["entity"].tolist() == ["u1"]
    assert frame["ts"].iloc[0].timestamp() == 1.5
    assert sorted((s["line"], s["reason"][:20]) for s in dead.samples) == [
        (2, "not valid JSON: Expe"),
        (3, "column 'n' is not a "),
    ]


def test_row_index_time_counts_from_the_first_record(tmp_path: Path) -> None:
    csv_file = write(tmp_path / "a.csv", "k\nx\ny\n")
    jsonl_file = write(tmp_path / "a.jsonl", '{"k": "x"}\n{"k": "y"}\n')
    reader = TabularReader({"ts": {"row_index": True}, "entity": "k"})

    seconds = [[t.timestamp() for t in reader.read(p)["ts"]] for p in (csv_file, jsonl_file)]

    assert seconds == [[0.0, 1.0], [0.0, 1.0]]


def test_bad_rows_are_dead_letters_with_file_lines(tmp_path: Path) -> None:
    p = write(tmp_path / "d.csv", "t,v\n2021-01-01,1\n2021-01-02,2,3\n\nnot-a-date,4\n2021-01-05,5\n")
    mapping = {"ts": {"column": "t", "format": "%Y-%m-%d"}, "entity": {"constant": "e"}, "num": ["v"]}
    dead = DeadLetter()

    frame = TabularReader(mapping).read(p, dead=dead)

    assert frame["source"].tolist() == ["d.csv:2", "d.csv:6"]
    assert [(s["line"], s["reason"]) for s in dead.samples] == [
        (3, "expected 2 fields, got 3"),
        (5, "cannot read the time from 'not-a-date'"),
    ]


def test_batches_are_bounded(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i}\n" for i in range(10))
    p = write(tmp_path / "b.csv", "a,b\n" + rows)
    reader = TabularReader({"ts": {"row_index": True}, "entity": "a", "num": ["b"]})

    sizes = [len(f) for f in reader.batches(p, batch_size=4)]

    assert sizes == [4, 4, 2]


SENSOR = {"ts": {"row_index": True}, "entity": "dev", "num": "numeric", "cat": "remaining"}


def sensor_file(path: Path, values: list[str]) -> Path:
    return write(path, "dev,temp\n" + "".join(f"s,{v}\n" for v in values))


@pytest.mark.parametrize(
    ("mapping", "bad_at", "batch_size", "why"),
    [
        (SENSOR, 150, 4096, "numeric: 299 of the first 300 values are numbers"),
        (SENSOR, 250, 200, "numeric: 200 of the first 200 values are numbers"),
        ({**SENSOR, "num": ["temp"]}, 0, 4096, "listed under 'num' in mapping mapping"),
        ({**SENSOR, "num": ["temp"]}, 250, 200, "listed under 'num' in mapping mapping"),
    ],
    ids=["inferred-first-batch", "inferred-later-batch", "listed-first-row", "listed-later-batch"],
)
def test_one_non_number_is_a_bad_record_not_a_type_change(
    tmp_path: Path, mapping: dict[str, object], bad_at: int, batch_size: int, why: str
) -> None:
    values = [str(i / 4) for i in range(300)]
    values[bad_at] = "abc"
    p = sensor_file(tmp_path / "fridge.csv", values)
    dead = DeadLetter()

    frames = list(TabularReader(mapping).batches(p, batch_size=batch_size, dead=dead))

    assert all("num.temp" in f.columns and "cat.temp" not in f.columns for f in frames)
    assert sum(len(f) for f in frames) == 299
    assert [(s["source"], s["line"], s["reason"]) for s in dead.samples] == [
        (str(p), bad_at + 2, f"column 'temp' is not a number: 'abc' ({why})")
    ]


def test_a_column_of_mostly_words_is_categorical(tmp_path: Path) -> None:
    values = ["on"] * 98 + ["1", "2"]
    p = sensor_file(tmp_path / "switch.csv", values)
    dead = DeadLetter()

    frame = TabularReader(SENSOR).read(p, dead=dead)

    assert frame["cat.temp"].tolist() == values
    assert dead.count == 0


def test_missing_values_and_nan_are_not_bad_records(tmp_path: Path) -> None:
    p = sensor_file(tmp_path / "gaps.csv", ["1", "", "NaN", "2", " 3 "])
    dead = DeadLetter()

    frame = TabularReader(SENSOR).read(p, dead=dead)

    assert frame["num.temp"].tolist()[::3] == [1.0, 2.0]
    assert frame["num.temp"].isna().tolist() == [False, True, True, False, False]
    assert dead.count == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    numbers=st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr), st.integers().map(str)),
        min_size=1,
        max_size=120,
    ),
    odd=st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(["", "nan", "abc", "1.5.1", "0x10", "-", "n/a", "TRUE"])),
        max_size=4,
    ),
    batch_size=st.integers(min_value=1, max_value=64),
)
def test_a_column_keeps_one_type_and_every_row_is_kept_or_set_aside(
    tmp_path: Path, numbers: list[str], odd: list[tuple[int, str]], batch_size: int
) -> None:
    values = list(numbers)
    for at, text in odd:
        values.insert(at % (len(values) + 1), text)
    p = sensor_file(tmp_path / "any.csv", values)
    dead = DeadLetter()

    try:
        frames = list(TabularReader(SENSOR).batches(p, batch_size=batch_size, dead=dead))
    except ParseError as exc:  # every row set aside
        assert "no usable rows" in str(exc)
        frames = []

    kinds = {tuple(c for c in f.columns if c.endswith(".temp")) for f in frames}
    assert len(kinds) <= 1
    assert sum(len(f) for f in frames) + dead.count == len(values)
    assert all(s["reason"].startswith("column 'temp' is not a number: ") for s in dead.samples)
    if kinds == {("cat.temp",)}:
        assert dead.count == 0
    for f in frames if kinds == {("num.temp",)} else []:
        texts = [values[int(src.rsplit(":", 1)[1]) - 2] for src in f["source"]]
        assert all(t in ("", "nan") for t, v in zip(texts, f["num.temp"], strict=True) if v != v)  # no silent NaN


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"entity": "x"}, "field 'ts': is required"),
        ({"ts": "t", "entity": "x", "colour": 1}, "unknown field 'colour'"),
        ({"ts": {"column": "t", "epoch": "h"}, "entity": "x"}, "field 'ts.epoch'"),
        ({"ts": {"column": "t", "timezone": "Mars/Base"}, "entity": "x"}, "field 'ts.timezone'"),
        ({"ts": "t", "entity": {"column": "a", "constant": "b"}}, "field 'entity'"),
        ({"ts": "t", "entity": "x", "num": "all"}, "field 'num'"),
        ({"ts": "t", "entity": "x", "header": False}, "field 'columns'"),
        ({"ts": {"row_index": True, "base": 1e300}, "entity": "x"}, "field 'ts.base': .* within"),
    ],
)
def test_mapping_validation_names_the_field(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        load_mapping(mapping)


def test_mapping_file_errors_name_the_file(tmp_path: Path) -> None:
    p = write(tmp_path / "mine.yaml", "ts: {column: t}\nentity: {template: 5, column: x}\n")

    with pytest.raises(SchemaError, match=r"mine\.yaml: field 'entity'"):
        load_mapping(p)
    with pytest.raises(SchemaError, match="no built-in mapping"):
        load_mapping("no_such_mapping")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"ts:\n  column: [a\nentity: x\n", r"bad\.yaml line 3 column 7: not valid YAML: expected ',' or '\]'"),
        (b"ts: {column: t}\n\tentity: x\n", r"bad\.yaml line 2 column 1: not valid YAML: found character"),
        (b"\x00\xff", r"bad\.yaml: not UTF-8 text \(byte 1"),
        (b"ts: t\x01\n", r"bad\.yaml: not valid YAML: unacceptable character"),
    ],
)
def test_a_malformed_mapping_file_is_one_line_naming_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    p = tmp_path / "bad.yaml"
    p.write_bytes(content)

    with pytest.raises(SchemaError, match=message) as info:
        load_mapping(p)

    assert "\n" not in str(info.value)


def test_builtin_mappings_load() -> None:
    assert builtin_mappings() == ["edge_iiotset", "iot_on_demand", "nbaiot", "ton_iot"]
    assert all(load_mapping(name).name == name for name in builtin_mappings())


def test_missing_column_is_a_parse_error(tmp_path: Path) -> None:
    p = write(tmp_path / "m.csv", "a,b\n1,2\n")

    with pytest.raises(ParseError, match="field 'entity' names column 'device'"):
        TabularReader({"ts": {"row_index": True}, "entity": "device"}).read(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), jsonl=st.booleans())
def test_any_bytes_give_frames_or_parse_error(tmp_path: Path, data: bytes, jsonl: bool) -> None:
    p = tmp_path / "fuzz.csv"
    p.write_bytes((b'{"a": "1"}\n' if jsonl else b"a,b\n") + data)
    reader = TabularReader({"ts": {"row_index": True}, "entity": "a", "num": "numeric", "cat": "remaining"})

    try:
        frames = list(reader.batches(p, dead=DeadLetter()))
    except ParseError as exc:
        assert "fuzz.csv" in str(exc)
    else:
        assert sum(len(f) for f in frames) > 0


TON_ROWS = {
    "Fridge": 39_944,
    "GPS_Tracker": 38_960,
    "Garage_Door": 39_587,
    "Modbus": 31_106,
    "Motion_Light": 39_488,
    "Thermostat": 32_774,
    "Weather": 39_260,
}


@pytest.mark.realdata
@pytest.mark.parametrize(("device", "rows"), TON_ROWS.items())
def test_ton_iot_files(shared_data: Path, device: str, rows: int) -> None:
    path = shared_data / "ton-iot" / f"Train_Test_IoT_{device}.csv"
    truth = pd.read_csv(path, encoding="utf-8-sig")
    dead = DeadLetter()

    frame = TabularReader("ton_iot").read(path, dead=dead)

    assert (len(frame), dead.count) == (rows, 0)
    assert set(frame["entity"]) == {f"ton:{device.lower()}"}
    assert (frame["label"] == "benign").sum() == 15_000 == (truth["label"] == 0).sum()
    assert (
        frame["label"].value_counts().to_dict() == truth["type"].replace({"normal": "benign"}).value_counts().to_dict()
    )
    stamps = truth["date"].str.strip() + " " + truth["time"].str.strip()
    expected = pd.to_datetime(stamps, format="%d-%b-%y %H:%M:%S", utc=True)
    assert (frame["ts"] == expected).all()


@pytest.mark.realdata
def test_nbaiot_files(shared_data: Path) -> None:
    reader = TabularReader("nbaiot")
    labels = {}
    for path in sorted((shared_data / "nbaiot-sample").glob("*.csv")):
        frame = reader.read(path)
        assert len(frame) == 299
        assert len([c for c in frame.columns if c.startswith("num.")]) == 115
        labels[path.stem] = set(frame["label"])

    assert labels == {
        "benign_traffic": {"benign"},
        "doorbell_udp": {"gafgyt_udp"},
        "scan": {"gafgyt_scan"},
        "thermostat_udp": {"mirai_udp"},
    }


@pytest.mark.realdata
def test_one_bad_value_in_ton_iot_is_one_dead_letter(shared_data: Path, tmp_path: Path) -> None:
    lines = (shared_data / "ton-iot" / "Train_Test_IoT_Fridge.csv").read_text(encoding="utf-8-sig").splitlines()
    for n in (100, 39_000):  # in the first batch (where the type is decided) and in a later one
        date, time, _, *rest = lines[n - 1].split(",")
        lines[n - 1] = ",".join([date, time, "abc", *rest])
    path = write(tmp_path / "Train_Test_IoT_Fridge.csv", "\n".join(lines) + "\n")
    dead = DeadLetter()

    frames = list(TabularReader("ton_iot").batches(path, batch_size=10_000, dead=dead))

    assert len(frames) > 1
    assert all("num.fridge_temperature" in f.columns and "cat.fridge_temperature" not in f.columns for f in frames)
    assert sum(len(f) for f in frames) == TON_ROWS["Fridge"] - 2
    assert [(s["line"], s["reason"][:50]) for s in dead.samples] == [
        (100, "column 'fridge_temperature' is not a number: 'abc'"),
        (39_000, "column 'fridge_temperature' is not a number: 'abc'"),
    ]


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "rows", "bad", "attack"),
    [("MITM", 1_214, 15, "MITM"), ("OS_Fingerprinting", 1_001, 0, "OS_Fingerprinting")],
)
def test_edge_iiotset_files(shared_data: Path, name: str, rows: int, bad: int, attack: str) -> None:
    dead = DeadLetter()

    frame = TabularReader("edge_iiotset").read(shared_data / "edge-iiotset-attacks" / f"{name}_attack.csv", dead=dead)

    # MITM: 15 rows are shifted by the export (mDNS names and payload hex in the port columns)
    assert (len(frame), dead.count) == (rows, bad)
    assert {s["reason"].split(":")[0] for s in dead.samples} <= {
        f"column '{c}' is not a number" for c in ("tcp.connection.fin", "tcp.dstport", "udp.port")
    }
    assert set(frame["label"]) == {attack}
    assert "cat.frame.time" in frame.columns
    assert frame["ts"].is_monotonic_increasing


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "rows"),
    [("android-events", 6_336), ("ifttt-actions", 4_944), ("ifttt-events", 613), ("smartthings-events", 5_561)],
)
def test_iot_on_demand_labels(shared_data: Path, name: str, rows: int) -> None:
    path = shared_data / "iot-on-demand" / "labels" / f"{name}.csv"
    dead = DeadLetter()

    frame = TabularReader("iot_on_demand").read(path, dead=dead)

    assert (len(frame), dead.count) == (rows, 0)
    assert set(frame["label"]) == {"benign"}
    week = (pd.Timestamp("2021-03-08 05:00", tz="UTC"), pd.Timestamp("2021-03-23", tz="UTC"))
    assert frame["ts"].between(*week).all()
    assert frame["action"].str.startswith("event_").mean() > 0.9
