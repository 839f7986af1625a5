"""Event datasets partitioned by entity: every entity's events live in exactly one partition.

Layout of a partitioned dataset folder::

    DIR/_dataset.json            name, bucket count, the column list, rows per partition
    DIR/bucket=0007/part-00000.parquet
    DIR/bucket=0007/part-00001.parquet ...

An entity goes to bucket ``hash(entity) % buckets`` (pandas' fixed-key SipHash, the same on every
machine and every run), so a partition holds whole entities and the per-entity work of the window
model (novelty sets, window features, baselines) runs on one partition without looking at any other.
Hashing into a fixed number of buckets, rather than one folder per entity, keeps the file count
bounded for millions of devices.

Reading a partition gives the dataset's full column list in its canonical order (columns a part
lacks are filled with nulls) and sorts the rows by time with a stable sort, exactly as
:meth:`misuse.store.duck.Store.events` does for the whole dataset; so per-entity results on a
partition equal those on the whole dataset.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from misuse.errors import InvalidParameterError, ParseError, SchemaError
from misuse.events import BASE_COLUMNS, NUM_PREFIX

META_FILE = "_dataset.json"
FORMAT = "misuse-partitioned-events"
VERSION = 1
DEFAULT_BUCKETS = 32
#: rows buffered in total across buckets before the largest buffer is written out
DEFAULT_FLUSH_ROWS = 1_000_000


def entity_buckets(entities: pd.Series | np.ndarray, buckets: int) -> np.ndarray:
    """The bucket of each entity: a stable hash of its name modulo ``buckets``.

    Examples
    --------
    >>> b = entity_buckets(pd.Series(["cam", "lock", "cam"]), 8)
    >>> bool(b[0] == b[2]), int(b.max()) < 8
    (True, True)
    """
    if buckets < 1:
        raise InvalidParameterError(f"The 'buckets' parameter must be >= 1. Got {buckets!r} instead.")
    values = np.asarray(pd.Series(entities).astype(str).to_numpy(), dtype=object)
    hashed = pd.util.hash_array(values, categorize=True)
    return (hashed % np.uint64(buckets)).astype(np.int64)


def canonical_columns(columns: Iterable[str]) -> list[str]:
    """The event model's column order: the base columns, then the others sorted."""
    cols = set(columns)
    return [c for c in BASE_COLUMNS if c in cols] + sorted(cols - set(BASE_COLUMNS))


@dataclass
class PartitionedDataset:
    """A folder of entity-partitioned Parquet events (see the module docstring).

    Parameters
    ----------
    root:
        The dataset folder.
    name:
        Dataset name (stored alerts and models refer to it).
    buckets:
        Number of hash buckets entities are spread over.
    columns:
        Every column of the dataset, in canonical order.
    parts:
        Rows per non-empty partition folder name (``bucket=0007``).
    sources:
        The input files.
    """

    root: Path
    name: str
    buckets: int
    columns: list[str]
    parts: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Total number of events."""
        return sum(self.parts.values())

    def partition_paths(self) -> list[Path]:
        """The non-empty partition folders, in bucket order."""
        return [self.root / p for p in sorted(self.parts)]

    @classmethod
    def open(cls, root: str | Path) -> PartitionedDataset:
        """Open a folder written by :func:`write_partitioned`."""
        root = Path(root)
        meta_path = root / META_FILE
        if not meta_path.is_file():
            raise SchemaError(f"{root}: not a partitioned event dataset ({META_FILE} missing)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{meta_path}: not valid JSON ({exc})") from None
        if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
            raise SchemaError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                f"expected {FORMAT!r} version <= {VERSION}"
            )
        return cls(
            root=root,
            name=str(meta["name"]),
            buckets=int(meta["buckets"]),
            columns=list(meta["columns"]),
            parts={str(k): int(v) for k, v in meta["parts"].items()},
            sources=list(meta.get("sources", [])),
        )

    def save_meta(self) -> None:
        """Write ``_dataset.json``."""
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "buckets": self.buckets,
            "rows": self.rows,
            "columns": self.columns,
            "parts": self.parts,
            "sources": self.sources,
        }
        (self.root / META_FILE).write_text(json.dumps(meta, indent=1))

    def read_partition(self, part: str | Path) -> pd.DataFrame:
        """One partition's events (all columns, sorted by time, stable)."""
        return read_partition(Path(part) if Path(part).is_absolute() else self.root / part, self.columns)

    def read_all(self) -> pd.DataFrame:
        """The whole dataset as one frame, sorted by time (stable), like ``Store.events``."""
        frames = [read_partition(p, self.columns, sort=False) for p in self.partition_paths()]
        if not frames:
            raise SchemaError(f"{self.root}: partitioned dataset '{self.name}' has no events")
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def read_partition(folder: Path, columns: list[str], *, sort: bool = True) -> pd.DataFrame:
    """Read one partition folder with the dataset's column list.

    Parts are read in file-name order (the order they were written); missing ``num.`` columns
    come back as float NaN and other missing columns as None.

    Raises
    ------
    ParseError
        Naming the part file, when it is not a readable Parquet file (truncated, overwritten, gone).
    """
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise SchemaError(f"{folder}: partition has no part-*.parquet files")
    frames = []
    for f in files:
        try:
            frame = pq.read_table(f).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ParseError(f"not a readable Parquet part ({' '.join(str(exc).split())})", source=str(f)) from None
        for c in columns:
            if c not in frame.columns:
                frame[c] = np.nan if c.startswith(NUM_PREFIX) else pd.Series([None] * len(frame), dtype=object)
        frames.append(frame[columns])
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for c in columns:
        if c.startswith(NUM_PREFIX) and out[c].dtype != np.float64:
            out[c] = out[c].astype("float64")
    if sort:
        out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    return out


class _BucketWriter:
    """Buffers each bucket's rows and writes them as numbered Parquet parts."""

    def __init__(self, root: Path, buckets: int, flush_rows: int) -> None:
        self.root = root
        self.buckets = buckets
        self.flush_rows = flush_rows
        self.buffers: dict[int, list[pd.DataFrame]] = {}
        self.buffered: dict[int, int] = {}
        self.written: dict[int, int] = {}
        self.files: dict[int, int] = {}

    def add(self, bucket: int, frame: pd.DataFrame) -> None:
        self.buffers.setdefault(bucket, []).append(frame)
        self.buffered[bucket] = self.buffered.get(bucket, 0) + len(frame)
        while sum(self.buffered.values()) > self.flush_rows:
            self.flush(max(self.buffered, key=lambda b: self.buffered[b]))

    def flush(self, bucket: int) -> None:
        frames = self.buffers.pop(bucket, [])
        n = self.buffered.pop(bucket, 0)
        if not n:
            return
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        folder = self.root / part_name(bucket)
        folder.mkdir(parents=True, exist_ok=True)
        index = self.files.get(bucket, 0)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / f"part-{index:05d}.parquet")
        self.files[bucket] = index + 1
        self.written[bucket] = self.written.get(bucket, 0) + n

    def close(self) -> None:
        for bucket in list(self.buffers):
            self.flush(bucket)


def part_name(bucket: int) -> str:
    """Folder name of a bucket."""
    return f"bucket={bucket:04d}"


def write_partitioned(
    batches: Iterable[pd.DataFrame],
    root: str | Path,
    name: str,
    *,
    buckets: int = DEFAULT_BUCKETS,
    sources: list[str] | None = None,
    replace: bool = True,
    flush_rows: int = DEFAULT_FLUSH_ROWS,
) -> PartitionedDataset:
    """Write event batches as a dataset partitioned by entity.

    Parameters
    ----------
    batches:
        Event frames (the columnar event model), e.g. a reader's ``batches``.
    root:
        Folder to write; replaced when ``replace`` (it must then be empty or a partitioned dataset).
    name:
        Dataset name.
    buckets:
        Number of entity hash buckets (partitions); a few per worker core is a good start.
    sources:
        Input file names to record.
    replace:
        Replace an existing dataset in ``root``; when False, rows are added to it (same bucket count).
    flush_rows:
        Rows buffered in memory (all buckets together) before the largest bucket is written.

    Returns
    -------
    PartitionedDataset
        The written dataset.

    Examples
    --------
    >>> import tempfile
    >>> from misuse.events import Event, events_to_frame
    >>> ev = events_to_frame([Event(ts=float(t), entity=f"dev{t % 3}", kind="flow", action="tcp")
    ...                       for t in range(30)])
    >>> ds = write_partitioned([ev], tempfile.mkdtemp(), "demo", buckets=4)
    >>> ds.rows, len(ds.read_all())
    (30, 30)
    """
    if buckets < 1:
        raise InvalidParameterError(f"The 'buckets' parameter must be >= 1. Got {buckets!r} instead.")
    if flush_rows < 1:
        raise InvalidParameterError(f"The 'flush_rows' parameter must be >= 1. Got {flush_rows!r} instead.")
    root = Path(root)
    previous: PartitionedDataset | None = None
    if root.exists() and any(root.iterdir()):
        if not (root / META_FILE).is_file():
            raise SchemaError(f"{root}: folder is not empty and not a partitioned event dataset; refusing to write")
        previous = PartitionedDataset.open(root)
        if replace:
            shutil.rmtree(root)
            previous = None
        elif previous.buckets != buckets:
            raise InvalidParameterError(
                f"{root}: dataset has {previous.buckets} buckets; cannot append with buckets={buckets}"
            )
    root.mkdir(parents=True, exist_ok=True)
    writer = _BucketWriter(root, buckets, flush_rows)
    seen: list[str] = list(previous.columns) if previous else []
    if previous:
        for part in previous.parts:
            bucket = int(part.split("=", 1)[1])
            writer.files[bucket] = len(list((root / part).glob("part-*.parquet")))
    for frame in batches:
        if len(frame) == 0:
            continue
        for required in ("ts", "entity"):
            if required not in frame.columns:
                raise SchemaError(f"event batch has no '{required}' column (columns: {list(frame.columns)})")
        seen += [c for c in frame.columns if c not in seen]
        ids = entity_buckets(frame["entity"], buckets)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        cuts = np.flatnonzero(np.diff(sorted_ids)) + 1
        for chunk in np.split(order, cuts):
            writer.add(int(ids[chunk[0]]), frame.iloc[chunk].reset_index(drop=True))
    writer.close()
    parts = dict(previous.parts) if previous else {}
    for bucket, n in writer.written.items():
        parts[part_name(bucket)] = parts.get(part_name(bucket), 0) + n
    ds = PartitionedDataset(
        root=root,
        name=name,
        buckets=buckets,
        columns=canonical_columns(seen),
        parts=dict(sorted(parts.items())),
        sources=(list(previous.sources) if previous else []) + list(sources or []),
    )
    ds.save_meta()
    return ds
