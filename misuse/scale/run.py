"""Train and detect the window model of :mod:`misuse.pipeline` over entity-partitioned data, on Dask.

Split of the work (the single-process path is :func:`misuse.pipeline.train` / ``detect`` on the
whole dataset; this module gives the same model and the same alerts):

- per partition, on the workers (every entity lives in one partition, and each of these steps
  looks only at one entity's events): ``KnownSets.learn``, :func:`~misuse.features.windows.window_features`,
  ``EntityBaseline.fit`` and ``transform`` -- the very functions the single-process path calls;
- on the client: the union of all partitions' window features, put back in the single-process
  order (entity, window start), then the seeded fit/calibration split, the detector fit and the
  threshold, exactly as in :func:`misuse.pipeline.train`. Window features are ~100x fewer rows
  than events, so this global step is small; the detector is fitted on the *whole* union, not a
  sample;
- detection: :func:`misuse.pipeline.detect` per partition with the fitted model broadcast to the
  workers (scores are per window, explanations per entity), results put back in the same order.

Identity with the single-process path holds because every registered detector's ``score_many``
scores each row on its own against what it learned (the conformance suite checks ``score_one``
against ``score_many``); ECOD too, whose tail probabilities count the training sample only.
``tests/scale`` checks threshold, scores and alerts exactly for the isolation forest and ECOD.
The one-class SVM's scores can differ in the last bit (its kernel sums are computed in blocks of
the batch): 1 of 1,869 window scores by 1.8e-15 on a test site, same threshold and alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.detectors.registry import make_detector
from misuse.detectors.threshold import FPRThreshold
from misuse.errors import InvalidParameterError, SchemaError
from misuse.events import is_malicious_label
from misuse.features.windows import EntityBaseline, KnownSets, feature_columns, window_features
from misuse.pipeline import WindowModel, detect
from misuse.scale.partition import PartitionedDataset, read_partition

if TYPE_CHECKING:
    from distributed import Client

Tick = Callable[[int], None]


@dataclass
class PartTraining:
    """What one partition contributes to training."""

    features: pd.DataFrame
    known: KnownSets
    medians: dict[str, dict[str, float]]
    ts_min: pd.Timestamp | None
    ts_max: pd.Timestamp | None


def _time_filter(events: pd.DataFrame, since: str | None, until: str | None) -> pd.DataFrame:
    if since is not None:
        events = events[events["ts"] >= pd.Timestamp(since, tz="UTC")]
    if until is not None:
        events = events[events["ts"] < pd.Timestamp(until, tz="UTC")]
    return events


def train_partition(
    folder: Path, columns: list[str], window: float, benign_only: bool, until: str | None = None
) -> PartTraining:
    """The per-entity training steps on one partition (runs on a worker)."""
    events = _time_filter(read_partition(folder, columns), None, until)
    if benign_only:
        events = events[~events["label"].map(is_malicious_label)]
    known = KnownSets.learn(events)
    wins = window_features(events, window, known)
    baseline = EntityBaseline().fit(wins)
    return PartTraining(
        features=baseline.transform(wins),
        known=known,
        medians=baseline.medians_,
        ts_min=events["ts"].min() if len(events) else None,
        ts_max=events["ts"].max() if len(events) else None,
    )


def detect_partition(
    folder: Path, columns: list[str], model: WindowModel, detector_name: str, since: str | None = None
) -> tuple[list[Alert], pd.DataFrame]:
    """:func:`misuse.pipeline.detect` on one partition (runs on a worker)."""
    events = _time_filter(read_partition(folder, columns), since, None)
    return detect(model, events, detector_name=detector_name)


def _run(
    client: Client | None, fn: Callable[..., Any], folders: Sequence[Path], tick: Tick | None, **kwargs: Any
) -> list[Any]:
    """``fn(folder, **kwargs)`` for every folder: on the cluster, or here one after the other."""
    if client is None:
        out = []
        for f in folders:
            out.append(fn(f, **kwargs))
            if tick is not None:
                tick(1)
        return out
    from distributed import as_completed

    futures = client.map(fn, list(folders), pure=False, **kwargs)
    for _ in as_completed(futures):
        if tick is not None:
            tick(1)
    return list(client.gather(futures))


def _in_window_order(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-partition window frames in the single-process order (entity, window start)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["entity", "window_start"], kind="stable").reset_index(drop=True)


def train_partitioned(
    dataset: PartitionedDataset,
    *,
    client: Client | None = None,
    window: float = 60.0,
    target_fpr: float = 0.01,
    detector: str = "iforest",
    seed: int = 0,
    benign_only: bool = False,
    calibration_fraction: float = 0.3,
    until: str | None = None,
    tick: Tick | None = None,
) -> WindowModel:
    """:func:`misuse.pipeline.train` over a partitioned dataset, the per-entity work on ``client``.

    Parameters are those of :func:`misuse.pipeline.train`; ``client`` is a Dask client (None runs
    the partitions here, one after the other), ``until`` keeps only events before that UTC time,
    and ``tick`` is called once per finished partition.
    """
    if not 0.0 < calibration_fraction < 1.0:
        raise InvalidParameterError(
            f"The 'calibration_fraction' parameter must be in (0, 1). Got {calibration_fraction!r} instead."
        )
    if window <= 0:
        raise InvalidParameterError(f"The 'window' parameter must be > 0 seconds. Got {window!r} instead.")
    parts: list[PartTraining] = _run(
        client,
        train_partition,
        dataset.partition_paths(),
        tick,
        columns=dataset.columns,
        window=window,
        benign_only=benign_only,
        until=until,
    )
    feats = _in_window_order([p.features for p in parts])
    if len(feats) < 20:
        raise SchemaError(f"training needs at least 20 windows of {window:g}s, got {len(feats)}")
    known = KnownSets(cap=parts[0].known.cap)
    medians: dict[str, dict[str, float]] = {}
    for p in parts:
        known.peers.update(p.known.peers)
        known.actions.update(p.known.actions)
        medians.update(p.medians)
    baseline = EntityBaseline(medians_=dict(sorted(medians.items())))
    # from here on exactly the global steps of misuse.pipeline.train, on the union of window features
    cols = feature_columns(feats)
    rng = np.random.default_rng(seed)
    calib = rng.random(len(feats)) < calibration_fraction
    det = make_detector(detector, seed=seed)
    det.learn_many(feats.loc[~calib, cols])
    thr = FPRThreshold(target_fpr).fit(det.score_many(feats.loc[calib, cols]))
    starts = [p.ts_min for p in parts if p.ts_min is not None]
    ends = [p.ts_max for p in parts if p.ts_max is not None]
    info = {
        "detector": detector,
        "seed": seed,
        "target_fpr": target_fpr,
        "train_windows": int((~calib).sum()),
        "calibration_windows": int(calib.sum()),
        "entities": int(feats["entity"].nunique()),
        "train_start": str(min(starts)),
        "train_end": str(max(ends)),
        "features": cols,
        "partitions": len(parts),
    }
    return WindowModel(det, thr, baseline, known, window, info)


def detect_partitioned(
    model: WindowModel,
    dataset: PartitionedDataset,
    *,
    client: Client | None = None,
    detector_name: str = "window-iforest",
    since: str | None = None,
    tick: Tick | None = None,
) -> tuple[list[Alert], pd.DataFrame]:
    """:func:`misuse.pipeline.detect` over a partitioned dataset, partition by partition on ``client``.

    Returns the alerts and the scored windows in the single-process order (entity, window start).
    """
    shipped: Any = model
    if client is not None:
        shipped = client.scatter(model, broadcast=True)
    results: list[tuple[list[Alert], pd.DataFrame]] = _run(
        client,
        detect_partition,
        dataset.partition_paths(),
        tick,
        columns=dataset.columns,
        model=shipped,
        detector_name=detector_name,
        since=since,
    )
    scored = _in_window_order([s for _, s in results])
    if len(scored) == 0:
        scored = results[0][1] if results else pd.DataFrame()
    alerts = [a for batch, _ in results for a in batch]
    alerts.sort(key=lambda a: (a.entity, a.window_start))
    return alerts, scored
