"""``misuse scale ingest|train|detect`` end to end, single process and on a local Dask cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.cli.common import EXIT_USAGE
from tests.scale.sites import site_rows

runner = CliRunner()


def _jsonl(path: Path, rows: list[dict[str, object]], bad_line: bool = False) -> Path:
    lines = [json.dumps(r) for r in rows]
    if bad_line:
        lines.insert(3, '{"entity": "dev00"}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _ok(args: list[str]) -> dict:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def scheduler() -> Iterator[str]:
    """The address of a one-worker Dask cluster running in this process (fast to start)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc:
        yield str(lc.scheduler_address)


def test_scale_commands_on_a_dask_cluster_match_the_single_process_run(tmp_path: Path, scheduler: str) -> None:
    project = ["--project", str(tmp_path / "proj")]
    history = _jsonl(tmp_path / "history.jsonl", site_rows(30, entities=6, per_entity=200), bad_line=True)
    today = _jsonl(tmp_path / "today.jsonl", site_rows(31, entities=6, per_entity=200, scan_entity="dev02"))
    parts_h, parts_t = str(tmp_path / "ph"), str(tmp_path / "pt")

    ingested = _ok(["scale", "ingest", str(history), "--partitioned", parts_h, "--buckets", "3", "--json", *project])
    _ok(["scale", "ingest", str(today), "--partitioned", parts_t, "-d", "today", "--buckets", "3", "--json", *project])
    common = ["--partitioned", parts_h, "--window", "600", "--seed", "2", "--json", *project]
    single = _ok(["scale", "train", "--model", "one", *common])
    scaled = _ok(["scale", "train", "--model", "two", "--cluster", scheduler, *common])
    alerts_single = _ok(["scale", "detect", "--partitioned", parts_t, "--model", "one", "--json", *project])
    alerts_scaled = _ok(
        ["scale", "detect", "--partitioned", parts_t, "--model", "two", "--cluster", scheduler, "--json", *project]
    )

    assert ingested["rows"] == 6 * 200 and ingested["bad_records"] == 1
    assert scaled["threshold"] == single["threshold"]
    assert scaled["cluster"] == scheduler and scaled["train_windows"] == single["train_windows"]
    assert alerts_scaled["windows"] == alerts_single["windows"]
    strip = ("created_at", "alert_id", "detector")
    assert [{k: v for k, v in a.items() if k not in strip} for a in alerts_scaled["alerts"]] == [
        {k: v for k, v in a.items() if k not in strip} for a in alerts_single["alerts"]
    ]
    assert any(a["entity"] == "dev02" for a in alerts_scaled["alerts"])


def test_a_bad_cluster_value_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["scale", "train", "--partitioned", str(tmp_path), "--cluster", "local:0", "--project", str(tmp_path)]
    )

    assert result.exit_code == EXIT_USAGE
    assert "--cluster 'local:0'" in result.output


def test_top_level_ingest_train_detect_take_partitioned_and_cluster(tmp_path: Path, scheduler: str) -> None:
    project = ["--project", str(tmp_path / "proj")]
    history = _jsonl(tmp_path / "history.jsonl", site_rows(40, entities=4, per_entity=150))
    today = _jsonl(tmp_path / "today.jsonl", site_rows(41, entities=4, per_entity=150, scan_entity="dev01"))
    parts_h, parts_t = str(tmp_path / "ph"), str(tmp_path / "pt")

    ingested = _ok(["ingest", str(history), "--partitioned", parts_h, "--buckets", "2", "--json", *project])
    _ok(["ingest", str(today), "--partitioned", parts_t, "-d", "today", "--buckets", "2", "--json", *project])
    common = ["--partitioned", parts_h, "--window", "600", "--json", *project]
    single = _ok(["train", "--model", "one", *common])
    scaled = _ok(["train", "--model", "two", "--cluster", scheduler, *common])
    found_single = _ok(["detect", "--partitioned", parts_t, "--model", "one", "--json", *project])
    found_scaled = _ok(
        ["detect", "--partitioned", parts_t, "--model", "two", "--cluster", scheduler, "--json", *project]
    )

    assert ingested["rows"] == 4 * 150 and ingested["partitioned"] == parts_h and ingested["buckets"] == 2
    assert scaled["threshold"] == single["threshold"] and scaled["train_windows"] == single["train_windows"]
    assert [a["score"] for a in found_scaled["alerts"]] == [a["score"] for a in found_single["alerts"]]
    assert found_scaled["windows"] == found_single["windows"] > 0


def test_cluster_without_a_partitioned_dataset_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--cluster", "local:1", "--project", str(tmp_path)])

    assert result.exit_code == 3
    assert "--partitioned" in result.output


def test_a_corrupt_partition_file_is_one_line_naming_it(tmp_path: Path) -> None:
    project = ["--project", str(tmp_path / "proj")]
    history = _jsonl(tmp_path / "history.jsonl", site_rows(42, entities=3, per_entity=100))
    parts = tmp_path / "ph"
    _ok(["scale", "ingest", str(history), "--partitioned", str(parts), "--buckets", "2", "--json", *project])
    broken = sorted(parts.glob("bucket=*/part-*.parquet"))[-1]
    broken.write_bytes(b"garbage, not parquet")

    result = runner.invoke(app, ["scale", "train", "--partitioned", str(parts), "--window", "600", *project])

    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {broken}: not a readable Parquet part (")
