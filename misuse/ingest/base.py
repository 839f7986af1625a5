"""What every reader shares: opening (compressed) files, batching, the dead-letter file.

A reader turns one file into events. It streams: it never holds more than one batch
(``batch_size`` events) plus its own small state in memory, so a 1 GB input needs far less than
1 GB of RAM. A bad record is counted, reported with file and line, written to the dead-letter
file and skipped; it never aborts the run. A file that is wrong as a whole (empty, not of the
format asked for) raises :class:`~misuse.errors.ParseError` naming the file and the problem.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from misuse.errors import ParseError
from misuse.events import Event, events_to_frame, frame_to_events

DEFAULT_BATCH = 65_536
#: Errors a (compressed) file can raise while it is read; readers turn them into ParseError.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError, zlib.error)
_MAGIC = {
    b"\x1f\x8b": gzip.open,
    b"\xfd7zXZ\x00": lzma.open,
    b"BZh": bz2.open,
}


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for binary reading, decompressing gzip, xz or bzip2 by their magic bytes.

    Raises
    ------
    ParseError
        If the file does not exist, is a directory or is empty.
    """
    p = Path(path)
    if not p.exists():
        raise ParseError("no such file", source=str(p))
    if p.is_dir():
        raise ParseError("is a directory, expected a file", source=str(p))
    if p.stat().st_size == 0:
        raise ParseError("file is empty", source=str(p))
    with open(p, "rb") as fh:
        head = fh.read(6)
    for magic, opener in _MAGIC.items():
        if head.startswith(magic):
            inner = opener(p, "rb")  # type: ignore[operator]
            return io.BufferedReader(_Decompressed(inner, str(p)), buffer_size=1 << 20)
    return open(p, "rb")


class _Decompressed(io.RawIOBase):
    """A decompressing stream whose corruption errors surface as ParseError naming the file."""

    def __init__(self, inner: IO[bytes], source: str) -> None:
        self._inner = inner
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            # read1 returns what is decompressed so far and raises only at the cut, so the good
            # data before a truncation is kept
            read1 = getattr(self._inner, "read1", self._inner.read)
            data = read1(len(buffer))
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
            raise ParseError(
                f"compressed data is corrupt or truncated after {self._pos} bytes ({exc})",
                source=self._source,
            ) from None
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


@contextmanager
def read_guard(path: str | Path) -> Iterator[None]:
    """Turn errors from reading a corrupt or truncated (compressed) file into a ParseError."""
    try:
        yield
    except ParseError:
        raise
    except READ_ERRORS as exc:
        raise ParseError(f"cannot read file ({type(exc).__name__}: {exc})", source=str(path)) from None


def open_text(path: str | Path) -> IO[str]:
    """Open a (possibly compressed) text file as UTF-8, replacing undecodable bytes.

    A UTF-8 byte-order mark is removed.
    """
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", errors="replace", newline="")


@dataclass
class DeadLetter:
    """Where bad records go: counted, kept in memory up to a cap, and appended to a JSONL file.

    Parameters
    ----------
    path:
        JSONL file to append to; None keeps them only in memory.
    keep:
        How many to keep in memory for reporting.
    """

    path: Path | None = None
    keep: int = 100
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, line: int | None, reason: str, raw: str | bytes = "") -> None:
        """Set one bad record aside."""
        self.count += 1
        if isinstance(raw, bytes):
            raw = raw[:2000].hex()
        rec = {"source": source, "line": line, "reason": reason, "raw": str(raw)[:2000]}
        if len(self.samples) < self.keep:
            self.samples.append(rec)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")

    def first(self) -> str | None:
        """The first bad record as a one-line message, or None."""
        if not self.samples:
            return None
        s = self.samples[0]
        where = f"{s['source']} line {s['line']}" if s["line"] is not None else s["source"]
        return f"{where}: {s['reason']}"


class Reader(ABC):
    """Base class of the readers: a reader turns one file into frames of events.

    Subclasses implement :meth:`batches`, or derive from :class:`RecordReader` and implement
    ``records`` instead.
    """

    name: str = "reader"

    @abstractmethod
    def batches(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        dead: DeadLetter | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield the file's events as frames of at most ``batch_size`` rows."""

    def events(self, path: str | Path, *, dead: DeadLetter | None = None) -> Iterator[Event]:
        """Yield the file's events one at a time (the streaming form)."""
        for frame in self.batches(path, dead=dead):
            yield from frame_to_events(frame)

    def read(self, path: str | Path, *, dead: DeadLetter | None = None) -> pd.DataFrame:
        """Read a whole (small) file into one frame. Use :meth:`batches` for big files."""
        frames = list(self.batches(path, dead=dead))
        if not frames:
            return events_to_frame([])
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class RecordReader(Reader):
    """A reader that yields flattened records (dicts of the columnar form's columns) one by one;
    this base class groups them into frames of ``batch_size`` rows."""

    @abstractmethod
    def records(self, path: Path, dead: DeadLetter) -> Iterator[dict[str, object]]:
        """Yield flattened event records from ``path``; report bad records to ``dead``."""

    def batches(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        dead: DeadLetter | None = None,
    ) -> Iterator[pd.DataFrame]:
        dead = dead if dead is not None else DeadLetter()
        buf: list[dict[str, object]] = []
        for rec in self.records(Path(path), dead):
            buf.append(rec)
            if len(buf) >= batch_size:
                yield events_to_frame(buf)
                buf = []
        if buf:
            yield events_to_frame(buf)
