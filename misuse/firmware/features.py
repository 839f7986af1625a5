"""Byte-level features of an image: per-window statistics and printable strings with their offsets."""

from __future__ import annotations

import ipaddress
import re

import numpy as np

WINDOW_FEATURES: tuple[str, ...] = ("entropy", "printable", "zeros", "top_byte")
_STRING = re.compile(rb"[\x20-\x7e]{6,}")
HOST = re.compile(
    r"(?:https?|ftp|tftp|telnet)://[^\s\"'<>]+"
    r"|(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\.?\w)"
    r"|\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:com|net|org|io|ru|cn|info|biz|xyz|top|cc|tk|su|pw|example)\b"
    r"(?::\d{1,5})?",
    re.IGNORECASE,
)
RISKY = re.compile(
    r"\btelnetd\b|/dev/tcp/|\bnc\s+-[el]|/bin/sh\s+-i|\btftp\b|\bwget\s+http|\bcurl\s+http|\bchmod\s+777"
    r"|\biptables\s+-F|\bdropbear\b|\bkillall\b|/etc/shadow"
    r"|\bbusybox\s+(?:wget|tftp|ftpget|nc|telnetd|sh\b|chmod|rm\s+-rf)",
    re.IGNORECASE,
)


def window_features(data: bytes, window: int = 4096, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Per-window byte statistics of ``data[start:stop]`` (the last partial window is dropped).

    Returns
    -------
    numpy.ndarray
        Shape (n_windows, 4): Shannon entropy in bits per byte / 8, share of printable ASCII,
        share of zero bytes, share of the most frequent byte. Window ``i`` starts at
        ``start + i * window``.

    Examples
    --------
    >>> f = window_features(bytes(4096) + bytes(range(256)) * 16)
    >>> f.round(2).tolist()
    [[0.0, 0.0, 1.0, 1.0], [1.0, 0.37, 0.0, 0.0]]
    """
    end = len(data) if stop is None else min(stop, len(data))
    n = max(0, (end - start) // window)
    if n == 0:
        return np.zeros((0, len(WINDOW_FEATURES)))
    arr = np.frombuffer(data, dtype=np.uint8, count=n * window, offset=start).reshape(n, window)
    counts = np.zeros((n, 256), dtype=np.int64)
    rows = np.repeat(np.arange(n), window)
    np.add.at(counts, (rows, arr.ravel()), 1)
    p = counts / window
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1) / 8.0
    printable = p[:, 0x20:0x7F].sum(axis=1)
    return np.column_stack([ent, printable, p[:, 0], p.max(axis=1)])


def entropy(data: bytes) -> float:
    """Shannon entropy of a byte string in bits per byte (0..8).

    Examples
    --------
    >>> entropy(bytes(range(256)))
    8.0
    """
    if not data:
        return 0.0
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    p = counts[counts > 0] / len(data)
    return float(-(p * np.log2(p)).sum())


def strings_with_offsets(data: bytes, min_len: int = 6) -> list[tuple[int, str]]:
    """Printable ASCII runs of at least ``min_len`` bytes with their file offsets.

    Examples
    --------
    >>> strings_with_offsets(b"\\x00\\x01telnetd\\x00ab\\x00cnc.example.com\\x00")
    [(2, 'telnetd'), (13, 'cnc.example.com')]
    """
    pattern = _STRING if min_len == 6 else re.compile(rb"[\x20-\x7e]{%d,}" % min_len)
    return [(m.start(), m.group().decode("ascii")) for m in pattern.finditer(data)]


def string_kind(text: str) -> str:
    """``host`` for an address/URL/domain, ``risky`` for a remote-shell or downloader hint, else ``text``.

    A bare IPv4 literal counts as a host only when it names a remote machine: the unspecified,
    loopback and broadcast addresses (``0.0.0.0`` bind defaults, ``127.0.0.1``) and dotted quads
    inside longer tokens (``0.0.0.0.in-addr.``, version numbers like ``1.2.3.4.5``) do not. Version
    banners such as ``BusyBox v1.30.1`` are text; ``busybox wget`` or ``busybox telnetd`` are risky.

    Examples
    --------
    >>> texts = ("http://cnc.example/x", "0.0.0.0.in-addr.", "BusyBox v1.30.1", "busybox telnetd -l /bin/sh")
    >>> [string_kind(s) for s in texts]
    ['host', 'text', 'text', 'risky']
    """
    for m in HOST.finditer(text):
        if not m.group()[0].isdigit() or _remote(m.group()):
            return "host"
    if RISKY.search(text):
        return "risky"
    return "text"


def _remote(literal: str) -> bool:
    """True for an IPv4 literal (with optional port) that is not unspecified, loopback or broadcast."""
    try:
        addr = ipaddress.IPv4Address(literal.split(":")[0])
    except ValueError:
        return True
    return not (addr.is_unspecified or addr.is_loopback or addr == ipaddress.IPv4Address("255.255.255.255"))
