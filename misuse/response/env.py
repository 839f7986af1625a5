"""A gymnasium environment for responding to alerts, built from replayed labelled streams.

One episode is one :class:`~misuse.response.replay.Replay`. A decision step is a window that
raised an alert (the replay's ``alerted`` column: the detector's score above its threshold, or
a rule alert), on an entity that is not already contained or muted: the points at which a
deployment decides, since a decision is taken when an alert arrives, and the points at which
``misuse policy apply`` decides on stored alerts. The observation describes the entity and the
alert context (:data:`OBS_FEATURES`), the action is one of :data:`ACTIONS`, and the reward is
minus the cost the decision causes, from the stated :class:`Costs`:

``ignore``
    nothing happens; an attack window is a missed attack.
``alert``
    an analyst reviews it (analyst time); on a benign window that is a false alarm, on an
    attack window the attack is detected but goes on until a person acts.
``rate_limit``
    the entity is throttled for ``hold`` windows: its attack windows are partly contained, its
    benign windows mildly disrupted; an analyst reviews the action.
``quarantine``
    the entity is cut off for ``hold`` windows: its attack windows are contained, its benign
    windows are disrupted (the costliest error); an analyst reviews the action.
``raise_threshold``
    ignore this window and mute the entity's alerts up to this risk for ``hold`` windows
    (threshold adjustment); muted attack windows are missed attacks.

Every window's cost is charged to exactly one decision, the one that could have prevented it:
a rate limit or quarantine is charged its whole hold; any other decision is charged its own
window and the entity's attack windows that follow it without an alert, up to the entity's next
decision or ``hold`` windows, whichever comes first (attacks a containing action would have
covered and that nothing else will see). So each step's reward is the whole cost of that
decision, ignoring an attacking entity costs the attack windows that go on unseen, and the
rewards of an episode sum to its cost except for attack windows no decision could reach (more
than ``hold`` windows after the entity's last decision, or on an entity that never alerts);
those are added to the episode's ``total_cost`` at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError
from misuse.response.replay import WINDOW_FEATURES, Replay

ACTIONS = ("ignore", "alert", "rate_limit", "quarantine", "raise_threshold")
IGNORE, ALERT, RATE_LIMIT, QUARANTINE, RAISE_THRESHOLD = range(len(ACTIONS))
CONTAINING = ("rate_limit", "quarantine")
CONTEXT_FEATURES = (
    "risk",
    "score_ratio",
    "signals",
    "risk_ema",
    "streak",
    "recent",
    "age",
    "fp_rate",
    "tp_rate",
    "contained_before",
)
OBS_FEATURES = (*CONTEXT_FEATURES, *WINDOW_FEATURES)
RECENT = 10


@dataclass(frozen=True)
class Costs:
    """The stated cost of each outcome (in analyst-hours, say; only ratios matter).

    Parameters
    ----------
    missed_attack:
        An attack window nobody detected or contained.
    detected_attack:
        An attack window that was alerted on but not contained (damage until a person acts).
    throttled_attack:
        An attack window of a rate-limited entity.
    false_alarm:
        An alert on a benign window (on top of the analyst's time).
    disruption:
        A benign window of a quarantined entity (a device people rely on is cut off).
    throttle_disruption:
        A benign window of a rate-limited entity.
    analyst:
        Analyst time for every alert or automated action to review.
    """

    missed_attack: float = 10.0
    detected_attack: float = 4.0
    throttled_attack: float = 3.0
    false_alarm: float = 1.0
    disruption: float = 2.0
    throttle_disruption: float = 0.5
    analyst: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise InvalidParameterError(f"The {name!r} cost must be a finite number >= 0. Got {value!r} instead.")

    def window_cost(self, action: int, malicious: bool) -> float:
        """The cost of one window under an action (without the analyst's review time)."""
        if action == QUARANTINE:
            return 0.0 if malicious else self.disruption
        if action == RATE_LIMIT:
            return self.throttled_attack if malicious else self.throttle_disruption
        if action == ALERT:
            return self.detected_attack if malicious else self.false_alarm
        return self.missed_attack if malicious else 0.0


@dataclass
class Outcome:
    """What a policy did on one replay, and what it cost."""

    stream: str
    total_cost: float = 0.0
    decisions: int = 0
    attack_windows: int = 0
    contained: int = 0
    detected: int = 0
    missed: int = 0
    false_alarms: int = 0
    disrupted: int = 0
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def context_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The policy-independent context of every window: risk EMA, streak, recent alerts, age.

    ``streak`` counts the entity's alerted windows in a row just before this one, ``recent`` its
    alerted windows among the last :data:`RECENT` (``frame["alerted"]``; a frame without that
    column counts every row, as when it holds alerted windows only), both as log1p.
    """
    out = frame.copy()
    g = out.groupby("entity", sort=False)
    out["risk_ema"] = g["risk"].transform(lambda s: s.ewm(alpha=0.2).mean().shift(1)).fillna(0.0)
    hot = out["alerted"].astype(int) if "alerted" in out.columns else pd.Series(1, index=out.index)
    prev_t = g["t"].shift(1)
    contiguous = (out["t"] - prev_t == 1) & (hot.groupby(out["entity"]).shift(1) == 1)
    streak = np.zeros(len(out))
    last: dict[str, int] = {}
    for i, (e, c, h) in enumerate(zip(out["entity"], contiguous, hot, strict=True)):
        streak[i] = last.get(e, 0) if c else 0
        last[e] = int(streak[i]) + 1 if h else 0
    out["streak"] = np.log1p(streak)
    recent = np.zeros(len(out))
    for _e, idx in g.indices.items():
        ts = out["t"].to_numpy()[idx]
        cum = np.concatenate([[0], np.cumsum(hot.to_numpy()[idx])])
        lo = np.searchsorted(ts, ts - RECENT, side="left")
        recent[idx] = cum[np.arange(len(idx))] - cum[lo]
    out["recent"] = np.log1p(recent)
    out["age"] = np.log1p(g.cumcount())
    return out


class ResponseEnv(gym.Env):
    """Decide per alerted window: ignore, alert, rate-limit, quarantine or raise the threshold.

    Parameters
    ----------
    replays:
        The streams; each ``reset`` takes the next one in turn (or ``options={"replay": i}``).
    costs:
        The stated costs the rewards come from.
    hold:
        Windows a rate limit, quarantine or raised threshold lasts.

    Examples
    --------
    >>> from misuse.response.replay import synthetic_replay
    >>> env = ResponseEnv([synthetic_replay("toy", seed=0)])
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape == (len(OBS_FEATURES),)
    True
    """

    def __init__(self, replays: Sequence[Replay], costs: Costs | None = None, hold: int = 10) -> None:
        if not replays:
            raise InvalidParameterError("ResponseEnv needs at least one replay")
        if hold < 1:
            raise InvalidParameterError(f"The 'hold' parameter of ResponseEnv must be >= 1. Got {hold!r} instead.")
        self.metadata = {"render_modes": []}
        self.replays = list(replays)
        self.costs = costs or Costs()
        self.hold = int(hold)
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(OBS_FEATURES),), dtype=np.float64)
        self._frames = [context_columns(r.frame) for r in self.replays]
        self._next = 0
        self._reset_state(0)

    # ----- state ---------------------------------------------------------------------------
    def _reset_state(self, k: int) -> None:
        self._k = k
        f = self._frames[k]
        self._f = f
        self._ent = f["entity"].to_numpy(dtype=object)
        self._t = f["t"].to_numpy(dtype=np.int64)
        self._risk = f["risk"].to_numpy(dtype=float)
        self._mal = f["malicious"].to_numpy(dtype=bool)
        self._alerted = f["alerted"].to_numpy(dtype=bool)
        self._ctx = f[["risk", "score_ratio", "signals", "risk_ema", "streak", "recent", "age"]].to_numpy(float)
        self._win = f[list(WINDOW_FEATURES)].to_numpy(float)
        self._cand = np.flatnonzero(self._alerted)
        self._pos = 0
        self._covered = np.zeros(len(f), dtype=bool)
        self._by_entity = {e: np.asarray(ix) for e, ix in f.groupby("entity", sort=False).indices.items()}
        self._held_until: dict[str, int] = {}
        self._muted: dict[str, tuple[int, float]] = {}
        self._verdicts: dict[str, list[int]] = {}
        self._contained_before: set[str] = set()
        self.outcome = Outcome(self.replays[k].name, attack_windows=self.replays[k].attack_windows)
        self._advance()

    def _skipped(self, i: int) -> bool:
        e, t = self._ent[i], int(self._t[i])
        if self._covered[i] or self._held_until.get(e, -1) > t:
            return True
        until, level = self._muted.get(e, (-1, 0.0))
        return t < until and self._risk[i] <= level

    def _advance(self) -> None:
        while self._pos < len(self._cand) and self._skipped(int(self._cand[self._pos])):
            self._pos += 1

    def observation(self, i: int) -> np.ndarray:
        """The observation of window row ``i`` of the current replay (see :data:`OBS_FEATURES`)."""
        e = self._ent[i]
        tp, fp = self._verdicts.get(e, [0, 0])
        extra = [(fp + 1.0) / (tp + fp + 2.0), (tp + 1.0) / (tp + fp + 2.0), float(e in self._contained_before)]
        return np.concatenate([self._ctx[i], extra, self._win[i]])

    @property
    def current_row(self) -> int | None:
        """Row of the replay the next decision is about (None when the episode is over)."""
        return int(self._cand[self._pos]) if self._pos < len(self._cand) else None

    # ----- gymnasium -----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start ``options["replay"]``, else a replay drawn by ``seed``, else the next one in turn."""
        super().reset(seed=seed)
        if options and "replay" in options:
            k = int(options["replay"])
        elif seed is not None:
            k = int(self.np_random.integers(len(self.replays)))
        else:
            k = self._next
        if not 0 <= k < len(self.replays):
            raise InvalidParameterError(f"ResponseEnv.reset: replay index {k} out of range [0, {len(self.replays)})")
        self._next = (k + 1) % len(self.replays)
        self._reset_state(k)
        row = self.current_row
        obs = self.observation(row) if row is not None else np.zeros(len(OBS_FEATURES))
        return obs, {"stream": self.replays[k].name, "row": row}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` to the current alert; the reward is minus the cost it causes."""
        a = int(action)
        if not 0 <= a < len(ACTIONS):
            raise InvalidParameterError(f"ResponseEnv.step: action must be in [0, {len(ACTIONS)}), got {action!r}")
        row = self.current_row
        if row is None:
            return np.zeros(len(OBS_FEATURES)), 0.0, True, False, {"outcome": self.outcome}
        cost = self._apply(row, a)
        self.outcome.total_cost += cost
        self.outcome.decisions += 1
        self.outcome.actions[ACTIONS[a]] += 1
        self._pos += 1
        self._advance()
        nxt = self.current_row
        done = nxt is None
        if done:
            self._finish()
        obs = self.observation(nxt) if nxt is not None else np.zeros(len(OBS_FEATURES))
        return obs, -cost, done, False, {"outcome": self.outcome, "cost": cost, "row": row}

    def _apply(self, i: int, a: int) -> float:
        c, o = self.costs, self.outcome
        e, t, mal = self._ent[i], int(self._t[i]), bool(self._mal[i])
        ix = self._by_entity[e]
        ts = self._t[ix]
        if a in (RATE_LIMIT, QUARANTINE):
            span = ix[(ts >= t) & (ts < t + self.hold) & ~self._covered[ix]]
            self._held_until[e] = t + self.hold
            self._contained_before.add(e)
        elif a == RAISE_THRESHOLD:
            risk = self._risk[ix]
            later = (ts > t) & (ts < t + self.hold) & ~self._covered[ix] & self._alerted[ix]
            span = np.concatenate([[i], ix[later & (risk <= self._risk[i])]])
            self._muted[e] = (t + self.hold, float(self._risk[i]))
        else:
            span = np.array([i])
        self._covered[span] = True
        unseen = self._unseen_after(ix, ts, t) if a not in (RATE_LIMIT, QUARANTINE) else ix[:0]
        self._covered[unseen] = True
        cost = c.analyst if a in (ALERT, RATE_LIMIT, QUARANTINE) else 0.0
        window_action = IGNORE if a == RAISE_THRESHOLD else a
        n_mal = int(self._mal[span].sum())
        n_ben = len(span) - n_mal
        cost += n_mal * c.window_cost(window_action, True) + n_ben * c.window_cost(window_action, False)
        o.contained += n_mal * (window_action in (RATE_LIMIT, QUARANTINE))
        o.detected += n_mal * (window_action == ALERT)
        o.missed += n_mal * (window_action == IGNORE)
        o.false_alarms += n_ben * (window_action == ALERT)
        o.disrupted += n_ben * (window_action in (RATE_LIMIT, QUARANTINE))
        cost += len(unseen) * c.missed_attack
        o.missed += len(unseen)
        if a in (ALERT, RATE_LIMIT, QUARANTINE):
            v = self._verdicts.setdefault(e, [0, 0])
            v[0 if mal else 1] += 1
        return cost

    def _unseen_after(self, ix: np.ndarray, ts: np.ndarray, t: int) -> np.ndarray:
        """The entity's attack windows after ``t`` that come before its next decision and within ``hold``."""
        later = ix[(ts > t) & (ts < t + self.hold) & ~self._covered[ix]]
        nxt = np.flatnonzero(self._alerted[later])
        if len(nxt):
            later = later[: nxt[0]]
        return later[self._mal[later]]

    def _finish(self) -> None:
        """Charge the attack windows no decision could reach (see the module's docstring)."""
        rest = ~self._covered & self._mal
        n = int(rest.sum())
        self.outcome.missed += n
        self.outcome.total_cost += n * self.costs.missed_attack
        self._covered[:] = True


def run_episode(env: ResponseEnv, act: Callable[[np.ndarray], int], replay: int) -> Outcome:
    """Run one replay to its end with ``act`` choosing every action; returns the outcome."""
    obs, _ = env.reset(options={"replay": replay})
    if env.current_row is None:
        env._finish()
        return env.outcome
    done = False
    while not done:
        obs, _r, done, _trunc, _info = env.step(act(obs))
    return env.outcome
