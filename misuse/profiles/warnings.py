"""Typed warnings: a window of an entity's events compared with its profile (and everyone else's).

How the type is decided (also in docs/profiles.md), first rule that holds wins:

1. **impersonation** - the window's actions fit *another* known profile better than the claimed
   entity's own (per-action log-likelihood margin over ``margin`` nats), or fit no known profile
   (at least ``novel_share`` of the actions were never seen by this entity and no other profile fits
   better than it does). Where the events say where they come from (client string, source
   network: :data:`~misuse.profiles.footprint.CONTEXT_COLUMNS`), the bar depends on it: from a
   client or network the entity never used, any divergence is enough (a better fit elsewhere,
   half of ``novel_share`` new actions, or rare sensitive actions); from its own, the margin must
   be ``familiar_factor`` times larger and 90% of the actions new (someone at the owner's own
   device), and rare sensitive actions from the owner's own client and network are rule 3 (the
   identity looks genuine). The warning names whom the behaviour resembles and the new contexts.
2. **inadvertent misuse** - error-like actions (failed, denied, invalid, error, retry, timeout...)
   make up at least ``error_share`` of the window or one operation fails ``repeat_failures`` times,
   or a numeric value is out of the entity's spec (beyond its 1%-99% range by more than
   ``spec_factor`` times the range's half-width on that side: a thermostat set to 31.5 C by someone
   who always sets 20-22), and no *rare* sensitive action is involved (no malicious marker: a
   sensitive operation the entity does routinely, such as its own door lock, is not one).
3. **insider misuse** - the identity fits its own profile best (genuine), but the window uses rare
   sensitive actions (share below 1% of the baseline; an action is sensitive when its name or one
   of its words is in ``sensitive``: ``export_history`` through ``export``), or is off-hours bulk
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
from misuse.profiles.footprint import context_values
from misuse.profiles.profile import EntityProfile, ProfileBook, _seconds, numeric_key

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
        "disable",
        "factory_reset",
    }
)
_WORD = re.compile(r"[^a-z0-9]+")


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
    threshold: float = 0.0  # the deciding rule's own bound, in the units of ``score``

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
    familiar_factor: float = 3.0
    spec_factor: float = 1.0
    min_spec_values: int = 10
    sensitive: frozenset[str] = DEFAULT_SENSITIVE

    def is_sensitive(self, action: str) -> bool:
        """The action, or one of the words of its name, is in :attr:`sensitive`."""
        a = action.lower()
        return a in self.sensitive or any(w in self.sensitive for w in _WORD.split(a) if w)

    def out_of_spec(self, own: EntityProfile, window: pd.DataFrame) -> list[dict[str, Any]]:
        """Numeric values of the window beyond the entity's learned range (see the module docstring)."""
        found = []
        actions = window["action"].astype(str).to_numpy()
        for col in [c for c in window.columns if str(c).startswith("num.")]:
            attr = str(col)[4:]
            values = pd.to_numeric(window[col], errors="coerce").to_numpy(dtype="float64")
            seen = np.isfinite(values)
            # a command's parameter is compared with the same command's values, others with the attribute's
            keys = np.array([numeric_key(a, attr) if numeric_key(a, attr) in own.numeric else attr for a in actions])
            for key in np.unique(keys[seen]):
                sketch = own.numeric.get(str(key))
                if sketch is None or sketch.count < self.min_spec_values:
                    continue
                lo, mid, hi = (sketch.quantile(q) for q in (0.01, 0.5, 0.99))
                floor = 0.05 * max(abs(mid), 1e-9)  # a constant setting still allows a little play
                upper = hi + self.spec_factor * max(hi - mid, floor)
                lower = lo - self.spec_factor * max(mid - lo, floor)
                v = values[seen & (keys == key)]
                bad = v[(v > upper) | (v < lower)]
                if bad.size:
                    found.append(
                        {
                            "view": "distribution",
                            "item": str(key),
                            "typical": mid,
                            "actual": float(bad[np.argmax(np.abs(bad - mid))]),
                            "range": [lo, hi],
                            "count": int(bad.size),
                        }
                    )
        return found

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
        best = others[0] if others else None
        sensitive = sorted({a for a in actions if self.is_sensitive(a)})
        rare = [a for a in sensitive if own.footprint.actions.share(a) < 0.01]
        ctx = context_values(window)
        new_ctx = own.footprint.new_contexts(ctx)
        margin = best[1] - own_fit if best is not None else -math.inf
        # 1. impersonation: behaviour of someone else; how much it takes depends on where it comes from
        if new_ctx:  # a client or network this identity never used: any behavioural divergence will do
            bar, novel_bar, where = 0.0, self.novel_share / 2, "from " + ", ".join(new_ctx) + " (never seen for it)"
        elif new_ctx is None:  # no context to compare with: behaviour alone
            bar, novel_bar, where = self.margin, self.novel_share, ""
        else:  # the identity's own client and network: only a strong divergence is someone else
            bar, novel_bar, where = self.familiar_factor * self.margin, min(1.0, 1.8 * self.novel_share), ""
        ctx_drivers = [
            {"view": "context", "item": c, "typical": 0.0, "actual": ctx.count(c) / max(len(ctx), 1)}
            for c in new_ctx or []
        ]
        views = sorted({*(["functional"] if drivers else []), *(["context"] if ctx_drivers else [])}) or ["functional"]
        lead = f"{entity}'s recent actions" + (f" {where}" if where else "")
        genuine = new_ctx == [] and bool(rare)  # own client and network using rare sensitive functions: rule 3
        if best is not None and margin > bar and not genuine:
            return ProfileWarning(
                entity,
                MisuseType.IMPERSONATION,
                margin,
                views,
                ctx_drivers + drivers,
                f"{lead} fit {best[0]}'s profile better than {entity}'s own "
                f"({best[1]:.2f} vs {own_fit:.2f} nats per action).",
                others[:3],
                bar,
            )
        if (novel >= novel_bar and not genuine) or (new_ctx and rare):
            what = (
                f"{novel:.0%} were never seen in its profile"
                if novel >= novel_bar
                else "use rare sensitive actions " + ", ".join(rare)
            )
            return ProfileWarning(
                entity,
                MisuseType.IMPERSONATION,
                novel,
                views,
                ctx_drivers + drivers,
                f"{lead}: {what}, and no known profile explains them better: behaviour of another, unknown user.",
                others[:3],
                novel_bar,
            )
        # 2. inadvertent
        errors = [a for a in actions if ERROR_LIKE.search(a)]
        repeats = Counter(errors).most_common(1)
        err_share = len(errors) / len(actions)
        erring = err_share >= self.error_share or bool(repeats and repeats[0][1] >= self.repeat_failures)
        spec = self.out_of_spec(own, window)
        if (erring or spec) and not rare:
            drv = [
                {"view": "functional", "item": a, "typical": own.footprint.actions.share(a), "actual": c / len(actions)}
                for a, c in Counter(errors).most_common(3)
            ] if erring else []  # fmt: skip
            parts = []
            if erring:
                what = repeats[0][0] if repeats else ""
                parts.append(
                    f"{err_share:.0%} of {entity}'s recent actions look like errors ('{what}' repeated "
                    f"{repeats[0][1] if repeats else 0} times)"
                )
            for d in spec:
                parts.append(
                    f"{d['item']} set to {d['actual']:.4g} where {entity} keeps {d['range'][0]:.4g}-{d['range'][1]:.4g}"
                )
            return ProfileWarning(
                entity,
                MisuseType.INADVERTENT_MISUSE,
                err_share + len(spec),
                sorted({d["view"] for d in drv + spec}),
                drv + spec,
                "; ".join(parts) + ", with no rare sensitive action: likely a mistake, not an attack.",
                threshold=self.error_share if erring else 0.0,
            )
        # 3. insider
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
