"""Glue for the CLI: ingest into a partitioned dataset, train and detect on one (on Dask or here),
with models and alerts kept in the project store as :mod:`misuse.workflows` does."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from misuse.alerts.model import Alert
from misuse.pipeline import WindowModel, detect, train
from misuse.scale.cluster import connect, parse_cluster
from misuse.scale.partition import DEFAULT_BUCKETS, PartitionedDataset, write_partitioned
from misuse.scale.run import detect_partitioned, train_partitioned
from misuse.store.duck import Store
from misuse.workflows import IngestResult, ingest_files, window_model_name

Tick = Callable[[int], None]


def ingest_partitioned(
    store: Store,
    paths: Sequence[str | Path],
    out: str | Path,
    dataset: str,
    *,
    fmt: str | None = None,
    options: dict[str, Any] | None = None,
    buckets: int = DEFAULT_BUCKETS,
    append: bool = False,
    tick: Tick | None = None,
) -> IngestResult:
    """Read files with the right readers and write their events to ``out``, partitioned by entity.

    Bad records go to ``<project>/deadletter/<dataset>.jsonl`` and the store's ``dead_letters``
    table, as with :func:`misuse.workflows.ingest_files`.
    """

    def write(batches: Iterator[pd.DataFrame], sources: list[str]) -> int:
        meta = Path(out) / "_dataset.json"
        before = PartitionedDataset.open(out).rows if append and meta.is_file() else 0
        ds = write_partitioned(batches, out, dataset, buckets=buckets, sources=sources, replace=not append)
        return ds.rows - before

    return ingest_files(store, paths, dataset, fmt=fmt, options=options, append=append, tick=tick, write=write)


def train_on_partitioned(
    store: Store,
    partitioned: str | Path,
    model_name: str,
    *,
    cluster: str | None = None,
    window: float = 60.0,
    target_fpr: float = 0.01,
    detector: str = "iforest",
    seed: int = 0,
    benign_only: bool = False,
    until: str | None = None,
    tick: Tick | None = None,
) -> WindowModel:
    """Train on a partitioned dataset and register the model in ``store``.

    With ``cluster`` (``local:N`` or a scheduler address) the per-entity work runs on Dask; without
    it, the single-process :func:`misuse.pipeline.train` runs on the whole dataset. Both give the
    same model.
    """
    if cluster is not None:
        parse_cluster(cluster)
    ds = PartitionedDataset.open(partitioned)
    kw: dict[str, Any] = {
        "window": window,
        "target_fpr": target_fpr,
        "detector": detector,
        "seed": seed,
        "benign_only": benign_only,
    }
    if cluster is None:
        events = ds.read_all()
        if until is not None:
            events = events[events["ts"] < pd.Timestamp(until, tz="UTC")]
        model = train(events, **kw)
    else:
        with connect(cluster) as client:
            model = train_partitioned(ds, client=client, until=until, tick=tick, **kw)
        model.info["cluster"] = cluster
    model.info["dataset"] = ds.name
    model.info["partitioned"] = str(ds.root)
    model.save(store.model_dir(model_name))
    store.register_model(model_name, "window", model.info)
    return model


def detect_on_partitioned(
    store: Store,
    partitioned: str | Path,
    model_name: str | None = None,
    *,
    cluster: str | None = None,
    since: str | None = None,
    tick: Tick | None = None,
) -> tuple[list[Alert], pd.DataFrame]:
    """Run a stored model over a partitioned dataset (on Dask with ``cluster``), store the alerts.

    Raises
    ------
    NotFittedError
        When no model is named and none has been trained.
    """
    if cluster is not None:
        parse_cluster(cluster)
    name = window_model_name(store, model_name)
    model = WindowModel.load(store.model_dir(name))
    ds = PartitionedDataset.open(partitioned)
    detector_name = f"window-{model.info.get('detector', 'model')}"
    if cluster is None:
        events = ds.read_all()
        if since is not None:
            events = events[events["ts"] >= pd.Timestamp(since, tz="UTC")]
        alerts, scored = detect(model, events, detector_name=detector_name, progress=tick)
    else:
        with connect(cluster) as client:
            alerts, scored = detect_partitioned(
                model, ds, client=client, detector_name=detector_name, since=since, tick=tick
            )
    store.clear_alerts(ds.name, name)
    store.add_alerts(alerts, dataset=ds.name, model=name)
    return alerts, scored
