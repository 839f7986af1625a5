"""Which format a file is in, and the reader for a format.

:func:`sniff_format` looks at the magic bytes and the first lines (through gzip/xz/bzip2);
:func:`get_reader` returns a reader for a format name.

====================  ====================================================================
format                recognised by
====================  ====================================================================
``pcap``              libpcap magic (either byte order, µs or ns)
``pcapng``            section header block ``0a 0d 0d 0a``
``zeek``              ``#separator`` / ``#fields`` header lines
``zeek-json``         JSON object with ``ts`` and ``uid`` or ``id.orig_h``
``cowrie``            JSON object whose ``eventid`` starts with ``cowrie.``
``events-jsonl``      JSON object with ``ts`` and ``entity`` (events already in the event model)
``jsonl``             any other JSON object per line
``authlog``           syslog lines (``Mon dd hh:mm:ss host prog[pid]:``)
``sea``               one bare command name per line, no separators (SEA masquerade data):
                      at least 20 such lines, with commands repeating
``csv``               a delimited header line
====================  ====================================================================

A short file of single words (``hello``, ``garbage``) is not taken for SEA data; read such a file
with an explicit ``sea`` format. :func:`reader_for` picks the reader for one file and says, naming
the file, when a ``csv`` or ``jsonl`` file comes without the column mapping it needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from misuse.errors import InvalidParameterError, ParseError
from misuse.ingest.base import Reader, open_binary, read_guard

FORMATS: tuple[str, ...] = (
    "pcap",
    "pcapng",
    "zeek",
    "zeek-json",
    "cowrie",
    "authlog",
    "sea",
    "csv",
    "jsonl",
    "events-jsonl",
)

_PCAP_MAGIC = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_SYSLOG = re.compile(r"^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \S+ [^:\s]+(\[\d+\])?:")
_COMMAND = re.compile(r"^[\w.+\-\[\]=%]{1,64}$")  # SEA commands include `[`, `==`, `%backup%`
#: SEA sniffing: this many command lines at least, and at most this share of them distinct
#: (the 50 SEA users have 3 to 27 distinct commands in their first 50)
SEA_MIN_LINES = 20
SEA_MAX_DISTINCT = 0.75
#: formats read through a column mapping (:class:`~misuse.ingest.tabular.TabularReader`)
NEEDS_MAPPING = ("csv", "jsonl")


def _head(path: str | Path, size: int = 65_536) -> bytes:
    with read_guard(path), open_binary(path) as fh:
        data: bytes = fh.read(size)
    return data


def sniff_format(path: str | Path) -> str:
    """Name the format of a file: one of :data:`FORMATS`.

    Raises
    ------
    ParseError
        When the file is missing or empty, or matches no known format; the message says what was seen.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "auth.log"
    >>> _ = p.write_text("Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user admin from 1.2.3.4\\n")
    >>> sniff_format(p)
    'authlog'
    """
    head = _head(path)
    if head[:4] in _PCAP_MAGIC:
        return "pcap"
    if head[:4] == _PCAPNG_MAGIC:
        return "pcapng"
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if len(head) == 65_536 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    if not lines:
        raise ParseError("cannot tell the format: no text lines in the first 64 KiB", source=str(path))
    first = lines[0].strip()
    if first.startswith(("#separator", "#fields", "#path")):
        return "zeek"
    if first.startswith(("{", "[")):
        return _sniff_json(path, first)
    if sum(bool(_SYSLOG.match(ln)) for ln in lines) >= max(1, len(lines) // 2):
        return "authlog"
    if all(_COMMAND.match(ln.strip()) for ln in lines):
        if _looks_like_sea([ln.strip() for ln in lines]):
            return "sea"
        raise ParseError(
            f"cannot tell the format: {len(lines)} line(s) of single words such as {first[:40]!r} "
            "(for SEA command data give the format sea explicitly)",
            source=str(path),
        )
    if any(sep in first for sep in (",", ";", "\t", "|")):
        return "csv"
    raise ParseError(f"cannot tell the format: first line is {first[:60]!r}", source=str(path))


def _looks_like_sea(commands: list[str]) -> bool:
    """Enough command lines, and commands that repeat (a word list or a one-liner is not SEA)."""
    return len(commands) >= SEA_MIN_LINES and len(set(commands)) <= SEA_MAX_DISTINCT * len(commands)


def _sniff_json(path: str | Path, first: str) -> str:
    try:
        obj = json.loads(first)
    except ValueError:
        raise ParseError(
            f"cannot tell the format: first line looks like JSON but is not: {first[:60]!r}", source=str(path)
        ) from None
    if not isinstance(obj, dict):
        raise ParseError(
            f"cannot tell the format: first line is JSON but not an object: {first[:60]!r}", source=str(path)
        )
    if str(obj.get("eventid", "")).startswith("cowrie."):
        return "cowrie"
    if "ts" in obj and ("uid" in obj or "id.orig_h" in obj or "fuid" in obj):
        return "zeek-json"
    if "ts" in obj and "entity" in obj:
        return "events-jsonl"
    return "jsonl"


def get_reader(fmt: str, **options: Any) -> Reader:
    """Return a reader for a format name (see :data:`FORMATS`), built with ``options``.

    ``csv`` and ``jsonl`` need a ``mapping`` option (a mapping name, a YAML path or a dict) for
    :class:`~misuse.ingest.tabular.TabularReader`.

    Raises
    ------
    ParseError
        For an unknown format name.
    InvalidParameterError
        For ``csv`` or ``jsonl`` without a ``mapping`` option.

    Examples
    --------
    >>> type(get_reader("zeek")).__name__
    'ZeekReader'
    """
    from misuse.ingest.authlog import AuthLogReader
    from misuse.ingest.cowrie import CowrieReader
    from misuse.ingest.native import EventJsonReader
    from misuse.ingest.sea import SeaReader
    from misuse.ingest.tabular import TabularReader
    from misuse.ingest.zeek import ZeekReader

    if fmt in ("pcap", "pcapng"):
        from misuse.ingest.pcap import PcapReader

        return PcapReader(**options)
    readers: dict[str, Any] = {
        "zeek": ZeekReader,
        "zeek-json": ZeekReader,
        "cowrie": CowrieReader,
        "authlog": AuthLogReader,
        "sea": SeaReader,
        "csv": TabularReader,
        "jsonl": TabularReader,
        "events-jsonl": EventJsonReader,
    }
    if fmt not in readers:
        raise ParseError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if fmt in NEEDS_MAPPING and options.get("mapping") is None:
        raise InvalidParameterError(f"format {fmt!r} {_mapping_hint()}")
    reader: Reader = readers[fmt](**options)
    return reader


def reader_for(path: str | Path, fmt: str | None = None, **options: Any) -> tuple[str, Reader]:
    """The format of one file (``fmt``, else sniffed) and a reader for it.

    A ``mapping`` option goes to the ``csv`` and ``jsonl`` readers only, so one set of options
    serves a folder of mixed files.

    Raises
    ------
    ParseError
        Naming the file: its format cannot be told, or it is ``csv``/``jsonl`` and no ``mapping``
        option was given (the message lists the built-in mappings).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = p.write_text("a,b\\n1,2\\n")
    >>> reader_for(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    misuse.errors.ParseError: .../x.csv: a csv file needs a column mapping: --mapping FILE ...
    """
    kind = fmt or sniff_format(path)
    if kind not in NEEDS_MAPPING:
        options = {k: v for k, v in options.items() if k != "mapping"}
    elif options.get("mapping") is None:
        raise ParseError(f"a {kind} file {_mapping_hint()}", source=str(path))
    return kind, get_reader(kind, **options)


def _mapping_hint() -> str:
    from misuse.ingest.tabular import builtin_mappings

    return (
        "needs a column mapping: --mapping FILE (a YAML file) or --mapping NAME of a built-in one "
        f"({', '.join(builtin_mappings())}, in misuse/ingest/mappings/)"
    )
