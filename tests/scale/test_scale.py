"""Scale-out: entity partitioning, and train/detect on a Dask cluster equal to the single-process path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.errors import InvalidParameterError, ParseError, SchemaError
from misuse.events import events_to_frame
from misuse.pipeline import detect, train
from misuse.scale import PartitionedDataset, entity_buckets, parse_cluster, write_partitioned
from misuse.scale.run import detect_partitioned, train_partitioned
from tests.scale.sites import site_rows


def _site(seed: int, entities: int = 12, per_entity: int = 300, scan_entity: str | None = None) -> pd.DataFrame:
    return events_to_frame(site_rows(seed, entities, per_entity, scan_entity))


def _write(events: pd.DataFrame, root: Path, buckets: int = 4) -> PartitionedDataset:
    # two batches, the second without one attribute column: partitions must share the union schema
    half = len(events) // 2
    second = events.iloc[half:].drop(columns=["cat.conn_state"])
    return write_partitioned([events.iloc[:half], second], root, "site", buckets=buckets, flush_rows=500)


def _alert_dicts(alerts: list) -> list[dict]:
    return [{k: v for k, v in a.to_dict().items() if k != "created_at"} for a in alerts]


def test_entity_buckets_are_stable_and_in_range() -> None:
    names = pd.Series([f"dev{i}" for i in range(200)])

    first, again = entity_buckets(names, 7), entity_buckets(names.sample(frac=1, random_state=1).sort_index(), 7)

    assert np.array_equal(first, again)
    assert first.min() >= 0 and first.max() < 7
    assert len(set(first.tolist())) == 7


def test_every_entity_lives_in_one_partition_and_nothing_is_lost(tmp_path: Path) -> None:
    events = _site(0)

    ds = _write(events, tmp_path / "parts")

    owners: dict[str, set[str]] = {}
    for folder in ds.partition_paths():
        part = ds.read_partition(folder)
        assert list(part.columns) == ds.columns
        assert part["ts"].is_monotonic_increasing
        for e in part["entity"].unique():
            owners.setdefault(str(e), set()).add(folder.name)
    assert all(len(v) == 1 for v in owners.values())
    assert set(owners) == set(events["entity"])
    back = ds.read_all()
    assert ds.rows == len(events) == len(back)
    assert sorted(back["event_id"]) == sorted(events["event_id"])
    reopened = PartitionedDataset.open(tmp_path / "parts")
    assert reopened.columns == ds.columns and reopened.parts == ds.parts


def test_append_adds_rows_and_keeps_bucket_count(tmp_path: Path) -> None:
    root = tmp_path / "parts"
    first = write_partitioned([_site(1, entities=3, per_entity=20)], root, "site", buckets=3)

    second = write_partitioned([_site(2, entities=3, per_entity=20)], root, "site", buckets=3, replace=False)

    assert second.rows == 2 * first.rows
    assert len(second.read_all()) == second.rows
    with pytest.raises(InvalidParameterError, match="3 buckets"):
        write_partitioned([_site(3, entities=2, per_entity=5)], root, "site", buckets=5, replace=False)


def test_refuses_to_overwrite_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(SchemaError, match="not a partitioned event dataset"):
        write_partitioned([_site(0, entities=2, per_entity=5)], tmp_path, "x")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_open_rejects_missing_or_foreign_metadata(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"_dataset\.json missing"):
        PartitionedDataset.open(tmp_path)
    (tmp_path / "_dataset.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(SchemaError, match="format 'other'"):
        PartitionedDataset.open(tmp_path)


@pytest.mark.parametrize(
    "spec", ["local:0", "local:x", "local", "", "nonsense", "tcp://host", "host:0", "host:70000", "tcp://a b:1"]
)
def test_bad_cluster_values_fail_loudly(spec: str) -> None:
    with pytest.raises(InvalidParameterError, match="cluster"):
        parse_cluster(spec)


@pytest.mark.parametrize(
    "spec", ["tcp://10.0.0.5:8786", "scheduler:8786", "tls://sched.example.org:8786", "tcp://[::1]:8786"]
)
def test_scheduler_addresses_pass_as_given(spec: str) -> None:
    assert parse_cluster(spec) == (spec, 0)


def test_dask_cluster_gives_the_single_process_model_and_alerts(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    history = _write(_site(10), tmp_path / "history")
    today = _write(_site(11, scan_entity="dev03"), tmp_path / "today", buckets=5)
    settings = {"window": 300.0, "target_fpr": 0.02, "seed": 7}

    single = train(history.read_all(), **settings)
    single_alerts, single_scored = detect(single, today.read_all())
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as lc,
        distributed.Client(lc) as client,
    ):
        scaled = train_partitioned(history, client=client, **settings)
        scaled_alerts, scaled_scored = detect_partitioned(scaled, today, client=client)

    assert scaled.threshold.threshold_ == single.threshold.threshold_
    assert scaled.baseline.medians_ == single.baseline.medians_
    assert scaled.known.to_dict() == single.known.to_dict()
    assert {k: v for k, v in scaled.info.items() if k != "partitions"} == single.info
    pd.testing.assert_frame_equal(scaled_scored, single_scored)
    assert len(single_alerts) > 0
    assert _alert_dicts(scaled_alerts) == _alert_dicts(single_alerts)
    assert any(a.entity == "dev03" for a in scaled_alerts)


def test_partition_by_partition_without_a_cluster_is_the_same_too(tmp_path: Path) -> None:
    history = _write(_site(20, entities=6), tmp_path / "h", buckets=3)

    single = train(history.read_all(), window=600.0, seed=1)
    scaled = train_partitioned(history, window=600.0, seed=1)

    scores_single = single.detector.score_many(single.features(history.read_all())[single.detector.features_])
    scores_scaled = scaled.detector.score_many(scaled.features(history.read_all())[scaled.detector.features_])
    assert np.array_equal(scores_single, scores_scaled)
    assert scaled.info["partitions"] == len(history.parts)


@pytest.mark.parametrize("damage", [b"", b"PAR1 not really parquet", None])
def test_a_damaged_part_file_is_a_parse_error_naming_it(tmp_path: Path, damage: bytes | None) -> None:
    ds = _write(_site(4, entities=3, per_entity=20), tmp_path / "parts", buckets=1)
    part = next(ds.partition_paths()[0].glob("part-*.parquet"))
    if damage is None:
        part.write_bytes(part.read_bytes()[:-40])  # truncated: the footer is gone
    else:
        part.write_bytes(damage)

    with pytest.raises(ParseError, match=rf"^{re.escape(str(part))}: not a readable Parquet part \(.+\)$"):
        ds.read_all()


def test_ecod_gives_the_single_process_threshold_scores_and_alerts(tmp_path: Path) -> None:
    # ECOD scores each row against the training sample only (not against the batch), so partitioning
    # cannot change its scores: docs/scale.md and misuse/scale/run.py once claimed the opposite
    history = _write(_site(50, entities=8), tmp_path / "history", buckets=3)
    today = _write(_site(51, entities=8, scan_entity="dev02"), tmp_path / "today", buckets=3)
    settings = {"window": 300.0, "target_fpr": 0.02, "seed": 3, "detector": "ecod"}

    single = train(history.read_all(), **settings)
    single_alerts, single_scored = detect(single, today.read_all(), detector_name="window-ecod")
    scaled = train_partitioned(history, **settings)
    scaled_alerts, scaled_scored = detect_partitioned(scaled, today, detector_name="window-ecod")

    assert scaled.threshold.threshold_ == single.threshold.threshold_
    pd.testing.assert_frame_equal(scaled_scored, single_scored)
    assert len(single_alerts) > 0
    assert _alert_dicts(scaled_alerts) == _alert_dicts(single_alerts)
