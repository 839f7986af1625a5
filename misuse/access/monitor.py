"""Stateful login models: per source and per account, over a stream of login attempts.

:class:`LoginMonitor` reads attempts (rows of :func:`~misuse.access.attempts.login_attempts`) in
time order and raises explained :class:`~misuse.alerts.model.Alert` objects for

==========================  ===================  ============================================================
finding                     misuse type          when
==========================  ===================  ============================================================
brute_force                 brute_force          one source fails ``brute_force_failures`` times in ``window``
password_spraying           brute_force          one source fails on ``spray_accounts`` accounts, few tries
                                                 each, mostly with one password
credential_stuffing         brute_force          as spraying, but a different password per account
distributed_brute_force     brute_force          one account fails ``brute_force_failures`` times in
                                                 ``window`` from ``distributed_sources`` sources
success_after_failures      unauthorized_access  a success after ``success_after_failures`` failures from
                                                 the same source, or ``brute_force_failures`` against
                                                 the same account, in ``window``
unusual_login               impersonation        a success of a known account (``min_history`` logins) with
                                                 ``min_unusual`` of: a rare hour, a new source network, a new
                                                 client fingerprint
==========================  ===================  ============================================================

State is bounded: at most ``max_entities`` sources, accounts and histories (least recently seen
evicted first), at most ``max_events`` failures remembered per source or account, and per
account the profile machinery's bounded counters (:class:`~misuse.profiles.footprint.BoundedCounts`)
and hour grid (:class:`~misuse.profiles.temporal.Temporal`). A finding does not fire again for
the same key within ``window`` seconds.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType, Severity
from misuse.errors import InvalidParameterError
from misuse.profiles.footprint import BoundedCounts
from misuse.profiles.temporal import Temporal

DETECTOR = "access.login"
_MAX_EVIDENCE = 25


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One login attempt, the single-event form of a row of the attempts frame."""

    ts: float
    account: str
    source: str
    success: bool
    failures: float = 1.0
    client: str = ""
    password: str = ""
    event_id: str = ""
    channel: str = ""


@dataclass
class _AccountHistory:
    hours: Temporal = field(default_factory=Temporal)
    networks: BoundedCounts = field(default_factory=lambda: BoundedCounts(capacity=32))
    clients: BoundedCounts = field(default_factory=lambda: BoundedCounts(capacity=16))
    logins: int = 0


def network_of(address: str) -> str:
    """The network an address belongs to for "new source" checks: IPv4 /24, IPv6 /48, else the text.

    Examples
    --------
    >>> network_of("192.0.2.77"), network_of("2001:db8:1:2::5"), network_of("")
    ('192.0.2.0/24', '2001:db8:1::/48', '')
    """
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return ".".join(parts[:3]) + ".0/24"
    if ":" in address:
        groups = [*address.split("::")[0].split(":"), "0", "0", "0"][:3]
        return ":".join(g or "0" for g in groups) + "::/48"
    return address


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class LoginMonitor:
    """Per-source and per-account login models that raise explained alerts.

    Parameters
    ----------
    window:
        Seconds over which failures are counted (default one hour).
    brute_force_failures:
        Failures from one source (or, distributed, against one account) that make a brute force.
    spray_accounts:
        Distinct accounts failed from one source that make spraying / stuffing.
    spray_ratio:
        Spraying / stuffing needs at most this many failures per account on average.
    distributed_sources:
        Distinct sources failing against one account that make a distributed brute force.
    success_after_failures:
        Failures before a success that make the success suspicious.
    min_history:
        Successful logins an account needs before its unusual logins are reported.
    rare_hour:
        An hour (with its two neighbours) holding less than this share of the account's logins is rare.
    min_unusual:
        How many of rare hour / new network / new client make an unusual login (1 to 3).
    max_entities, max_events:
        Bounds on the state (see the module docstring).

    Examples
    --------
    >>> m = LoginMonitor(brute_force_failures=5)
    >>> alerts = m.process_many(
    ...     LoginAttempt(ts=float(i), account="root", source="203.0.113.9", success=False, event_id=f"e{i}")
    ...     for i in range(6))
    >>> [(a.misuse_type, a.summary.split(":")[0]) for a in alerts]
    [('brute_force', 'brute force from 203.0.113.9')]
    """

    def __init__(
        self,
        *,
        window: float = 3600.0,
        brute_force_failures: int = 10,
        spray_accounts: int = 5,
        spray_ratio: float = 2.0,
        distributed_sources: int = 3,
        success_after_failures: int = 3,
        min_history: int = 5,
        rare_hour: float = 0.03,
        min_unusual: int = 2,
        max_entities: int = 10_000,
        max_events: int = 512,
    ) -> None:
        self.window = window
        self.brute_force_failures = brute_force_failures
        self.spray_accounts = spray_accounts
        self.spray_ratio = spray_ratio
        self.distributed_sources = distributed_sources
        self.success_after_failures = success_after_failures
        self.min_history = min_history
        self.rare_hour = rare_hour
        self.min_unusual = min_unusual
        self.max_entities = max_entities
        self.max_events = max_events
        self._check()
        self._by_source: OrderedDict[str, deque[tuple[float, str, str, str, float]]] = OrderedDict()
        self._by_account: OrderedDict[str, deque[tuple[float, str, str, str, float]]] = OrderedDict()
        self._history: OrderedDict[str, _AccountHistory] = OrderedDict()
        self._fired: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._before_success = [0.0, 0]  # sum of failures preceding successes, successes

    def _check(self) -> None:
        positive = {
            "window": self.window,
            "brute_force_failures": self.brute_force_failures,
            "spray_accounts": self.spray_accounts,
            "spray_ratio": self.spray_ratio,
            "distributed_sources": self.distributed_sources,
            "success_after_failures": self.success_after_failures,
            "max_entities": self.max_entities,
            "max_events": self.max_events,
        }
        for name, value in positive.items():
            if not value > 0:
                raise InvalidParameterError(f"The '{name}' parameter of LoginMonitor must be > 0. Got {value}.")
        if self.min_history < 0:
            raise InvalidParameterError(
                f"The 'min_history' parameter of LoginMonitor must be >= 0. Got {self.min_history}."
            )
        if not 0.0 <= self.rare_hour < 1.0:
            raise InvalidParameterError(
                f"The 'rare_hour' parameter of LoginMonitor must be in [0, 1). Got {self.rare_hour}."
            )
        if self.min_unusual not in (1, 2, 3):
            raise InvalidParameterError(
                f"The 'min_unusual' parameter of LoginMonitor must be 1, 2 or 3. Got {self.min_unusual}."
            )

    # ----------------------------------------------------------------- state helpers
    def _bounded(self, table: OrderedDict[str, Any], key: str, make: Any) -> Any:
        item = table.get(key)
        if item is None:
            item = make()
            table[key] = item
            while len(table) > self.max_entities:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return item

    def _recent(self, table: OrderedDict[str, deque[Any]], key: str, now: float) -> deque[Any]:
        q: deque[Any] = self._bounded(table, key, lambda: deque(maxlen=self.max_events))
        while q and q[0][0] < now - self.window:
            q.popleft()
        return q

    def _may_fire(self, finding: str, key: str, now: float) -> bool:
        last = self._fired.get((finding, key))
        if last is not None and now - last < self.window:
            return False
        self._fired[(finding, key)] = now
        self._fired.move_to_end((finding, key))
        while len(self._fired) > self.max_entities:
            self._fired.popitem(last=False)
        return True

    @property
    def typical_failures_before_success(self) -> float:
        """Mean failures seen before each successful login so far (0 before any)."""
        total, n = self._before_success
        return total / n if n else 0.0

    @property
    def state_size(self) -> int:
        """Entries held across all per-source and per-account tables (bounded by the parameters)."""
        return len(self._by_source) + len(self._by_account) + len(self._history) + len(self._fired)

    # ----------------------------------------------------------------- public API
    def learn_many(self, attempts: pd.DataFrame | Iterable[LoginAttempt]) -> LoginMonitor:
        """Learn account histories from attempts known to be clean, without raising alerts."""
        for a in _as_attempts(attempts):
            if a.success:
                self._learn(a)
        return self

    def process_many(self, attempts: pd.DataFrame | Iterable[LoginAttempt]) -> list[Alert]:
        """Process attempts in the given (time) order; return every alert raised."""
        out: list[Alert] = []
        for a in _as_attempts(attempts):
            out.extend(self.process_one(a))
        return out

    def process_one(self, a: LoginAttempt) -> list[Alert]:
        """Update the models with one attempt and return the alerts it raises (often none)."""
        src_q = self._recent(self._by_source, a.source or "?", a.ts)
        acc_q = self._recent(self._by_account, a.account, a.ts)
        if not a.success:
            n = max(float(a.failures), 1.0)
            src_q.append((a.ts, a.account, a.password, a.event_id, n))
            acc_q.append((a.ts, a.source, a.password, a.event_id, n))
            return self._failure_findings(a, src_q, acc_q)
        alerts = self._success_findings(a, src_q, acc_q)
        if not any(al.misuse_type == MisuseType.UNAUTHORIZED_ACCESS for al in alerts):
            self._learn(a)
        return alerts

    # ----------------------------------------------------------------- findings
    def _failure_findings(self, a: LoginAttempt, src_q: deque[Any], acc_q: deque[Any]) -> list[Alert]:
        out: list[Alert] = []
        fails = sum(e[4] for e in src_q)
        accounts = {e[1] for e in src_q}
        typical = self.typical_failures_before_success
        if a.source and len(accounts) >= self.spray_accounts and fails / len(accounts) <= self.spray_ratio:
            finding, detail = _spray_kind(src_q)
            if self._may_fire("spray", a.source, a.ts):
                contrib = [
                    _c("accounts_failed_from_source", 1.0, len(accounts), 1.0),
                    _c("failures_per_account", typical, round(fails / len(accounts), 2), 0.5),
                ]
                sev = Severity.HIGH
                summary = (
                    f"{finding.replace('_', ' ')} from {a.source}: {fails:.0f} failures on {len(accounts)} accounts "
                    f"within {self.window:.0f}s ({detail})"
                )
                out.append(
                    self._alert(a.source, src_q, a, finding, len(accounts), self.spray_accounts, sev, summary, contrib)
                )
        elif a.source and fails >= self.brute_force_failures and self._may_fire("brute_force", a.source, a.ts):
            sev = Severity.HIGH if fails >= 5 * self.brute_force_failures else Severity.MEDIUM
            top = ", ".join(f"{u} ({k})" for u, k in Counter(e[1] for e in src_q).most_common(3))
            summary = (
                f"brute force from {a.source}: {fails:.0f} failed logins within {self.window:.0f}s "
                f"(typical before a success: {typical:.1f}); accounts tried: {top}"
            )
            contrib = [
                _c("failures_from_source", typical, fails, 1.0),
                _c("accounts_failed_from_source", 1.0, len(accounts), 0.3),
            ]
            out.append(
                self._alert(a.source, src_q, a, "brute_force", fails, self.brute_force_failures, sev, summary, contrib)
            )
        acc_fails = sum(e[4] for e in acc_q)
        sources = {e[1] for e in acc_q}
        if (
            acc_fails >= self.brute_force_failures
            and len(sources) >= self.distributed_sources
            and self._may_fire("distributed", a.account, a.ts)
        ):
            summary = (
                f"distributed brute force on account {a.account}: {acc_fails:.0f} failures from "
                f"{len(sources)} sources within {self.window:.0f}s"
            )
            contrib = [
                _c("failures_on_account", typical, acc_fails, 1.0),
                _c("sources_failing_on_account", 1.0, len(sources), 0.7),
            ]
            out.append(
                self._alert(
                    a.account,
                    acc_q,
                    a,
                    "distributed_brute_force",
                    acc_fails,
                    self.brute_force_failures,
                    Severity.HIGH,
                    summary,
                    contrib,
                )
            )
        return out

    def _success_findings(self, a: LoginAttempt, src_q: deque[Any], acc_q: deque[Any]) -> list[Alert]:
        out: list[Alert] = []
        from_src = sum(e[4] for e in src_q) if a.source else 0.0
        on_acc = sum(e[4] for e in acc_q)
        before = max(from_src, on_acc)
        typical = self.typical_failures_before_success
        # the source's own failures, or an account under attack from anywhere
        suspicious = from_src >= self.success_after_failures or on_acc >= self.brute_force_failures
        if suspicious and self._may_fire("success_after_failures", a.account + "|" + a.source, a.ts):
            q = src_q if from_src >= on_acc else acc_q
            sev = Severity.CRITICAL if before >= self.brute_force_failures else Severity.HIGH
            summary = (
                f"login as {a.account} from {a.source or 'an unknown source'} succeeded after {before:.0f} failures "
                f"within {self.window:.0f}s (typical: {typical:.1f})"
            )
            contrib = [
                _c("failures_before_success_from_source", typical, from_src, 1.0),
                _c("failures_before_success_on_account", typical, on_acc, 0.7),
            ]
            out.append(
                self._alert(
                    a.account,
                    q,
                    a,
                    "success_after_failures",
                    before,
                    self.success_after_failures,
                    sev,
                    summary,
                    contrib,
                    MisuseType.UNAUTHORIZED_ACCESS,
                )
            )
        unusual = self._unusual(a)
        if unusual is not None:
            out.append(unusual)
        self._before_success[0] += before
        self._before_success[1] += 1
        return out

    def _unusual(self, a: LoginAttempt) -> Alert | None:
        hist = self._history.get(a.account)
        if hist is None or hist.logins < self.min_history:
            return None
        hour = int(np.floor(a.ts / 3600.0)) % 24
        share = hist.hours.hour_share()
        near = float(share[(hour - 1) % 24] + share[hour] + share[(hour + 1) % 24])
        net = network_of(a.source)
        contrib: list[dict[str, Any]] = []
        what: list[str] = []
        if near < self.rare_hour:
            usual = int(np.argmax(share))
            contrib.append(
                _c("login_hour_utc", f"{usual:02d}h ({share[usual]:.0%})", f"{hour:02d}h ({near:.0%} near)", 1.0)
            )
            what.append(f"at {hour:02d}h UTC (usually {usual:02d}h)")
        if net and hist.networks.total and hist.networks.share(net) == 0.0:
            top = hist.networks.top(1)[0][0]
            contrib.append(_c("source_network", top, net, 1.0))
            what.append(f"from new network {net} (usually {top})")
        if a.client and hist.clients.total and hist.clients.share(a.client) == 0.0:
            top = hist.clients.top(1)[0][0]
            contrib.append(_c("client", top, a.client, 1.0))
            what.append(f"with new client '{a.client}' (usually '{top}')")
        if len(what) < self.min_unusual or not self._may_fire("unusual_login", a.account, a.ts):
            return None
        sev = {1: Severity.LOW, 2: Severity.MEDIUM}.get(len(what), Severity.HIGH)
        summary = f"unusual login as {a.account} after {hist.logins} known logins: " + "; ".join(what)
        return Alert(
            entity=a.account,
            window_start=_utc(a.ts),
            window_end=_utc(a.ts),
            score=float(len(what)),
            threshold=float(self.min_unusual),
            severity=sev.value,
            misuse_type=MisuseType.IMPERSONATION.value,
            detector=f"{DETECTOR}.unusual_login",
            summary=summary,
            contributions=contrib,
            evidence=[a.event_id] if a.event_id else [],
        )

    def _learn(self, a: LoginAttempt) -> None:
        hist: _AccountHistory = self._bounded(self._history, a.account, _AccountHistory)
        hist.hours.update(np.array([a.ts]))
        if a.source:
            hist.networks.update([network_of(a.source)])
        if a.client:
            hist.clients.update([a.client])
        hist.logins += 1

    def _alert(
        self,
        entity: str,
        q: deque[Any],
        a: LoginAttempt,
        finding: str,
        score: float,
        threshold: float,
        severity: Severity,
        summary: str,
        contributions: list[dict[str, Any]],
        misuse_type: MisuseType = MisuseType.BRUTE_FORCE,
    ) -> Alert:
        ids = [e[3] for e in q if e[3]]
        evidence = ids[-_MAX_EVIDENCE:] + ([a.event_id] if a.success and a.event_id else [])
        start = q[0][0] if q else a.ts
        return Alert(
            entity=entity,
            window_start=_utc(min(start, a.ts)),
            window_end=_utc(a.ts),
            score=float(score),
            threshold=float(threshold),
            severity=severity.value,
            misuse_type=misuse_type.value,
            detector=f"{DETECTOR}.{finding}",
            summary=summary,
            contributions=contributions,
            evidence=evidence,
        )


def _c(feature: str, typical: object, actual: object, weight: float) -> dict[str, Any]:
    return {"feature": feature, "typical": typical, "actual": actual, "weight": weight}


def _spray_kind(q: deque[Any]) -> tuple[str, str]:
    """Spraying (one password, many accounts) or stuffing (a different pair each time)."""
    pairs = {(e[1], e[2]) for e in q}
    passwords = [p for _, p in pairs if p]
    if len(passwords) < len(pairs) / 2:
        return "password_spraying", "passwords not logged, spraying or credential stuffing"
    top, k = Counter(passwords).most_common(1)[0]
    accounts = len({u for u, _ in pairs})
    if k >= max(2, accounts / 2):
        return "password_spraying", f"password '{top}' tried on {k} accounts"
    return "credential_stuffing", f"{len(set(passwords))} distinct passwords over {accounts} accounts"


def _as_attempts(attempts: pd.DataFrame | Iterable[LoginAttempt]) -> Iterable[LoginAttempt]:
    if not isinstance(attempts, pd.DataFrame):
        return attempts
    cols = ("ts", "account", "source", "success", "failures", "client", "password", "event_id", "channel")
    frame = attempts
    for c in cols:
        if c not in frame.columns:
            frame = frame.assign(**{c: 1.0 if c == "failures" else ""})
    return (
        LoginAttempt(float(t), str(u), str(s), bool(ok), float(n), str(cl), str(p), str(i), str(ch))
        for t, u, s, ok, n, cl, p, i, ch in frame[list(cols)].itertuples(index=False, name=None)
    )
