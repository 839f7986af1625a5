"""``misuse ingest`` and ``misuse feedback``: bad input gives one line naming the file (or the
value) and the right exit code; a folder's files that are not data are skipped and listed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_INPUT, EXIT_USAGE

runner = CliRunner()
ZEEK = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.resp_h\n#types\ttime\tstring\taddr\taddr\n"


def _ingest(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ingest", *args, "-p", str(tmp_path / "proj")])
    return result.exit_code, result.output


def _one_line_error(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_a_csv_without_a_mapping_is_one_line_naming_the_file_and_the_mappings(tmp_path: Path) -> None:
    table = tmp_path / "x.csv"
    table.write_text("a,b\n1,2\n")

    code, output = _ingest(tmp_path, str(table))

    line = _one_line_error(output)
    assert code == EXIT_INPUT
    assert "x.csv: a csv file needs a column mapping: --mapping FILE" in line
    assert all(name in line for name in ("edge_iiotset", "iot_on_demand", "nbaiot", "ton_iot"))


def test_a_folder_holding_a_csv_without_a_mapping_names_the_csv(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "auth.log").write_text("Dec 10 06:55:46 gw sshd[1]: Invalid user admin from 1.2.3.4\n")
    (folder / "structured.csv").write_text("LineId,Content\n1,hello\n")

    code, output = _ingest(tmp_path, str(folder))

    assert code == EXIT_INPUT
    assert "structured.csv: a csv file needs a column mapping" in _one_line_error(output)


def test_a_folder_skips_files_that_are_not_data_and_reads_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "capture"
    (folder / "bro").mkdir(parents=True)
    (folder / "bro" / "conn.log").write_text(ZEEK + "1.0\tC1\t10.0.0.1\t10.0.0.2\n2.0\tC2\t10.0.0.1\t10.0.0.2\n")
    (folder / "README.md").write_text("# A capture\nrows, columns, and notes\n")
    (folder / "README.json").write_text('{\n  "name": "capture"\n}\n')
    (folder / "c.capinfos").write_text("File name:           c.pcap\n")
    (folder / "notes.bin").write_bytes(b"\x00\x01\x02")

    code, output = _ingest(tmp_path, str(folder))
    _, as_json = _ingest(tmp_path, str(folder), "--json")

    assert code == 0, output
    assert "2 events from 1 file(s)" in output
    skipped = [line for line in output.splitlines() if line.startswith("skipped ")]
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in skipped] == [
        "README.json",
        "README.md",
        "c.capinfos",
        "notes.bin",
    ]
    assert "cannot tell the format" in skipped[-1]
    result = json.loads(as_json)
    assert result["rows"] == 2 and len(result["skipped"]) == 4
    assert {"file", "reason"} == set(result["skipped"][0])


def test_a_folder_with_no_data_file_is_an_error_saying_what_was_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "PROVENANCE.md").write_text("# where, when\n")

    code, output = _ingest(tmp_path, str(folder))

    assert code == EXIT_INPUT
    assert "no data file to read: skipped 1" in _one_line_error(output)


def test_a_named_file_of_unknown_format_stays_an_error(tmp_path: Path) -> None:
    info = tmp_path / "c.capinfos"
    info.write_text("File name:           c.pcap\n")

    code, output = _ingest(tmp_path, str(info))

    assert code == EXIT_INPUT
    assert "c.capinfos: cannot tell the format" in _one_line_error(output)


@pytest.mark.parametrize(("name", "content"), [("garbage.txt", b"garbage\n"), ("hello.gz", gzip.compress(b"hello\n"))])
def test_a_word_or_two_is_not_taken_for_sea_data(tmp_path: Path, name: str, content: bytes) -> None:
    junk = tmp_path / name
    junk.write_bytes(content)

    code, output = _ingest(tmp_path, str(junk))

    assert code == EXIT_INPUT
    assert f"{name}: cannot tell the format" in _one_line_error(output)


def test_out_of_range_times_are_bad_records_and_the_good_lines_are_kept(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"ts": 1e300, "entity": "a"}\n{"ts": 10, "entity": "b"}\n')

    code, output = _ingest(tmp_path, str(events), "--json")

    result = json.loads(output)
    assert code == 0
    assert result["rows"] == 1 and result["bad_records"] == 1
    assert result["first_bad"].startswith("e.jsonl line 1: field 'ts' is out of range")


def test_a_zeek_log_cut_inside_its_fields_line_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text("#separator \\x09\n#fields\tts\tui")

    code, output = _ingest(tmp_path, str(log))

    assert code == EXIT_INPUT
    assert "conn.log: no #fields header" in _one_line_error(output)


def test_a_malformed_mapping_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    table, mapping = tmp_path / "x.csv", tmp_path / "bad.yaml"
    table.write_text("a,b\n1,2\n")
    mapping.write_text("ts:\n  column: [a\nentity: x\n")

    code, output = _ingest(tmp_path, str(table), "--mapping", str(mapping))

    assert code == EXIT_INPUT
    assert "bad.yaml line 3 column 7: not valid YAML" in _one_line_error(output)


def test_a_bad_feedback_verdict_is_a_usage_error_listing_the_verdicts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["feedback", "X", "maybe", "-p", str(tmp_path / "proj")])

    assert result.exit_code == EXIT_USAGE
    assert _one_line_error(result.output) == "error: verdict 'maybe' is not one of true_positive, false_positive"
