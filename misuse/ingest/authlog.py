"""Linux / OpenSSH syslog authentication lines (``/var/log/auth.log``, ``secure``, ``messages``).

Every line with a syslog header becomes an event, ``kind="auth"``:

* ``entity`` is the account name ("unknown" when the line names none), ``peer`` the remote address;
* ``action`` is one of ``login.success``, ``login.failed``, ``login.invalid_user``,
  ``userauth.invalid_user`` (sshd's pre-auth echo of an invalid user), ``pam.auth_failure``,
  ``pam.user_unknown``, ``pam.max_retries``, ``session.open``, ``session.close``, ``su``,
  ``su.failed``, ``break_in``, ``disconnect``, ``connection.open``, ``connection.closed``,
  ``connection.no_ident``, ``connection.reset``, or ``other``;
* ``cat.message``: the message text as the server wrote it (every line);
* ``cat.host`` (the server), ``cat.service`` (``sshd``, ``su``, ``ftpd``...), ``cat.module``
  (``pam_unix`` in ``sshd(pam_unix)``), ``cat.method`` (``password``, ``publickey``, ``pam``...),
  ``num.pid``, ``num.src_port`` and, for "message repeated N times" or "PAM N more
  failures", ``num.repeat``.

OpenSSH logs one failed attempt twice, as ``Failed password`` (``login.failed``) and as a PAM
``authentication failure`` (``pam.auth_failure``); count one of the two, not both. Logs that
have only the PAM line (older Linux) carry their failures in ``pam.auth_failure``.

Syslog stamps have no year and no zone: the ``year`` parameter (default: this year) and ``tz``
(default UTC) supply them, and the year advances when the month steps back (Dec -> Jan).
A line without a syslog header, or whose time does not exist or lies outside the years the event
model holds (:data:`~misuse.events.TS_LIMIT`), goes to the dead letters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from misuse.errors import InvalidParameterError, ParseError
from misuse.events import ts_ok
from misuse.ingest.base import DeadLetter, RecordReader, open_text, read_guard

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, start=1)}
_HEADER = re.compile(
    r"^(?:(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<time>\d\d:\d\d:\d\d)"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?))"
    r"\s+(?P<host>\S+)\s+(?:--\s+)?(?P<prog>[^\s\[:(]+)(?:\((?P<module>[^)]*)\))?(?:\[(?P<pid>\d+)\])?"
    r"(?: [\w.\-]+)?:\s?(?P<msg>.*)$"
)
_IP = r"(?P<ip>[0-9A-Fa-f:.]+|\S+)"
_PORT = r"(?: port (?P<port>\d+))?"
_USER = r"(?P<user>\S*)"
_USER_FROM = r"(?P<user>.*?)"  # before " from": sshd logs names with spaces as they were typed
# (pattern, action, method) in order; the first match wins. Named groups: user, ip, port, n, method.
_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(rf"^Accepted (?P<method>\S+) for {_USER_FROM} from {_IP}{_PORT}"), "login.success", ""),
    (
        re.compile(rf"^Failed (?P<method>\S+) for invalid user {_USER_FROM} from {_IP}{_PORT}"),
        "login.failed",
        "",
    ),
    (re.compile(rf"^Failed (?P<method>\S+) for {_USER_FROM} from {_IP}{_PORT}"), "login.failed", ""),
    (
        re.compile(
            rf"^message repeated (?P<n>\d+) times: \[ Failed (?P<method>\S+) "
            rf"for {_USER_FROM} from {_IP}{_PORT}"
        ),
        "login.failed",
        "",
    ),
    (re.compile(rf"^[Ii]nvalid user {_USER_FROM} from {_IP}{_PORT}"), "login.invalid_user", ""),
    (re.compile(rf"^input_userauth_request: invalid user {_USER}"), "userauth.invalid_user", ""),
    (
        re.compile(r"^PAM (?P<n>\d+) more authentication failures?;.*?rhost=(?P<ip>\S*)(?:\s+user=(?P<user>\S+))?"),
        "pam.auth_failure",
        "pam",
    ),
    (
        re.compile(r"authentication failure;.*?rhost=(?P<ip>\S*)(?:\s+user=(?P<user>\S+))?"),
        "pam.auth_failure",
        "pam",
    ),
    (re.compile(r"check pass; user unknown"), "pam.user_unknown", "pam"),
    (re.compile(r"^PAM service\(\S+\) ignoring max retries"), "pam.max_retries", "pam"),
    (re.compile(rf"session opened for user {_USER}(?: by (?P<by>\S*?)\(uid=\d+\))?"), "session.open", ""),
    (re.compile(rf"session closed for user {_USER}"), "session.close", ""),
    (
        re.compile(r"reverse mapping checking getaddrinfo for \S+ \[(?P<ip>[^\]]+)\].*POSSIBLE BREAK-IN"),
        "break_in",
        "",
    ),
    (re.compile(r"^Address (?P<ip>\S+) maps to .*POSSIBLE BREAK-IN"), "break_in", ""),
    (
        re.compile(rf"Disconnecting: Too many authentication failures for(?: invalid user)? {_USER}"),
        "disconnect",
        "",
    ),
    (re.compile(rf"Received disconnect from {_IP}{_PORT}:"), "disconnect", ""),
    (
        re.compile(rf"^Disconnected from(?: invalid| authenticating)?(?: user {_USER})? {_IP}{_PORT}"),
        "disconnect",
        "",
    ),
    (
        re.compile(rf"^Connection closed by(?: invalid| authenticating)?(?: user {_USER})? {_IP}{_PORT}"),
        "connection.closed",
        "",
    ),
    (re.compile(rf"^Did not receive identification string from {_IP}{_PORT}"), "connection.no_ident", ""),
    (re.compile(r"Connection reset by peer"), "connection.reset", ""),
    (re.compile(rf"^connection from {_IP}"), "connection.open", ""),
    (re.compile(rf"^ANONYMOUS FTP LOGIN FROM {_IP},\s*\((?P<user>[^)]*)\)"), "login.success", "anonymous"),
    (re.compile(rf"^Authentication failed from {_IP}"), "login.failed", ""),
    (re.compile(r"^ROOT LOGIN ON (?P<tty>\S+)"), "login.success", "console"),
    (re.compile(r"^FAILED SU \(to (?P<user>[^)]+)\) (?P<by>\S+)"), "su.failed", ""),
    (re.compile(r"^Successful su for (?P<user>\S+) by (?P<by>\S+)"), "su", ""),
    (re.compile(r"^\(to (?P<user>[^)]+)\) (?P<by>\S+) on"), "su", ""),
]
_PROBE_LINES = 20
#: the last year whose every second the event model holds (TS_LIMIT falls in July 2261)
MAX_YEAR = 2260


def _zone(tz: str) -> ZoneInfo | None:
    if tz.upper() == "UTC":
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameterError(f"The 'tz' parameter of AuthLogReader must be an IANA zone. Got {tz!r}.") from None


class AuthLogReader(RecordReader):
    """Read syslog authentication lines into ``kind="auth"`` events.

    Parameters
    ----------
    year:
        Year of the first line (syslog stamps carry none); None means the current year.
    tz:
        IANA time zone the stamps are in (default "UTC").

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "auth.log"
    >>> line = "Dec 10 07:07:38 LabSZ sshd[24206]: Failed password for root from 1.2.3.4 port 4242 ssh2"
    >>> _ = p.write_text(line + "\\n")
    >>> e = next(AuthLogReader(year=2016).events(p))
    >>> e.entity, e.peer, e.action, e.num["src_port"], e.time.isoformat()
    ('root', '1.2.3.4', 'login.failed', 4242.0, '2016-12-10T07:07:38+00:00')
    """

    name = "authlog"

    def __init__(self, year: int | None = None, tz: str = "UTC") -> None:
        if year is not None and not 1970 <= year <= MAX_YEAR:
            raise InvalidParameterError(
                f"The 'year' parameter of AuthLogReader must be in 1970..{MAX_YEAR}. Got {year}."
            )
        self.year = year
        self.tz = tz
        self._zone = _zone(tz)

    def records(self, path: Path, dead: DeadLetter) -> Iterator[dict[str, object]]:
        year = self.year if self.year is not None else datetime.now(UTC).year
        last_month = 0
        seen_header = False
        first_bad = ""
        checked = 0
        with read_guard(path), open_text(path) as fh:
            for n, raw in enumerate(fh, start=1):
                line = raw.rstrip("\r\n")
                if not line.strip():
                    continue
                m = _HEADER.match(line)
                if m is None:
                    if not seen_header:
                        first_bad = first_bad or line[:60]
                        checked += 1
                        if checked >= _PROBE_LINES:
                            raise ParseError(f"not a syslog auth log: first line is {first_bad!r}", source=str(path))
                    dead.add(str(path), n, "no syslog header (expected 'Mon dd hh:mm:ss host prog[pid]:')", line)
                    continue
                seen_header = True
                if m["iso"]:
                    try:
                        ts = _iso_ts(m["iso"], self._zone)
                    except ValueError as exc:
                        dead.add(str(path), n, f"bad time stamp {m['iso']!r}: {exc}", line)
                        continue
                else:
                    month = _MONTHS.get(m["mon"])
                    if month is None:
                        dead.add(str(path), n, f"unknown month {m['mon']!r}", line)
                        continue
                    if last_month and month < last_month - 6:
                        year += 1
                    last_month = month
                    try:
                        stamp = datetime.strptime(f"{year} {month} {m['day']} {m['time']}", "%Y %m %d %H:%M:%S")
                    except ValueError as exc:
                        dead.add(str(path), n, f"bad time stamp: {exc}", line)
                        continue
                    ts = _localize(stamp, self._zone)
                if not ts_ok(ts):
                    stamp_text = m["iso"] or f"{m['mon']} {m['day']} {m['time']} {year}"
                    dead.add(str(path), n, f"time stamp out of range (years 1677 to 2262): {stamp_text!r}", line)
                    continue
                yield _record(m, ts, path.name, n)
        if not seen_header:
            what = f"no line has a syslog header (first: {first_bad!r})" if first_bad else "no log lines"
            raise ParseError(f"not a syslog auth log: {what}", source=str(path))


def _localize(stamp: datetime, zone: ZoneInfo | None) -> float:
    return stamp.replace(tzinfo=zone or UTC).timestamp()


def _iso_ts(text: str, zone: ZoneInfo | None) -> float:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp.timestamp() if stamp.tzinfo else _localize(stamp, zone)


def _record(m: re.Match[str], ts: float, name: str, n: int) -> dict[str, object]:
    msg = m["msg"].strip()
    body = msg.removeprefix("error: ").removeprefix("fatal: ")
    service = m["prog"]
    rec: dict[str, object] = {
        "event_id": f"{name}:{n}",
        "ts": ts,
        "kind": "auth",
        "source": f"{name}:{n}",
        "cat.host": m["host"],
        "cat.service": service,
        "cat.module": m["module"],
        "num.pid": float(m["pid"]) if m["pid"] else None,
    }
    for pattern, action, method in _RULES:
        hit = pattern.search(body)
        if hit is None:
            continue
        groups = hit.groupdict()
        user = (groups.get("user") or "").strip()
        if not user and method == "console":  # "ROOT LOGIN ON tty2"
            user = "root"
        rec["entity"] = user or "unknown"
        rec["peer"] = groups.get("ip") or ""
        if action == "session.open" and service == "su":
            rec["cat.by"] = groups.get("by")
        rec["action"] = action
        rec["cat.method"] = groups.get("method") or method or None
        rec["num.src_port"] = float(groups["port"]) if groups.get("port") else None
        rec["num.repeat"] = float(groups["n"]) if groups.get("n") else None
        if groups.get("by") and action.startswith("su"):
            rec["cat.by"] = groups["by"]
        # the text itself, so keyword rules (Sigma) match what the server wrote
        rec["cat.message"] = body
        return rec
    rec.update(entity="unknown", peer="", action="other", **{"cat.message": msg})
    return rec
