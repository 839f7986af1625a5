"""The fixed baselines: a static threshold (default or tuned) and the rulebook (default or on training quantiles)."""

from __future__ import annotations

import numpy as np
import pytest

from misuse.errors import InvalidParameterError, SchemaError
from misuse.response.baselines import (
    RULEBOOK_LEVELS,
    RulebookPolicy,
    StaticThresholdPolicy,
    baseline_from_dict,
    training_baselines,
)
from misuse.response.env import ALERT, IGNORE, OBS_FEATURES, QUARANTINE, RATE_LIMIT
from misuse.response.policy import evaluate_policy
from misuse.response.replay import Replay, synthetic_replay

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


def test_rulebook_rungs_are_training_risk_quantiles_and_each_fires(train_replays: list[Replay]) -> None:
    risk = np.concatenate([r.frame["risk"].to_numpy() for r in train_replays])

    book = RulebookPolicy.from_replays(train_replays)

    assert (book.alert, book.rate_limit, book.quarantine) == pytest.approx(np.quantile(risk, RULEBOOK_LEVELS))
    decided = {book.act(_obs(r)) for r in risk}
    assert decided == {IGNORE, ALERT, RATE_LIMIT, QUARANTINE}
    share = np.mean([book.act(_obs(r)) != IGNORE for r in risk])
    assert share == pytest.approx(1 - RULEBOOK_LEVELS[0], abs=0.01)


def _replay_with_risk(risk: np.ndarray) -> Replay:
    r = synthetic_replay("narrow", seed=0, entities=1, windows=len(risk))
    r.frame["risk"] = risk
    return r


def test_a_narrow_risk_band_still_fires_every_rung() -> None:
    # fused risk between 0.38 and 0.59, as on the benchmark's streams: the default rungs 0.8 / 0.95 never fire
    risk = np.linspace(0.38, 0.59, 200)

    book = RulebookPolicy.from_replays([_replay_with_risk(risk)])

    assert {RulebookPolicy().act(_obs(r)) for r in risk} == {IGNORE, ALERT}
    assert {book.act(_obs(r)) for r in risk} == {IGNORE, ALERT, RATE_LIMIT, QUARANTINE}


def test_baselines_round_trip_through_their_dicts(train_replays: list[Replay]) -> None:
    fixed = training_baselines(train_replays)

    back = {k: baseline_from_dict(b.to_dict()) for k, b in fixed.items()}

    x = np.array([_obs(r, s) for r in np.linspace(0, 1, 21) for s in (0, 3)])
    for k, b in fixed.items():
        assert type(back[k]) is type(b) and back[k].describe() == b.describe()
        assert [back[k].act(o) for o in x] == [b.act(o) for o in x]
    assert "training risk quantiles 0.9 / 0.95 / 0.99" in fixed["rulebook"].describe()


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
        RulebookPolicy.from_replays(train_replays, levels=(0.9, 0.5, 0.99))
    with pytest.raises(InvalidParameterError, match="at least one replay"):
        RulebookPolicy.from_replays([])
