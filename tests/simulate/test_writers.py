"""The written files: byte-identical for one seed, real formats, readable by the project's readers."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from misuse.errors import InvalidParameterError
from misuse.ingest.authlog import AuthLogReader
from misuse.ingest.base import Reader
from misuse.ingest.formats import sniff_format
from misuse.ingest.native import EventJsonReader
from misuse.ingest.zeek import ZeekReader
from misuse.simulate import SimulatedSite, simulate_site, write_site

SYSLOG = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d hub sshd\[\d+\]: \S")


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, default_site: SimulatedSite
) -> tuple[SimulatedSite, dict[str, Path]]:
    site = default_site
    start = time.perf_counter()
    paths = write_site(site, tmp_path_factory.mktemp("site"))
    sizes = {k: p.stat().st_size for k, p in paths.items()}
    print(f"\nwrite_site: {time.perf_counter() - start:.2f} s, bytes {sizes}")
    return site, paths


def test_same_seed_gives_byte_identical_files(written: tuple[SimulatedSite, dict[str, Path]], tmp_path: Path) -> None:
    _, first = written
    again = write_site(simulate_site(seed=7), tmp_path / "again")
    for key, path in first.items():
        assert path.read_bytes() == again[key].read_bytes(), key


def test_different_seed_gives_different_files(written: tuple[SimulatedSite, dict[str, Path]], tmp_path: Path) -> None:
    _, first = written
    other = write_site(simulate_site(seed=8), tmp_path / "other")
    for key in ("conn", "auth", "app", "truth"):
        assert first[key].read_bytes() != other[key].read_bytes(), key


def test_conn_log_is_zeek_tsv(written: tuple[SimulatedSite, dict[str, Path]]) -> None:
    site, paths = written
    lines = paths["conn"].read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert lines[0] == "#separator \\x09"
    header = {ln.split("\t", 1)[0]: ln.split("\t")[1:] for ln in lines if ln.startswith("#") and "\t" in ln}
    assert header["#path"] == ["conn"] and header["#unset_field"] == ["-"]
    assert header["#empty_field"] == ["(empty)"] and header["#set_separator"] == [","]
    fields, types = header["#fields"], header["#types"]
    assert len(fields) == len(types) == 23
    assert fields[:3] == ["ts", "uid", "id.orig_h"] and fields[-2:] == ["label", "detailed-label"]
    assert lines[-1].startswith("#close\t")
    rows = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    assert len(rows) == len(site.flows)
    assert all(len(r) == len(fields) for r in rows)
    col = {name: i for i, name in enumerate(fields)}
    assert {r[col["label"]] for r in rows} == {"Benign", "Malicious"}
    assert {r[col["detailed-label"]] for r in rows if r[col["label"]] == "Benign"} == {"-"}
    ts = [float(r[col["ts"]]) for r in rows]
    assert ts == sorted(ts)
    assert all(r[col["uid"]].startswith("C") and len(r[col["uid"]]) == 18 for r in rows)


def test_auth_log_is_openssh_syslog(written: tuple[SimulatedSite, dict[str, Path]]) -> None:
    site, paths = written
    lines = paths["auth"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(site.auth)
    assert all(SYSLOG.match(ln) for ln in lines)
    text = "\n".join(lines)
    assert re.search(r"Failed password for root from 203\.0\.113\.\d+ port \d+ ssh2", text)
    assert re.search(r"Failed password for invalid user \S+ from 203\.0\.113\.\d+ port \d+ ssh2", text)
    assert re.search(r"Invalid user \S+ from 203\.0\.113\.\d+ port \d+$", text, re.M)
    assert re.search(r"Accepted password for dave from 192\.168\.1\.25 port \d+ ssh2", text)
    assert "pam_unix(sshd:session): session opened for user root by (uid=0)" in text


def test_app_jsonl_is_flattened_events(written: tuple[SimulatedSite, dict[str, Path]]) -> None:
    site, paths = written
    lines = paths["app"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(site.commands)
    for n, line in enumerate(lines, start=1):
        obj = json.loads(line)
        assert list(obj)[:8] == ["event_id", "ts", "entity", "peer", "kind", "action", "label", "source"]
        assert obj["source"] == f"app.jsonl:{n}"
        assert obj["kind"] == "command"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", obj["ts"])
        assert {"cat.client", "cat.src_ip"} <= set(obj)


def test_truth_csv_and_readme(written: tuple[SimulatedSite, dict[str, Path]]) -> None:
    site, paths = written
    with open(paths["truth"], newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["attack_id"] for r in rows] == list(site.truth["attack_id"])
    for r, start in zip(rows, site.truth["start"], strict=True):
        assert pd.Timestamp(r["start"]) == start
        assert pd.Timestamp(r["end"]) > pd.Timestamp(r["start"])
    readme = paths["readme"].read_text(encoding="utf-8")
    assert "seed        7" in readme and "attack_day  3" in readme


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(InvalidParameterError, match="taken"):
        write_site(simulate_site(seed=1, days=1, scale=0.1), target)


@pytest.mark.parametrize(
    ("key", "frame", "reader"),
    [
        ("conn", "flows", ZeekReader()),
        ("auth", "auth", AuthLogReader(year=2026)),
        ("app", "commands", EventJsonReader()),
    ],
    ids=["conn", "auth", "app"],
)
def test_project_readers_read_back_the_same_events(
    written: tuple[SimulatedSite, dict[str, Path]], key: str, frame: str, reader: Reader
) -> None:
    site, paths = written
    got = reader.read(paths[key])
    mine: pd.DataFrame = getattr(site, frame)
    assert len(got) == len(mine)
    # auth.log carries no labels: the ground truth lives only in the simulator's frames
    cols = [c for c in mine.columns if c != "label" or key != "auth"]
    assert set(cols) <= set(got.columns)
    pd.testing.assert_frame_equal(got[cols], mine[cols], check_dtype=False)


def test_format_sniffing_recognises_every_file(written: tuple[SimulatedSite, dict[str, Path]]) -> None:
    _, paths = written
    found = {key: sniff_format(paths[key]) for key in ("conn", "auth", "app")}
    assert found == {"conn": "zeek", "auth": "authlog", "app": "events-jsonl"}
