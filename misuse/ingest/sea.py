"""SEA (Schonlau et al.) masquerade data: one truncated Unix command name per line, per user.

SEA has **no timestamps**. Events get a synthetic time, ``base + line index`` seconds, that only
keeps their order; do not read durations or rates into it. Each event has ``entity`` = the user
(the file name, e.g. ``User7``), ``kind="command"``, ``action`` = the command, ``num.seq`` = the
0-based line index and ``cat.block`` = ``index // 100`` (commands 5,000 onward form the 100 test
blocks of 100 commands scored in the standard protocol).

:func:`load_sea_truth` reads ``masquerade_summary.txt`` (100 rows = test blocks, 50 columns =
users, 1 = masquerade). Given that matrix, :class:`SeaReader` also labels each command:
"benign" for the clean first 5,000 and the clean blocks, "masquerade" in the injected blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, ParseError
from misuse.events import BENIGN, normalize_frame, ts_ok
from misuse.ingest.base import DEFAULT_BATCH, DeadLetter, Reader, open_text, read_guard

SEA_TRAIN = 5_000
SEA_BLOCK = 100
SEA_SHAPE = (100, 50)
MASQUERADE = "masquerade"
_COMMAND = re.compile(r"^[^\s\ufffd]{1,64}$")
_USER = re.compile(r"User(\d+)$")
_PROBE_LINES = 20


def load_sea_truth(path: str | Path) -> np.ndarray:
    """Read ``masquerade_summary.txt`` into a 0/1 array of shape (100 blocks, 50 users).

    Raises
    ------
    ParseError
        When a row does not hold 50 values of 0 or 1, or there are not 100 rows.
    """
    rows: list[list[int]] = []
    with read_guard(path), open_text(path) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            values = line.split()
            if len(values) != SEA_SHAPE[1] or any(v not in ("0", "1") for v in values):
                raise ParseError(
                    f"expected {SEA_SHAPE[1]} values of 0 or 1, got {len(values)}: {line.strip()[:40]!r}",
                    source=str(path),
                    line=n,
                )
            rows.append([int(v) for v in values])
    if len(rows) != SEA_SHAPE[0]:
        raise ParseError(f"expected {SEA_SHAPE[0]} rows, got {len(rows)}", source=str(path))
    return np.asarray(rows, dtype=np.int8)


class SeaReader(Reader):
    """Read one SEA user file into ``command`` events with a synthetic, order-only time.

    Parameters
    ----------
    user:
        Entity name; None takes the file name.
    base:
        Epoch seconds of the first command's synthetic time stamp.
    truth:
        The (100, 50) matrix of :func:`load_sea_truth`; when given (and the file is named
        ``UserN``), events are labelled "benign" or "masquerade".

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "User3"
    >>> _ = p.write_text("ls\\ncat\\nvi\\n")
    >>> f = SeaReader().read(p)
    >>> f[["entity", "action", "num.seq", "cat.block"]].values.tolist()
    [['User3', 'ls', 0.0, '0'], ['User3', 'cat', 1.0, '0'], ['User3', 'vi', 2.0, '0']]
    """

    name = "sea"

    def __init__(self, user: str | None = None, base: float = 0.0, truth: np.ndarray | None = None) -> None:
        if truth is not None and np.shape(truth) != SEA_SHAPE:
            raise InvalidParameterError(
                f"The 'truth' parameter of SeaReader must have shape {SEA_SHAPE}. Got {np.shape(truth)}."
            )
        if not ts_ok(base) or not ts_ok(base + 1e9):
            raise InvalidParameterError(
                f"The 'base' parameter of SeaReader must be epoch seconds in range. Got {base}."
            )
        self.user = user
        self.base = base
        self.truth = truth

    def batches(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        dead: DeadLetter | None = None,
    ) -> Iterator[pd.DataFrame]:
        dead = dead if dead is not None else DeadLetter()
        p = Path(path)
        user = self.user or p.name
        column = self._truth_column(p)
        commands: list[str] = []
        index: list[int] = []
        good = 0
        first_bad = ""
        with read_guard(p), open_text(p) as fh:
            for n, raw in enumerate(fh, start=1):
                text = raw.strip()
                if not _COMMAND.match(text):
                    if not good:
                        first_bad = first_bad or text[:60]
                        if n >= _PROBE_LINES:
                            raise ParseError(f"not a SEA command file: first line is {first_bad!r}", source=str(p))
                    dead.add(str(p), n, "expected one command name per line", raw.rstrip("\r\n"))
                    continue
                good += 1
                commands.append(text)
                index.append(n - 1)
                if len(commands) >= batch_size:
                    yield self._frame(commands, index, user, p.name, column)
                    commands, index = [], []
        if commands:
            yield self._frame(commands, index, user, p.name, column)
        if not good:
            raise ParseError(f"not a SEA command file: no command line (first: {first_bad!r})", source=str(p))

    def _truth_column(self, p: Path) -> np.ndarray | None:
        if self.truth is None:
            return None
        m = _USER.search(p.name)
        if m is None or not 1 <= int(m.group(1)) <= SEA_SHAPE[1]:
            return None
        return np.asarray(self.truth)[:, int(m.group(1)) - 1]

    def _frame(
        self, commands: list[str], index: list[int], user: str, name: str, column: np.ndarray | None
    ) -> pd.DataFrame:
        idx = np.asarray(index, dtype=np.int64)
        lines = pd.Series(idx + 1).astype(str)
        frame = pd.DataFrame(
            {
                "event_id": (user + ":" + lines).to_numpy(),
                "ts": self.base + idx.astype("float64"),
                "entity": user,
                "peer": "",
                "kind": "command",
                "action": commands,
                "source": (name + ":" + lines).to_numpy(),
                "num.seq": idx.astype("float64"),
                "cat.block": (idx // SEA_BLOCK).astype(str).astype(object),
            }
        )
        frame["label"] = None
        if column is not None:
            block = (idx - SEA_TRAIN) // SEA_BLOCK
            inside = (idx >= SEA_TRAIN) & (block < len(column))
            hit = np.zeros(len(idx), dtype=bool)
            hit[inside] = column[block[inside]] == 1
            frame["label"] = np.where(hit, MASQUERADE, BENIGN).astype(object)
        return normalize_frame(frame)
