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
``sea``               one bare command name per line, no separators (SEA masquerade data)
``csv``               a delimited header line
====================  ====================================================================
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from misuse.errors import ParseError
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
_COMMAND = re.compile(r"^[\w.+\-]{1,64}$")


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
        raise ParseError("no text lines in the first 64 KiB", source=str(path))
    first = lines[0].strip()
    if first.startswith(("#separator", "#fields", "#path")):
        return "zeek"
    if first.startswith(("{", "[")):
        return _sniff_json(path, first)
    if sum(bool(_SYSLOG.match(ln)) for ln in lines) >= max(1, len(lines) // 2):
        return "authlog"
    if all(_COMMAND.match(ln.strip()) for ln in lines) and not any("," in ln for ln in lines):
        return "sea"
    if any(sep in first for sep in (",", ";", "\t", "|")):
        return "csv"
    raise ParseError(f"unknown format: first line is {first[:60]!r}", source=str(path))


def _sniff_json(path: str | Path, first: str) -> str:
    try:
        obj = json.loads(first)
    except ValueError:
        raise ParseError(
            f"unknown format: first line looks like JSON but is not: {first[:60]!r}", source=str(path)
        ) from None
    if not isinstance(obj, dict):
        raise ParseError(f"unknown format: first line is JSON but not an object: {first[:60]!r}", source=str(path))
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
    reader: Reader = readers[fmt](**options)
    return reader
