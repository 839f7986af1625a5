"""The response environment: gymnasium API, cost accounting, context features, bad parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from misuse.errors import InvalidParameterError, SchemaError
from misuse.response.env import (
    ACTIONS,
    ALERT,
    IGNORE,
    OBS_FEATURES,
    QUARANTINE,
    RAISE_THRESHOLD,
    Costs,
    ResponseEnv,
    context_columns,
    run_episode,
)
from misuse.response.replay import REPLAY_COLUMNS, WINDOW_FEATURES, Replay, synthetic_replay


def _tiny(rows: list[tuple[str, int, float, bool]]) -> Replay:
    frame = pd.DataFrame(
        [
            {
                "stream": "tiny",
                "entity": e,
                "t": t,
                "risk": r,
                "score_ratio": 0.0,
                "signals": 1,
                "malicious": m,
                "label": "botnet" if m else "benign",
                **dict.fromkeys(WINDOW_FEATURES, 0.0),
            }
            for e, t, r, m in rows
        ]
    )
    return Replay("tiny", 60.0, frame)


def test_passes_the_gymnasium_checker(train_replays: list[Replay]) -> None:
    env = ResponseEnv(train_replays)

    check_env(env, skip_render_check=True)

    assert env.action_space.n == len(ACTIONS)
    assert env.observation_space.shape == (len(OBS_FEATURES),)


def test_ignoring_everything_costs_every_attack_window(train_replays: list[Replay]) -> None:
    env = ResponseEnv(train_replays)
    costs = Costs()

    outs = [run_episode(env, lambda _o: IGNORE, k) for k in range(len(train_replays))]

    for o, r in zip(outs, train_replays, strict=True):
        assert o.missed == r.attack_windows
        assert o.total_cost == pytest.approx(r.attack_windows * costs.missed_attack)
        assert o.contained == 0 and o.false_alarms == 0


def test_quarantine_charges_its_hold_to_the_decision() -> None:
    # one entity: an alert at t=0, then 3 attack windows without an alert, then a benign one
    rows = [("cam", 0, 0.9, True), ("cam", 1, 0.1, True), ("cam", 2, 0.1, True), ("cam", 3, 0.1, False)]
    env = ResponseEnv([_tiny(rows)], hold=10)
    c = env.costs
    env.reset()

    _obs, reward, done, _t, info = env.step(QUARANTINE)

    assert done
    assert reward == pytest.approx(-(c.analyst + c.disruption))
    assert info["outcome"].contained == 3
    assert info["outcome"].disrupted == 1


def test_ignoring_is_charged_the_unseen_attack_windows_up_to_the_next_alert() -> None:
    # cam alerts at t=0 and t=3; t=1, 2 are attack windows without an alert; t=20 is beyond the hold
    rows = [("cam", 0, 0.9, True), ("cam", 1, 0.1, True), ("cam", 2, 0.1, True), ("cam", 3, 0.9, False)]
    rows += [("cam", 4, 0.1, True), ("cam", 20, 0.1, True)]
    env = ResponseEnv([_tiny(rows)], hold=10)
    c = env.costs
    env.reset()

    _o, r_first, _d, _t, _i = env.step(IGNORE)
    _o, r_second, done, _t, info = env.step(ALERT)

    # each decision is charged the attack windows before the entity's next alert, within the hold
    assert r_first == pytest.approx(-3 * c.missed_attack)
    assert r_second == pytest.approx(-(c.analyst + c.false_alarm + c.missed_attack))
    # t=20 no decision could reach: charged at the end; rewards and the total add up to the same cost
    assert done and info["outcome"].total_cost == pytest.approx(-(r_first + r_second) + c.missed_attack)
    assert info["outcome"].missed == 5


def test_decision_points_are_the_alerted_windows(train_replays: list[Replay]) -> None:
    env = ResponseEnv(train_replays)
    for k, r in enumerate(train_replays):
        env.reset(options={"replay": k})
        rows = []
        while env.current_row is not None:
            rows.append(env.current_row)
            env.step(ALERT)  # never holds or mutes: every alerted window comes up once

        assert rows == np.flatnonzero(r.frame["alerted"]).tolist()
        assert env.outcome.decisions == r.alerts


def test_raise_threshold_mutes_lower_alerts_of_the_entity() -> None:
    rows = [("cam", 0, 0.8, False), ("cam", 1, 0.6, True), ("cam", 2, 0.9, False), ("plug", 1, 0.7, False)]
    env = ResponseEnv([_tiny(rows)], hold=5)
    env.reset()

    _o, reward, _d, _t, _i = env.step(RAISE_THRESHOLD)

    # the 0.6 attack window of cam was muted and is a missed attack; 0.9 still comes up, as does plug
    assert reward == pytest.approx(-env.costs.missed_attack)
    seen = []
    while env.current_row is not None:
        seen.append(env.current_row)
        env.step(ALERT)
    assert sorted(env._ent[i] for i in seen) == ["cam", "plug"]


def test_context_columns_count_streaks_and_recent_alerts() -> None:
    rows = [("cam", t, r, False) for t, r in enumerate([0.9, 0.9, 0.9, 0.1, 0.9])]
    frame = context_columns(_tiny(rows).frame)

    assert np.expm1(frame["streak"]).round().tolist() == [0, 1, 2, 3, 0]
    assert np.expm1(frame["recent"]).round().tolist() == [0, 1, 2, 3, 3]
    assert np.expm1(frame["age"]).round().tolist() == [0, 1, 2, 3, 4]


def test_bad_parameters_fail_loudly(train_replays: list[Replay]) -> None:
    with pytest.raises(InvalidParameterError, match="hold"):
        ResponseEnv(train_replays, hold=0)
    with pytest.raises(InvalidParameterError, match="at least one replay"):
        ResponseEnv([])
    with pytest.raises(InvalidParameterError, match="'missed_attack' cost"):
        Costs(missed_attack=-1)
    env = ResponseEnv(train_replays)
    env.reset()
    with pytest.raises(InvalidParameterError, match="action must be in"):
        env.step(9)


def test_a_replay_missing_columns_is_a_schema_error() -> None:
    frame = synthetic_replay("x", seed=0).frame.drop(columns=["risk"])

    with pytest.raises(SchemaError, match="risk"):
        Replay("x", 60.0, frame)
    assert "risk" in REPLAY_COLUMNS
