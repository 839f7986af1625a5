"""sniff_format and get_reader."""

from __future__ import annotations

import gzip
import json
import lzma
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError, ParseError
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.cowrie import CowrieReader
from misuse.ingest.formats import FORMATS, get_reader, reader_for, sniff_format
from misuse.ingest.sea import SeaReader
from misuse.ingest.tabular import TabularReader
from misuse.ingest.zeek import ZeekReader

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAPNG_HEADER = b"\x0a\x0d\x0d\x0a" + struct.pack("<II", 28, 0x1A2B3C4D) + b"\x00" * 16
SAMPLES: dict[str, bytes] = {
    "pcap": PCAP_HEADER,
    "pcapng": PCAPNG_HEADER,
    "zeek": b"#separator \\x09\n#set_separator\t,\n#fields\tts\tuid\n1.0\tC1\n",
    "zeek-json": json.dumps({"ts": 1.0, "uid": "C1", "id.orig_h": "10.0.0.1"}).encode() + b"\n",
    "cowrie": json.dumps({"eventid": "cowrie.session.connect", "timestamp": "2018-05-06T17:44:05Z"}).encode() + b"\n",
    "jsonl": b'{"a": 1}\n{"a": 2}\n',
    "authlog": b"Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186\n",
    "sea": b"cpp\nsh\nxrdb\nls\n[\n" * 5,
    "csv": b"date,time,value\n25-Apr-19,10:00:00,3\n",
}


@pytest.mark.parametrize(("fmt", "content"), SAMPLES.items())
@pytest.mark.parametrize("compression", ["none", "gz", "xz"])
def test_sniffs_each_format_through_compression(tmp_path: Path, fmt: str, content: bytes, compression: str) -> None:
    p = tmp_path / f"sample.{compression}"
    packed = {"none": content, "gz": gzip.compress(content), "xz": lzma.compress(content)}[compression]
    p.write_bytes(packed)

    assert sniff_format(p) == fmt


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02 binary junk", "cannot tell the format: first line is"),
        (b"hello world\n", "cannot tell the format"),
        (b"garbage\n", "cannot tell the format: 1 line"),
        (gzip.compress(b"hello\n"), "cannot tell the format: 1 line"),
        (("\n".join(f"word{i}" for i in range(30)) + "\n").encode(), "cannot tell the format: 30 line"),
        (b"{broken json\n", "looks like JSON but is not"),
        (b"[1, 2]\n", "not an object"),
        (b"\n\n\n", "no text lines"),
        (b"", "file is empty"),
    ],
)
def test_unknown_content_names_the_file_and_what_was_seen(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "mystery.bin"
    p.write_bytes(content)

    with pytest.raises(ParseError, match=message) as info:
        sniff_format(p)

    assert "mystery.bin" in str(info.value)


def test_a_short_or_unrepetitive_word_list_is_not_taken_for_sea_but_reads_as_sea_when_asked(tmp_path: Path) -> None:
    p = tmp_path / "User9"
    p.write_bytes(b"ls\ncat\nvi\n")

    with pytest.raises(ParseError, match="give the format sea"):
        sniff_format(p)
    assert len(get_reader("sea").read(p)) == 3


def test_csv_and_jsonl_without_a_mapping_name_the_file_and_the_mappings(tmp_path: Path) -> None:
    csv_file, jsonl_file = tmp_path / "x.csv", tmp_path / "y.jsonl"
    csv_file.write_text("a,b\n1,2\n")
    jsonl_file.write_text('{"a": 1}\n')

    for path, fmt in ((csv_file, "csv"), (jsonl_file, "jsonl")):
        with pytest.raises(
            ParseError, match=f"{path.name}: a {fmt} file needs a column mapping: --mapping FILE"
        ) as info:
            reader_for(path)
        assert "nbaiot" in str(info.value) and "ton_iot" in str(info.value)
    with pytest.raises(InvalidParameterError, match="'csv' needs a column mapping"):
        get_reader("csv")


def test_reader_for_gives_the_mapping_to_tabular_files_only(tmp_path: Path) -> None:
    zeek, table = tmp_path / "conn.log", tmp_path / "t.csv"
    zeek.write_bytes(SAMPLES["zeek"])
    table.write_text("n,dev\n1,cam\n")
    mapping = {"ts": {"row_index": True}, "entity": "dev"}

    kinds = [reader_for(p, mapping=mapping) for p in (zeek, table)]

    assert [(k, type(r)) for k, r in kinds] == [("zeek", ZeekReader), ("csv", TabularReader)]


def test_truncated_compressed_file_is_a_parse_error(tmp_path: Path) -> None:
    p = tmp_path / "cut.gz"
    p.write_bytes(gzip.compress(b"x" * 1000)[:20])

    with pytest.raises(ParseError, match=r"cut\.gz: .*(corrupt|cannot read)"):
        sniff_format(p)


def test_get_reader_returns_the_reader_for_each_format() -> None:
    mapping = {"ts": {"row_index": True}, "entity": {"constant": "x"}}

    assert isinstance(get_reader("zeek"), ZeekReader)
    assert isinstance(get_reader("zeek-json", log="dns"), ZeekReader)
    assert isinstance(get_reader("cowrie"), CowrieReader)
    assert isinstance(get_reader("authlog", year=2020), AuthLogReader)
    assert isinstance(get_reader("sea"), SeaReader)
    assert isinstance(get_reader("csv", mapping=mapping), TabularReader)
    assert isinstance(get_reader("jsonl", mapping=mapping), TabularReader)
    with pytest.raises(ParseError, match="unknown format 'excel'"):
        get_reader("excel")


def test_get_reader_pcap_is_the_pcap_reader() -> None:
    pcap = pytest.importorskip("misuse.ingest.pcap")

    assert isinstance(get_reader("pcap"), pcap.PcapReader)
    assert isinstance(get_reader("pcapng"), pcap.PcapReader)


def test_sniffed_text_formats_read_back(tmp_path: Path) -> None:
    for fmt in ("zeek", "cowrie", "authlog", "sea"):
        p = tmp_path / f"{fmt}.log"
        p.write_bytes(SAMPLES[fmt])
        options = {"year": 2016} if fmt == "authlog" else {}

        frame = get_reader(sniff_format(p), **options).read(p)

        assert len(frame) >= 1, fmt


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_give_a_format_or_parse_error(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.bin"
    p.write_bytes(data)

    try:
        fmt = sniff_format(p)
    except ParseError as exc:
        assert "fuzz.bin" in str(exc)
    else:
        assert fmt in FORMATS


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("relative", "fmt"),
    [
        ("iot23/CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled", "zeek"),
        ("iot23/CTU-Honeypot-Capture-4-1/2018-10-25-14-06-32-192.168.1.132.pcap.xz", "pcap"),
        ("iot23/CTU-IoT-Malware-Capture-3-1/test.pcap", "pcap"),
        ("cowrie-2018/json/cowrie.json.2018-05-06", "cowrie"),
        ("loghub-auth/OpenSSH/OpenSSH_2k.log", "authlog"),
        ("loghub-auth/Linux/Linux_2k.log", "authlog"),
        ("sea-masquerade/users/User1", "sea"),
        ("ton-iot/Train_Test_IoT_Fridge.csv", "csv"),
        ("nbaiot-sample/scan.csv", "csv"),
        ("edge-iiotset-attacks/MITM_attack.csv", "csv"),
        ("iot-on-demand/labels/android-events.csv", "csv"),
    ],
)
def test_real_files_are_sniffed(shared_data: Path, relative: str, fmt: str) -> None:
    assert sniff_format(shared_data / relative) == fmt


@pytest.mark.realdata
def test_every_sea_user_file_is_sniffed_as_sea(shared_data: Path) -> None:
    users = sorted((shared_data / "sea-masquerade/users").iterdir())

    found = {sniff_format(u) for u in users}

    assert len(users) == 50 and found == {"sea"}
