"""Glue between the stages for the CLI and the service: ingest files into a store, train and detect
on stored datasets, the demo runs. Everything takes explicit arguments."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, NotFittedError, ParseError
from misuse.events import ts_ok
from misuse.ingest.base import DeadLetter, Reader
from misuse.pipeline import WindowModel, detect, train
from misuse.store.duck import Store

Tick = Callable[[int], None]
#: writes batches of events from the named sources somewhere; returns the rows written
EventSink = Callable[[Iterator[pd.DataFrame], list[str]], int]
#: files a folder ingest passes over without looking inside: documentation, images, tool reports
NOT_DATA_SUFFIXES = frozenset(
    {".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".capinfos"}
)
NOT_DATA_NAMES = frozenset({"readme", "license", "licence", "provenance", "changelog", "notice", "authors"})


@dataclass
class IngestResult:
    """What one ingest run did."""

    dataset: str
    rows: int = 0
    bad_records: int = 0
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    dead_letter_file: str | None = None
    first_bad: str | None = None
    #: files found in a named folder and not read, each ``{"file": ..., "reason": ...}``
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def expand_paths(paths: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """Files named directly, plus the files inside named folders (recursively, sorted), each with
    True when it was found in a folder rather than named."""
    out: list[tuple[Path, bool]] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [(f, True) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith(".")]
        else:
            out.append((p, False))
    return out


def not_data(path: Path) -> str | None:
    """Why a file found in a folder is no data file, judged by its name (None: it may be one).

    >>> not_data(Path("iot23/README.md")), not_data(Path("bro/conn.log"))
    ('a .md file, not data', None)
    """
    suffix = path.suffix.lower()
    if suffix in NOT_DATA_SUFFIXES:
        return f"a {suffix} file, not data"
    if path.name.lower().split(".", 1)[0] in NOT_DATA_NAMES:
        return "documentation, not data"
    return None


def plan_readers(
    paths: Sequence[str | Path], fmt: str | None = None, options: dict[str, Any] | None = None
) -> tuple[list[tuple[Path, str, Reader]], list[dict[str, str]]]:
    """The files to read with their format and reader, and the files of folders that are skipped.

    A file named directly must be readable: any problem raises. Inside a named folder, a file
    that is documentation by its name (README, ``*.md``, ``*.capinfos``...) or whose format cannot
    be told (nor read: empty, corrupt) is skipped with the reason; a recognised file that cannot
    be read as asked (a CSV without a mapping) still raises.

    Raises
    ------
    ParseError
        Naming the file and the problem, or the inputs when no file is left to read.
    """
    from misuse.ingest.formats import reader_for, sniff_format

    found = expand_paths(paths)
    plan: list[tuple[Path, str, Reader]] = []
    skipped: list[dict[str, str]] = []
    for f, in_folder in found:
        kind = fmt
        if in_folder:
            why = not_data(f)
            if why is None and kind is None:
                try:
                    kind = sniff_format(f)
                except ParseError as exc:
                    why = exc.reason
            if why is not None:
                skipped.append({"file": str(f), "reason": why})
                continue
        kind, reader = reader_for(f, kind, **(options or {}))
        plan.append((f, kind, reader))
    if not plan:
        where = ", ".join(map(str, paths)) or "(none)"
        if skipped:
            raise ParseError(
                f"no data file to read: skipped {len(skipped)} (first: {skipped[0]['file']}: {skipped[0]['reason']})",
                source=where,
            )
        raise ParseError("no input files", source=where)
    return plan, skipped


def ingest_files(
    store: Store,
    paths: Sequence[str | Path],
    dataset: str,
    *,
    fmt: str | None = None,
    options: dict[str, Any] | None = None,
    append: bool = False,
    tick: Tick | None = None,
    write: EventSink | None = None,
) -> IngestResult:
    """Read files with the right readers and write their events into ``store`` as ``dataset``.

    Bad records are set aside in ``<project>/deadletter/<dataset>.jsonl`` and in the store's
    ``dead_letters`` table. A file that is wrong as a whole raises :class:`ParseError`; files of a
    named folder that are not data are skipped and listed in ``skipped`` (see :func:`plan_readers`).
    ``write(batches, sources)`` replaces the store as the destination of the events (it returns
    how many rows it wrote); the scale-out path passes a partitioned Parquet writer.
    """
    plan, skipped = plan_readers(paths, fmt, options)
    dl_path = store.root / "deadletter" / f"{dataset}.jsonl"
    if not append and dl_path.exists():
        dl_path.unlink()
    dead = DeadLetter(path=dl_path)
    result = IngestResult(dataset=dataset, dead_letter_file=str(dl_path), skipped=skipped)
    result.formats = {str(f): kind for f, kind, _ in plan}

    def batches() -> Iterator[pd.DataFrame]:
        for f, _, reader in plan:
            result.files.append(str(f))
            for frame in reader.batches(f, dead=dead):
                if tick is not None:
                    tick(len(frame))
                yield frame

    sources = [str(f) for f, _, _ in plan]
    if write is None:
        result.rows = store.write_events(dataset, batches(), sources, replace=not append)
    else:
        result.rows = write(batches(), sources)
    result.bad_records = dead.count
    result.first_bad = dead.first()
    store.add_dead_letters(dataset, dead.samples, dead.count)
    return result


def parse_time(value: str, name: str) -> pd.Timestamp:
    """A UTC time from an ISO-8601 text such as ``2024-05-01`` or ``2024-05-01T12:00:00+02:00``
    (a time without zone is UTC).

    Raises
    ------
    InvalidParameterError
        Naming the parameter and the value, when it is no time the event model can hold.

    Examples
    --------
    >>> parse_time("2024-05-01T12:00:00+02:00", "until")
    Timestamp('2024-05-01 10:00:00+0000', tz='UTC')
    """
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp) or not ts_ok(stamp.timestamp()):
        raise InvalidParameterError(
            f"The '{name}' parameter must be a date or time such as 2024-05-01 or 2024-05-01T12:00:00Z. "
            f"Got {value!r} instead."
        )
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def train_on_store(
    store: Store,
    dataset: str,
    model_name: str,
    *,
    window: float = 60.0,
    target_fpr: float = 0.01,
    detector: str = "iforest",
    seed: int = 0,
    benign_only: bool = False,
    until: str | None = None,
    tick: Tick | None = None,
) -> WindowModel:
    """Train a window model on a stored dataset (optionally only events before ``until``) and register it.

    ``tick(1)`` is called after each stored part is read, once the model is trained and once it
    is saved: :func:`train_steps` times in all.

    Raises
    ------
    InvalidParameterError
        When ``until`` is not a date or time (see :func:`parse_time`).
    """
    step = tick if tick is not None else (lambda n: None)
    limit = None if until is None else parse_time(until, "until")
    events = store.events(dataset, tick=tick)
    if limit is not None:
        events = events[events["ts"] < limit]
    model = train(events, window=window, target_fpr=target_fpr, detector=detector, seed=seed, benign_only=benign_only)
    step(1)
    model.info["dataset"] = dataset
    model.save(store.model_dir(model_name))
    store.register_model(model_name, "window", model.info)
    step(1)
    return model


def train_steps(store: Store, dataset: str) -> int:
    """How many ticks :func:`train_on_store` gives for ``dataset``: one per stored part, two more."""
    return len(store.event_parts(dataset)) + 2


def detect_on_store(
    store: Store,
    dataset: str,
    model_name: str | None = None,
    *,
    since: str | None = None,
    tick: Tick | None = None,
) -> tuple[list[Alert], pd.DataFrame]:
    """Run a stored model over a stored dataset, store the alerts, return them with the scored windows.

    Raises
    ------
    InvalidParameterError
        When ``since`` is not a date or time (see :func:`parse_time`).
    NotFittedError
        When no model is named and none has been trained.
    """
    start = None if since is None else parse_time(since, "since")
    name = window_model_name(store, model_name)
    model = WindowModel.load(store.model_dir(name))
    events = store.events(dataset)
    if start is not None:
        events = events[events["ts"] >= start]
    alerts, scored = detect(model, events, detector_name=f"window-{model.info.get('detector', 'model')}", progress=tick)
    store.clear_alerts(dataset, name)
    store.add_alerts(alerts, dataset=dataset, model=name)
    return alerts, scored


def window_model_name(store: Store, model_name: str | None = None) -> str:
    """The window model to detect with: ``model_name``, else the store's active one.

    Raises
    ------
    NotFittedError
        When no model is named and none has been trained.
    """
    name = model_name or store.active_model("window")
    if name is None:
        raise NotFittedError(f"{store.root}: no trained model; run `misuse train` first")
    return name
