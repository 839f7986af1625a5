"""The fixed baselines: a static threshold (default or tuned) and the rulebook (default or on training quantiles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from misuse.errors import InvalidParameterError, SchemaError
from misuse.response.baselines import (
    RULEBOOK_LEVELS,
    RulebookPolicy,
    StaticThresholdPolicy,
    baseline_from_dict,
    training_baselines,
)
from misuse.response.env import ACTIONS, ALERT, IGNORE, OBS_FEATURES, QUARANTINE, RATE_LIMIT, ResponseEnv
from misuse.response.policy import evaluate_policy
from misuse.response.replay import ALERT_RISK, Replay, synthetic_replay

RISK, STREAK = OBS_FEATURES.index("risk"), OBS_FEATURES.index("streak")


def _obs(risk: float, streak: int = 0) -> np.ndarray:
    x = np.zeros(len(OBS_FEATURES))
    x[RISK], x[STREAK] = risk, np.log1p(streak)
    return x


def _cost(act, replays: list[Replay]) -> float:  # type: ignore[no-untyped-def]
    return sum(o.total_cost for o in evaluate_policy(act, replays))


def test_default_baselines_follow_their_rules() -> None:
    static, book = StaticThresholdPolicy(), RulebookPolicy()

    assert static.act(_obs(0.6)) == ALERT == book.act(_obs(0.6))
    assert book.act(_obs(0.6, streak=3)) == QUARANTINE
    assert book.act(_obs(0.85)) == RATE_LIMIT
    assert book.act(_obs(0.96)) == QUARANTINE
    assert static.act(_obs(0.2)) == IGNORE == book.act(_obs(0.2))


def test_rulebook_rungs_are_quantiles_of_training_alerts_and_each_fires(train_replays: list[Replay]) -> None:
    alerted = np.concatenate([r.frame.loc[r.frame["alerted"], "risk"].to_numpy() for r in train_replays])

    book = RulebookPolicy.from_replays(train_replays)

    assert book.alert == ALERT_RISK
    assert (book.rate_limit, book.quarantine) == pytest.approx(np.quantile(alerted, RULEBOOK_LEVELS))
    assert {book.act(_obs(r)) for r in alerted} == {ALERT, RATE_LIMIT, QUARANTINE}
    share = np.mean([book.act(_obs(r)) == QUARANTINE for r in alerted])
    assert share == pytest.approx(1 - RULEBOOK_LEVELS[1], abs=0.02)


def _replay_with_risk(risk: np.ndarray) -> Replay:
    frame = synthetic_replay("narrow", seed=0, entities=1, windows=len(risk)).frame.drop(columns="alerted")
    return Replay("narrow", 60.0, frame.assign(risk=risk))


def test_a_narrow_risk_band_still_fires_every_rung() -> None:
    # fused risk between 0.38 and 0.59, as on the benchmark's streams: the default rungs 0.8 / 0.95 never fire
    risk = np.linspace(0.38, 0.59, 200)

    book = RulebookPolicy.from_replays([_replay_with_risk(risk)])

    assert {RulebookPolicy().act(_obs(r)) for r in risk} == {IGNORE, ALERT}
    assert {book.act(_obs(r)) for r in risk if r > ALERT_RISK} == {ALERT, RATE_LIMIT, QUARANTINE}


def test_rulebook_escalates_after_alerted_windows_in_a_row_only() -> None:
    # cam alerts at t=0..3 (risk 0.51, below the rate-limit rung); plug is seen every window but alerts only at t=3
    risk = {("cam", t): 0.51 for t in range(4)} | {("plug", t): 0.45 for t in range(3)} | {("plug", 3): 0.51}
    frame = synthetic_replay("s", seed=0, entities=1, windows=4).frame.drop(columns="alerted")
    rows = [
        frame.iloc[0].to_dict() | {"entity": e, "t": t, "risk": r, "malicious": False} for (e, t), r in risk.items()
    ]
    env = ResponseEnv([Replay("s", 60.0, pd.DataFrame(rows))])
    book = RulebookPolicy(alert=0.5, rate_limit=0.8, quarantine=0.95, streak=3)
    env.reset()

    decided = []
    while env.current_row is not None:
        row = env.current_row
        decided.append((env._ent[row], int(env._t[row]), ACTIONS[book.act(env.observation(row))]))
        env.step(book.act(env.observation(row)))

    # plug's three windows below the alert rung do not count towards its streak (they used to: a floor of 0.35)
    assert decided == [
        ("cam", 0, "alert"),
        ("cam", 1, "alert"),
        ("cam", 2, "alert"),
        ("cam", 3, "quarantine"),
        ("plug", 3, "alert"),
    ]


def test_baselines_round_trip_through_their_dicts(train_replays: list[Replay]) -> None:
    fixed = training_baselines(train_replays)

    back = {k: baseline_from_dict(b.to_dict()) for k, b in fixed.items()}

    x = np.array([_obs(r, s) for r in np.linspace(0, 1, 21) for s in (0, 3)])
    for k, b in fixed.items():
        assert type(back[k]) is type(b) and back[k].describe() == b.describe()
        assert [back[k].act(o) for o in x] == [b.act(o) for o in x]
    assert "quantiles 0.9 / 0.99 of training alerts' risk" in fixed["rulebook"].describe()


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "nope"},
        {"kind": "rulebook", "alert": 0.5},
        {"kind": "static-threshold", "threshold": 0.5, "action": "x"},
        [],
    ],
)
def test_a_damaged_baseline_is_a_schema_error(bad: object) -> None:
    with pytest.raises(SchemaError, match="baseline"):
        baseline_from_dict(bad)  # type: ignore[arg-type]


def test_tuned_threshold_is_no_worse_than_the_default_on_its_training_replays(train_replays: list[Replay]) -> None:
    tuned = StaticThresholdPolicy.tuned(train_replays, steps=10)

    assert tuned.action in (ALERT, RATE_LIMIT, QUARANTINE)
    assert _cost(tuned.act, train_replays) <= _cost(StaticThresholdPolicy().act, train_replays)


def test_bad_parameters_fail_loudly(train_replays: list[Replay]) -> None:
    with pytest.raises(InvalidParameterError, match="'action' parameter"):
        StaticThresholdPolicy(action=7)
    with pytest.raises(InvalidParameterError, match="alert <= rate_limit <= quarantine"):
        RulebookPolicy(alert=0.9, rate_limit=0.8)
    with pytest.raises(InvalidParameterError, match="'streak'"):
        RulebookPolicy(streak=0)
    with pytest.raises(InvalidParameterError, match="'levels'"):
        RulebookPolicy.from_replays(train_replays, levels=(0.9, 0.5))
    with pytest.raises(InvalidParameterError, match="at least one replay"):
        RulebookPolicy.from_replays([])
