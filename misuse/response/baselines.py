"""The fixed response policies the learned one is measured against.

* :class:`StaticThresholdPolicy`: one action (alert by default) at or above a fused-risk threshold.
  The default alerts at the detector's threshold (fused risk 0.5); :meth:`~StaticThresholdPolicy.tuned`
  picks the threshold and action of lowest cost on training streams.
* :class:`RulebookPolicy`: a severity ladder (alert, rate-limit, quarantine) plus a
  repeat-offender rule. Its default rungs 0.5 / 0.8 / 0.95 read fused risk as a probability;
  :meth:`~RulebookPolicy.from_replays` keeps the alert rung at the alert level and puts the
  upper two at quantiles of the training streams' alerts' risk, for streams whose risk is not
  spread like a probability.

Both decide where the learned policy does: at the windows that raised an alert.

:func:`training_baselines` fixes both on training streams; ``to_dict`` / :func:`baseline_from_dict`
let a trained policy keep them beside itself, so that ``misuse policy evaluate`` compares against
the same baselines the benchmark does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from misuse.errors import InvalidParameterError, SchemaError
from misuse.response.env import (
    ACTIONS,
    ALERT,
    IGNORE,
    OBS_FEATURES,
    QUARANTINE,
    RATE_LIMIT,
    Costs,
    ResponseEnv,
    run_episode,
)
from misuse.response.replay import ALERT_RISK, Replay

_RISK = OBS_FEATURES.index("risk")
_STREAK = OBS_FEATURES.index("streak")

#: Quantile levels of the training alerts' risk at which :meth:`RulebookPolicy.from_replays` puts
#: its rate-limit and quarantine rungs: the top tenth of the alerts is rate-limited, the top
#: hundredth quarantined (of four level sets, the cheapest on the benchmark's training streams).
RULEBOOK_LEVELS = (0.9, 0.99)


def _risk(replays: Sequence[Replay]) -> np.ndarray:
    """Fused risk of the replays' alerted windows (the windows a policy decides on)."""
    if not replays:
        raise InvalidParameterError("baselines need at least one replay")
    risk = np.concatenate([r.frame.loc[r.frame["alerted"], "risk"].to_numpy(float) for r in replays])
    if len(risk) == 0:
        raise InvalidParameterError("baselines need replays with at least one alerted window")
    return risk


class StaticThresholdPolicy:
    """Take one fixed action (alert by default) when the fused risk reaches a threshold; else ignore.

    The default is the plain alerting rule: alert at the detector's threshold (fused risk 0.5),
    never contain. :meth:`tuned` picks the threshold and action of lowest cost on training streams.

    >>> StaticThresholdPolicy().describe()
    'alert at fused risk >= 0.500'
    """

    name = "static-threshold"

    def __init__(self, threshold: float = 0.5, action: int = ALERT) -> None:
        if not 0 <= action < len(ACTIONS):
            raise InvalidParameterError(
                f"The 'action' parameter of StaticThresholdPolicy must be in [0, {len(ACTIONS)}). "
                f"Got {action!r} instead."
            )
        self.threshold = threshold
        self.action = action

    def act(self, obs: np.ndarray) -> int:
        """``action`` at or above the threshold, else IGNORE."""
        return self.action if obs[_RISK] >= self.threshold else IGNORE

    def describe(self) -> str:
        """The rule in words."""
        return f"{ACTIONS[self.action]} at fused risk >= {self.threshold:.3f}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (:func:`baseline_from_dict` reads them back)."""
        return {"kind": "static-threshold", "threshold": float(self.threshold), "action": ACTIONS[self.action]}

    @classmethod
    def tuned(
        cls,
        replays: Sequence[Replay],
        costs: Costs | None = None,
        actions: Sequence[int] = (ALERT, RATE_LIMIT, QUARANTINE),
        steps: int = 20,
        **env_kw: Any,
    ) -> StaticThresholdPolicy:
        """The (threshold, action) pair of lowest total cost on ``replays``.

        Thresholds are the 0, 1/steps, ..., 1 quantiles of the fused risk of the replays'
        alerts and the detector's threshold 0.5, so the result is never worse there than the
        default. Pass training streams only: tuning on the streams it is evaluated on would
        flatter it.
        """
        if not actions:
            raise InvalidParameterError("StaticThresholdPolicy.tuned: no actions to choose from")
        env = ResponseEnv(replays, costs, **env_kw)
        grid = np.unique(np.append(np.quantile(_risk(replays), np.linspace(0.0, 1.0, steps + 1)), 0.5))
        best = (np.inf, float(grid[0]), int(actions[0]))
        for a in actions:
            for th in grid:
                pol = cls(float(th), a)
                cost = sum(run_episode(env, pol.act, k).total_cost for k in range(len(replays)))
                if cost < best[0]:
                    best = (cost, float(th), int(a))
        return cls(best[1], best[2])


class RulebookPolicy:
    """A fixed rulebook: a severity ladder on fused risk plus a repeat-offender rule.

    risk >= ``quarantine``: quarantine; >= ``rate_limit``: rate-limit; >= ``alert``: alert,
    escalated to quarantine when the ``streak`` windows just before were alerted windows of the
    entity too; else ignore.

    The escalation reads the observation's ``streak``: the entity's alerted windows in a row,
    i.e. windows at or above the alert rung when that rung is the alert level
    (:data:`~misuse.response.replay.ALERT_RISK`, fused risk 0.5), as the default and
    :meth:`from_replays` set it. (It used to count windows above a floor of 0.35 that every
    window of the benchmark's streams passes, so it quarantined any entity seen 3 windows running.)

    Parameters
    ----------
    alert, rate_limit, quarantine:
        The rungs, in fused risk; ``alert <= rate_limit <= quarantine``. The defaults read fused
        risk as a probability; :meth:`from_replays` takes the upper two from training streams.
    streak:
        Alerted windows in a row before this one that escalate an alert to a quarantine.

    Examples
    --------
    >>> from misuse.response.replay import synthetic_replay
    >>> book = RulebookPolicy.from_replays([synthetic_replay("toy", seed=0)])
    >>> book.alert == 0.5 < book.rate_limit < book.quarantine < 1.0
    True
    """

    name = "rulebook"

    def __init__(self, alert: float = 0.5, rate_limit: float = 0.8, quarantine: float = 0.95, streak: int = 3) -> None:
        if not alert <= rate_limit <= quarantine:
            raise InvalidParameterError(
                "The rungs of RulebookPolicy must satisfy alert <= rate_limit <= quarantine. "
                f"Got {alert!r}, {rate_limit!r}, {quarantine!r} instead."
            )
        if streak < 1:
            raise InvalidParameterError(f"The 'streak' parameter of RulebookPolicy must be >= 1. Got {streak!r}.")
        self.alert = alert
        self.rate_limit = rate_limit
        self.quarantine = quarantine
        self.streak = streak
        self.levels: tuple[float, ...] | None = None

    @classmethod
    def from_replays(
        cls, replays: Sequence[Replay], levels: Sequence[float] = RULEBOOK_LEVELS, streak: int = 3
    ) -> RulebookPolicy:
        """The rulebook with its alert rung at the alert level and the others at quantiles of alerts' risk.

        Every alert is at least alerted (the alert rung is :data:`~misuse.response.replay.ALERT_RISK`);
        the rate-limit and quarantine rungs are the ``levels`` quantiles of the fused risk of
        the replays' alerted windows, however narrow the band it lies in. Pass training streams
        only.
        """
        lv = tuple(float(x) for x in levels)
        if len(lv) != 2 or not all(0.0 <= x <= 1.0 for x in lv) or not lv[0] < lv[1]:
            raise InvalidParameterError(
                f"The 'levels' parameter of RulebookPolicy.from_replays must be two increasing "
                f"quantile levels in [0, 1]. Got {levels!r} instead."
            )
        r, q = (max(float(x), ALERT_RISK) for x in np.quantile(_risk(replays), lv))
        book = cls(ALERT_RISK, r, q, streak)
        book.levels = lv
        return book

    def act(self, obs: np.ndarray) -> int:
        """The rule that matches first."""
        risk = obs[_RISK]
        if risk >= self.quarantine:
            return QUARANTINE
        if risk >= self.rate_limit:
            return RATE_LIMIT
        if risk >= self.alert:
            return QUARANTINE if obs[_STREAK] >= np.log1p(self.streak) else ALERT
        return IGNORE

    def describe(self) -> str:
        """The rules in words."""
        where = (
            f" (quantiles {' / '.join(f'{x:g}' for x in self.levels)} of training alerts' risk)" if self.levels else ""
        )
        return (
            f"quarantine at fused risk >= {self.quarantine:.3f}, rate-limit >= {self.rate_limit:.3f}, "
            f"alert >= {self.alert:.3f} escalated to quarantine after {self.streak} alerted windows in a row{where}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (:func:`baseline_from_dict` reads them back)."""
        return {
            "kind": "rulebook",
            "alert": self.alert,
            "rate_limit": self.rate_limit,
            "quarantine": self.quarantine,
            "streak": self.streak,
            "levels": list(self.levels) if self.levels else None,
        }


Baseline = StaticThresholdPolicy | RulebookPolicy


def baseline_from_dict(d: dict[str, Any]) -> Baseline:
    """A baseline from its ``to_dict`` form.

    Raises
    ------
    SchemaError
        When ``d`` is not the form of a known baseline.
    """
    try:
        if d.get("kind") == "static-threshold":
            return StaticThresholdPolicy(float(d["threshold"]), ACTIONS.index(str(d["action"])))
        if d.get("kind") == "rulebook":
            book = RulebookPolicy(float(d["alert"]), float(d["rate_limit"]), float(d["quarantine"]), int(d["streak"]))
            book.levels = tuple(float(x) for x in d["levels"]) if d.get("levels") else None
            return book
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # InvalidParameterError is a ValueError
        raise SchemaError(f"baseline {d!r}: {exc}") from None
    raise SchemaError(f"baseline {d!r}: unknown kind")


def training_baselines(replays: Sequence[Replay], costs: Costs | None = None, **env_kw: Any) -> dict[str, Baseline]:
    """The baselines fixed on training streams: ``static-tuned`` and ``rulebook`` (risk quantiles)."""
    return {
        "static-tuned": StaticThresholdPolicy.tuned(replays, costs, **env_kw),
        "rulebook": RulebookPolicy.from_replays(replays),
    }
