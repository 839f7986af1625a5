"""The learned bandit policy: training, acting, explaining, saving, updating."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from misuse.errors import NotFittedError, SchemaError
from misuse.response.baselines import RulebookPolicy, StaticThresholdPolicy
from misuse.response.env import ACTIONS, OBS_FEATURES, QUARANTINE, Costs, ResponseEnv
from misuse.response.policy import BanditPolicy, evaluate_policy, verdict_reward
from misuse.response.replay import Replay


def _cost(act, replays: list[Replay]) -> float:  # type: ignore[no-untyped-def]
    return sum(o.total_cost for o in evaluate_policy(act, replays))


def test_bandit_beats_both_baselines_on_held_out_replays(
    train_replays: list[Replay], held_replays: list[Replay]
) -> None:
    pol = BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=4)

    learned = _cost(pol.act, held_replays)

    assert learned < _cost(StaticThresholdPolicy().act, held_replays)
    assert learned < _cost(RulebookPolicy().act, held_replays)


def test_learning_curve_is_recorded_per_epoch(train_replays: list[Replay]) -> None:
    pol = BanditPolicy(seed=1).fit(
        ResponseEnv(train_replays), epochs=3, evaluate=lambda p, e: {"cost": _cost(p.act, train_replays), "e": e}
    )

    assert [h["epoch"] for h in pol.history_] == [1, 2, 3]
    assert all(np.isfinite(h["cost"]) for h in pol.history_)


def test_same_seed_same_policy_and_save_load_round_trip(train_replays: list[Replay], tmp_path: Path) -> None:
    a = BanditPolicy(seed=3).fit(ResponseEnv(train_replays), epochs=2)
    b = BanditPolicy(seed=3).fit(ResponseEnv(train_replays), epochs=2)
    a.save(tmp_path / "p")

    c = BanditPolicy.load(tmp_path / "p")

    np.testing.assert_allclose(a.weights_, b.weights_)
    rng = np.random.default_rng(0)
    for x in rng.normal(size=(20, len(OBS_FEATURES))):
        assert a.act(x) == c.act(x)
    assert not list(tmp_path.glob("p/*.pkl"))


def test_load_refuses_other_features(train_replays: list[Replay], tmp_path: Path) -> None:
    BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=1).save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "policy.json").read_text())
    meta["features"] = ["risk"]
    (tmp_path / "p" / "policy.json").write_text(json.dumps(meta))

    with pytest.raises(SchemaError, match="other features"):
        BanditPolicy.load(tmp_path / "p")
    with pytest.raises(SchemaError, match="not a saved policy"):
        BanditPolicy.load(tmp_path / "nothing")


def test_a_replay_without_score_ratio_trains_and_is_never_cited(train_replays: list[Replay]) -> None:
    ratio = OBS_FEATURES.index("score_ratio")
    for r in train_replays:
        r.frame["score_ratio"] = np.nan  # e.g. a detector whose threshold is 0

    pol = BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=1)
    obs, _ = ResponseEnv(train_replays).reset()
    _action, because = pol.explain(obs)

    assert np.isfinite(pol.weights_).all() and np.isfinite(pol.mean_).all()
    assert (pol.mean_[ratio], pol.scale_[ratio]) == (0.0, 1.0)
    assert all(c.feature != "score_ratio" for c in because)


def _object_array_npz(path: Path) -> None:
    with np.load(path) as z:
        arrays = dict(z)
    arrays["A"] = np.array([{"a": 1}], dtype=object)  # pickled data: must never be loaded
    np.savez(path, **arrays)


def _wrong_shape_npz(path: Path) -> None:
    with np.load(path) as z:
        arrays = dict(z)
    arrays["b"] = arrays["b"][:, :3]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: (p / "policy.json").write_text("{not json"), r"policy\.json: not a readable JSON"),
        (lambda p: (p / "policy.json").write_text("[1, 2]"), r"policy\.json: expected a JSON object, got list"),
        (
            lambda p: (p / "policy.json").write_text(
                json.dumps({**json.loads((p / "policy.json").read_text()), "ridge": "x"})
            ),
            r"policy\.json: bad value",
        ),
        (lambda p: (p / "policy.npz").write_bytes(b"garbage"), r"policy\.npz: not an npz archive"),
        (lambda p: (p / "policy.npz").unlink(), r"policy\.npz: missing"),
        (lambda p: _object_array_npz(p / "policy.npz"), r"policy\.npz: array 'A' is not plain numeric data"),
        (lambda p: _wrong_shape_npz(p / "policy.npz"), r"policy\.npz: array 'b' is float64 \(5, 3\)"),
    ],
    ids=["json-garbled", "json-not-object", "json-bad-value", "npz-garbled", "npz-missing", "npz-pickle", "npz-shape"],
)
def test_load_names_the_damaged_file_and_the_problem(
    train_replays: list[Replay], tmp_path: Path, damage: Callable[[Path], object], problem: str
) -> None:
    folder = BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=1).save(tmp_path / "p")
    damage(folder)

    with pytest.raises(SchemaError, match=problem) as err:
        BanditPolicy.load(folder)

    assert str(folder) in str(err.value)
    assert "unsafe" not in str(err.value) and "allow_pickle" not in str(err.value)


def test_unfitted_policy_refuses_to_act() -> None:
    with pytest.raises(NotFittedError):
        BanditPolicy().act(np.zeros(len(OBS_FEATURES)))


def test_updates_move_the_chosen_action(train_replays: list[Replay]) -> None:
    pol = BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=1)
    x = np.full(len(OBS_FEATURES), 0.5)
    before = pol.values(x)[QUARANTINE]

    for _ in range(50):
        pol.update(x, QUARANTINE, -100.0)

    assert pol.values(x)[QUARANTINE] < before


def test_explain_names_features_that_favour_the_choice(train_replays: list[Replay]) -> None:
    pol = BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=2)
    env = ResponseEnv(train_replays)
    obs, _ = env.reset()

    action, because = pol.explain(obs)

    assert action == pol.act(obs)
    assert all(c.feature in OBS_FEATURES and c.weight > 0 for c in because)
    assert [c.weight for c in because] == sorted((c.weight for c in because), reverse=True)


@pytest.mark.parametrize("action", range(len(ACTIONS)))
def test_verdict_rewards_follow_the_costs(action: int) -> None:
    c = Costs()

    tp, fp = verdict_reward(action, True, c), verdict_reward(action, False, c)

    if ACTIONS[action] in ("ignore", "raise_threshold"):
        assert (tp, fp) == (-c.missed_attack, 0.0)
    else:
        assert tp <= -c.analyst and fp <= -c.analyst
