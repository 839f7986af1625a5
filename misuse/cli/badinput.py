"""What every command that reads input files says about the input it could not use.

One wording for all of them, ``misuse ingest``'s: a file that is not data is *skipped* and named;
a bad record is *set aside* in a dead-letter file, counted, and the first one named with its file,
line and reason. Commands that read files without a dataset (``integrity``/``exfil check``,
``devices``, ``access``, ``federate site``) keep their bad records in
``<project>/deadletter/<command>.jsonl``, which each run of the command replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape

from misuse.cli.common import console, err_console
from misuse.errors import InvalidParameterError
from misuse.ingest.base import DeadLetter
from misuse.ingest.formats import reader_for

SKIPPED_SHOWN = 10  # files that are not data named one per line; the rest counted


def dead_letters(project: Path, command: str) -> DeadLetter:
    """Where one run of ``command`` sets bad records aside: ``<project>/deadletter/<command>.jsonl``.

    The file of the previous run of the same command is removed first; it is only written again
    when a record is bad, as ``misuse ingest`` does.
    """
    path = project / "deadletter" / f"{command}.jsonl"
    if path.exists():
        path.unlink()
    return DeadLetter(path=path)


def read_events(paths: Sequence[Path], fmt: str | None, mapping: str | None, dead: DeadLetter) -> pd.DataFrame:
    """Read files of any supported format into one events frame; bad records go to ``dead``."""
    if not paths:
        raise InvalidParameterError("no input files given")
    return pd.concat([reader_for(p, fmt, mapping=mapping)[1].read(p, dead=dead) for p in paths], ignore_index=True)


def dead_letter_report(dead: DeadLetter) -> dict[str, object]:
    """The bad-record fields of a command's ``--json`` output (the names ``misuse ingest --json`` uses)."""
    return {
        "bad_records": dead.count,
        "dead_letter_file": str(dead.path) if dead.count else None,
        "first_bad": dead.first(),
    }


def print_bad_records(
    count: int, where: str | Path | None, first: object, *, stderr: bool = False, hint: str = ""
) -> None:
    """One line when records were set aside: how many, where, and the first one's file, line and reason.

    ``where`` None means the records were only counted (``hint`` says how to keep them). With
    ``stderr`` the line goes to standard error, so a ``--json`` document on stdout stays clean.
    """
    if not count:
        return
    what = f"set aside in {where}" if where else "skipped"
    line = f"{count:,} bad record(s) {escape(what)}{escape(hint)}; first: {escape(str(first))}"
    out = err_console if stderr else console
    out.print(line if stderr else f"[yellow]{line}[/]", highlight=False, soft_wrap=True)


def print_dead_letters(dead: DeadLetter, *, stderr: bool = False) -> None:
    """:func:`print_bad_records` for a :class:`DeadLetter` that was read into."""
    print_bad_records(dead.count, dead.path, dead.first(), stderr=stderr)


def print_skipped(skipped: Sequence[dict[str, Any]]) -> None:
    """Name the files that are not data (up to :data:`SKIPPED_SHOWN`), then count the rest."""
    for s in skipped[:SKIPPED_SHOWN]:
        console.print(f"skipped {s['file']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)
    more = len(skipped) - SKIPPED_SHOWN
    if more > 0:
        console.print(f"skipped {more} more file(s) that are not data (--json lists them)", highlight=False)
