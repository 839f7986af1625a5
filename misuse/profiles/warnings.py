"""Typed warnings: a window of an entity's events compared with its profile (and everyone else's).

How the type is decided (also in docs/profiles.md), first rule that holds wins:

1. **impersonation** - the window's actions fit *another* known profile better than the claimed
   entity's own (per-action log-likelihood margin over ``margin`` nats), or fit no known profile
   (at least ``novel_share`` of the actions were never seen by this entity and no other profile fits
   better than it does). The warning names whom the behaviour resembles.
2. **inadvertent misuse** - error-like actions (failed, denied, invalid, error, retry, timeout...)
   make up at least ``error_share`` of the window or one operation fails ``repeat_failures`` times,
   and no sensitive action is involved (no malicious marker).
3. **insider misuse** - the identity fits its own profile best (genuine), but the window uses rare
   sensitive actions (share below 1% of the baseline and in ``sensitive``), or is off-hours bulk
   activity (at least half the events in hours that are nearly silent in the baseline, and more
   than ``bulk_factor`` times the usual rate).

Otherwise no warning is raised. Every warning lists the views that diverged and the drivers
(typical vs actual), so an analyst can check the reasoning.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.types import MisuseType
from misuse.profiles.profile import EntityProfile, ProfileBook, _seconds

#: error-like action names: the word starts after a non-letter ("login.failed", "auth_error", "Retry")
ERROR_LIKE = re.compile(r"(?<![a-z])(fail|error|denied|invalid|refused|retry|timeout|reject|wrong)", re.IGNORECASE)
DEFAULT_SENSITIVE = frozenset(
    {
        "su",
        "sudo",
        "passwd",
        "chmod",
        "chown",
        "useradd",
        "userdel",
        "rm",
        "dd",
        "scp",
        "ftp",
        "wget",
        "curl",
        "unlock",
        "disarm",
        "firmware.update",
        "config.change",
        "export",
        "delete",
        "factory_reset",
    }
)


@dataclass
class ProfileWarning:
    """One explained divergence from a baseline."""

    entity: str
    misuse_type: str
    score: float
    views: list[str]
    drivers: list[dict[str, Any]]
    summary: str
    resembles: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for JSON."""
        return asdict(self)


def fit(profile: EntityProfile, actions: list[str], alpha: float = 0.5) -> float:
    """Mean per-action log-likelihood of ``actions`` under a profile's footprint (add-alpha smoothed)."""
    counts = profile.footprint.actions
    v = max(len(counts.items), 1) + 1
    denom = counts.total + alpha * v
    return float(np.mean([math.log((counts.get(a, 0.0) + alpha) / denom) for a in actions]))


@dataclass
class WarningRules:
    """Thresholds of the decision rules (see the module docstring)."""

    margin: float = 0.5
    novel_share: float = 0.5
    error_share: float = 0.3
    repeat_failures: int = 5
    off_hours_share: float = 0.5
    bulk_factor: float = 3.0
    sensitive: frozenset[str] = DEFAULT_SENSITIVE

    def assess(self, book: ProfileBook, entity: str, window: pd.DataFrame) -> ProfileWarning | None:
        """Compare ``window`` (the entity's recent events) with its profile; a typed warning or None."""
        own = book[entity]
        actions = window["action"].astype(str).tolist()
        if not actions:
            return None
        ts = _seconds(window["ts"])
        own_fit = fit(own, actions)
        others = sorted(((k, fit(p, actions)) for k, p in book.profiles.items() if k != entity), key=lambda t: -t[1])
        novel = own.footprint.novelty(actions)
        drivers = own.footprint.divergence(actions)
        views = ["functional"] if drivers else []
        best = others[0] if others else None
        # 1. impersonation
        if best is not None and best[1] - own_fit > self.margin:
            return ProfileWarning(
                entity,
                MisuseType.IMPERSONATION,
                best[1] - own_fit,
                views or ["functional"],
                drivers,
                f"{entity}'s recent actions fit {best[0]}'s profile better than {entity}'s own "
                f"({best[1]:.2f} vs {own_fit:.2f} nats per action).",
                others[:3],
            )
        if novel >= self.novel_share:
            return ProfileWarning(
                entity,
                MisuseType.IMPERSONATION,
                novel,
                views or ["functional"],
                drivers,
                f"{novel:.0%} of {entity}'s recent actions were never seen in its profile and no known profile "
                "explains them better: behaviour of an unknown user.",
                others[:3],
            )
        # 2. inadvertent
        errors = [a for a in actions if ERROR_LIKE.search(a)]
        repeats = Counter(errors).most_common(1)
        sensitive = sorted({a for a in actions if a in self.sensitive})
        err_share = len(errors) / len(actions)
        if (err_share >= self.error_share or (repeats and repeats[0][1] >= self.repeat_failures)) and not sensitive:
            what = repeats[0][0] if repeats else ""
            drv = [
                {"view": "functional", "item": a, "typical": own.footprint.actions.share(a), "actual": c / len(actions)}
                for a, c in Counter(errors).most_common(3)
            ]
            return ProfileWarning(
                entity,
                MisuseType.INADVERTENT_MISUSE,
                err_share,
                ["functional"],
                drv,
                f"{err_share:.0%} of {entity}'s recent actions look like errors ('{what}' repeated "
                f"{repeats[0][1] if repeats else 0} times) with no sensitive action: likely a mistake, not an attack.",
            )
        # 3. insider
        rare = [a for a in sensitive if own.footprint.actions.share(a) < 0.01]
        off = own.temporal.off_hours(ts)
        span_h = max((ts.max() - ts.min()) / 3600, 1.0) if ts.size else 1.0
        rate = len(actions) / span_h
        usual = max(
            own.temporal.total / max((own.temporal.last_ts or 0) - (own.temporal.first_ts or 0), 3600) * 3600, 1e-9
        )
        bulk = off >= self.off_hours_share and rate > self.bulk_factor * usual
        if rare or bulk:
            drv = [
                {
                    "view": "functional",
                    "item": a,
                    "typical": own.footprint.actions.share(a),
                    "actual": actions.count(a) / len(actions),
                }
                for a in rare
            ]
            if bulk:
                drv.append({"view": "temporal", "item": "off-hours share", "typical": 0.25 / 24, "actual": off})
                drv.append({"view": "temporal", "item": "events per hour", "typical": usual, "actual": rate})
            parts = []
            if rare:
                parts.append("rare sensitive actions " + ", ".join(rare))
            if bulk:
                parts.append(f"{off:.0%} of events in its quiet hours at {rate / usual:.1f}x its usual rate")
            return ProfileWarning(
                entity,
                MisuseType.INSIDER_MISUSE,
                len(rare) + (rate / usual if bulk else 0.0),
                sorted({d["view"] for d in drv}),
                drv,
                f"{entity} (its own profile fits best) shows " + " and ".join(parts) + ".",
                others[:3],
            )
        return None
