"""Applying a policy to stored alerts: decisions, explanations, the action log, undo, analyst feedback."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, NotFoundError
from misuse.response import actions
from misuse.response.env import ACTIONS, ALERT, IGNORE, OBS_FEATURES, ResponseEnv
from misuse.response.policy import BanditPolicy, Contribution, verdict_reward
from misuse.response.replay import Replay
from misuse.store.duck import Store

from .conftest import make_alerts


@pytest.fixture
def policy(train_replays: list[Replay]) -> BanditPolicy:
    return BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=2)


def test_apply_decides_explains_and_logs_every_alert(store: Store, policy: BanditPolicy) -> None:
    n_alerts = len(store.alerts())

    decisions = actions.apply(store, policy, "p")

    assert len(decisions) == n_alerts
    assert {d["alert_id"] for d in decisions} == set(store.alerts()["alert_id"])
    for d in decisions:
        assert d["action"] in ACTIONS
        assert all(c["feature"] in OBS_FEATURES and c["weight"] > 0 for c in d["because"])
    log = actions.logged(store)
    assert len(log) == n_alerts
    assert (log["status"] == np.where(log["action"] == "ignore", "no_action", "active")).all()
    assert json.loads(log["observation"].iloc[0])[OBS_FEATURES.index("risk")] == pytest.approx(log["risk"].iloc[0])


def test_apply_is_idempotent_and_dry_run_logs_nothing(store: Store, policy: BanditPolicy) -> None:
    dry = actions.apply(store, policy, "p", dry_run=True)
    assert len(actions.logged(store)) == 0

    first = actions.apply(store, policy, "p")
    again = actions.apply(store, policy, "p")

    assert [d["action"] for d in dry] == [d["action"] for d in first]
    assert again == []
    assert len(actions.logged(store)) == len(first)


def test_observations_follow_the_alert_context(store: Store) -> None:
    alerts = store.alerts()

    obs = actions.observations(store, alerts)

    col = {f: obs[:, i] for i, f in enumerate(OBS_FEATURES)}
    # alerts alternate cam/plug one minute apart: each entity's k-th alert has k earlier ones
    cam = (alerts["entity"] == "cam").to_numpy()
    assert np.expm1(col["age"][cam]).round().tolist() == [0, 1, 2]
    assert np.all(col["risk"] >= 0.5)  # every stored alert is at or above its threshold
    # the alert names 'peers' among its contributions, as a count; a replay holds its log1p
    assert col["peers"][cam] == pytest.approx(np.log1p([1.0, 3.0, 5.0]))
    assert np.all(np.isnan(col["events"]))  # ... and not 'events': left to the policy's typical value


def test_an_alert_whose_threshold_is_not_positive_has_no_score_ratio(tmp_path: Path, policy: BanditPolicy) -> None:
    # a profile warning: score in the rule's own units, threshold 0 (no scale to divide by)
    t = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    warning = Alert(
        entity="alice",
        window_start=t,
        window_end=t + timedelta(minutes=1),
        score=2.0,
        threshold=0.0,
        severity="low",
        misuse_type="inadvertent_misuse",
        detector="profile.inadvertent_misuse",
        summary="set_temp out of range",
        contributions=[{"feature": "distribution:set_temp:value", "typical": 21.0, "actual": 35.0, "weight": 1.0}],
    )
    s = Store(tmp_path / ".misuse")
    s.add_alerts([warning], dataset="d", model="profiles")
    ratio = OBS_FEATURES.index("score_ratio")

    obs = actions.observations(s, s.alerts())
    [decision] = actions.apply(s, policy, "p", dry_run=True)

    assert np.isnan(obs[0, ratio])  # missing, not log(2 / 1e-9) = 21.4
    assert all(c["feature"] != "score_ratio" for c in decision["because"])
    as_typical = obs[0].copy()
    as_typical[ratio] = policy.mean_[ratio]
    assert decision["action"] == ACTIONS[policy.act(as_typical)]


def test_undo_lifts_one_action_or_all_of_an_entity(store: Store, policy: BanditPolicy) -> None:
    decisions = [d for d in actions.apply(store, policy, "p") if d["action"] != "ignore"]
    first = decisions[0]

    assert actions.undo(store, first["action_id"]) == 1
    log = actions.logged(store).set_index("action_id")
    assert log.loc[first["action_id"], "status"] == "undone"
    assert log.loc[first["action_id"], "undone_at"] is not None
    with pytest.raises(NotFoundError, match=first["action_id"]):
        actions.undo(store, first["action_id"])

    left = sum(d["entity"] == "plug" for d in decisions)
    assert actions.undo(store, entity="plug") == left
    assert len(actions.logged(store, status="active")) == len(decisions) - 1 - left
    with pytest.raises(InvalidParameterError, match="exactly one"):
        actions.undo(store)


class _FirstIgnored(BanditPolicy):
    """Ignores an entity's first alert and alerts on the later ones."""

    def explain(self, obs: np.ndarray, top: int = 3) -> tuple[int, list[Contribution]]:
        return (IGNORE if obs[OBS_FEATURES.index("age")] == 0 else ALERT), []


def test_ignore_decisions_are_logged_as_no_action_and_never_undone(store: Store, policy: BanditPolicy) -> None:
    first_ignored = _FirstIgnored()
    first_ignored.__dict__.update(policy.__dict__)
    decisions = actions.apply(store, first_ignored, "p")
    ignored = [d for d in decisions if d["action"] == "ignore"]
    assert {d["entity"] for d in ignored} == {"cam", "plug"} and len(ignored) == 2

    log = actions.logged(store).set_index("action_id")
    assert (log.loc[[d["action_id"] for d in ignored], "status"] == "no_action").all()
    assert set(log.loc[log["action"] != "ignore", "status"]) == {"active"}
    assert len(actions.logged(store, status="no_action")) == 2

    assert actions.undo(store, entity="cam") == 2  # cam's two alerts, not its ignore
    with pytest.raises(InvalidParameterError, match=f"{ignored[0]['action_id']} is an 'ignore' decision"):
        actions.undo(store, ignored[0]["action_id"])
    log = actions.logged(store).set_index("action_id")
    assert (log.loc[[d["action_id"] for d in ignored], "status"] == "no_action").all()
    assert log.loc[[d["action_id"] for d in ignored], "undone_at"].isna().all()

    store.add_feedback(ignored[0]["alert_id"], "true_positive")  # a verdict on an ignore still teaches
    assert actions.learn_from_feedback(store, policy, "p") == 1


def test_ignore_rows_logged_as_active_earlier_become_no_action(store: Store) -> None:
    actions.ensure_table(store)
    store.con.execute(
        f"INSERT INTO {actions.TABLE} VALUES ('old', 'a', 'cam', 'ignore', 0.4, '[]', '[]', 'p', now(), "
        "'active', NULL, false)"
    )

    assert actions.logged(store)["status"].tolist() == ["no_action"]
    with pytest.raises(InvalidParameterError, match="nothing in force"):
        actions.undo(store, "old")


def test_feedback_updates_the_policy_once_per_verdict(store: Store, policy: BanditPolicy) -> None:
    decisions = actions.apply(store, policy, "p")
    log = actions.logged(store).set_index("alert_id")
    for d in decisions:
        store.add_feedback(d["alert_id"], "false_positive")
    x = np.array(json.loads(log.loc[decisions[0]["alert_id"], "observation"]), dtype=float)
    x = np.where(np.isfinite(x), x, policy.mean_)
    chosen = ACTIONS.index(decisions[0]["action"])
    before = policy.values(x).copy()
    counts = policy.n_.copy()

    learned = actions.learn_from_feedback(store, policy, "p")

    assert learned == len(decisions)
    assert policy.n_.sum() == counts.sum() + len(decisions)
    assert policy.values(x)[chosen] != pytest.approx(before[chosen])
    assert actions.learn_from_feedback(store, policy, "p") == 0
    assert actions.logged(store)["learned"].all()


def _quarantined_with_verdict(root: Path, verdict: str) -> Store:
    """A store whose every alert was quarantined by policy ``p`` and then judged ``verdict``."""
    s = Store(root)
    s.add_alerts(make_alerts(), dataset="d", model="m")
    rows = [
        [f"q{k}", a, "cam", "quarantine", 0.9, "[]", json.dumps(o.tolist()), "p"]
        for k, (a, o) in enumerate(zip(s.alerts()["alert_id"], actions.observations(s, s.alerts()), strict=True))
    ]
    s.con.executemany(
        f"INSERT INTO {actions.TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, now(), 'active', NULL, false)", rows
    )
    for alert_id in s.alerts()["alert_id"]:
        s.add_feedback(alert_id, "false_positive" if verdict == "true_positive" else "true_positive")
        s.add_feedback(alert_id, verdict)  # the latest verdict counts
    return s


def test_verdicts_on_quarantines_move_the_quarantine_value_their_way(policy: BanditPolicy, tmp_path: Path) -> None:
    quarantine = ACTIONS.index("quarantine")
    confirmed, refuted = copy.deepcopy(policy), copy.deepcopy(policy)
    tp_store = _quarantined_with_verdict(tmp_path / "tp", "true_positive")
    fp_store = _quarantined_with_verdict(tmp_path / "fp", "false_positive")
    x = actions.observations(tp_store, tp_store.alerts())
    x = np.where(np.isfinite(x), x, policy.mean_)

    assert actions.learn_from_feedback(tp_store, confirmed, "p") == len(x)
    assert actions.learn_from_feedback(fp_store, refuted, "p") == len(x)

    up = np.array([confirmed.values(o)[quarantine] for o in x])
    down = np.array([refuted.values(o)[quarantine] for o in x])
    assert np.all(up > down)
    # a confirmed quarantine costs only the review; a refuted one disrupts the device for the hold.
    # Six rank-one updates of one regression: closer on the whole, not at every point
    before = np.array([policy.values(o)[quarantine] for o in x])
    target = verdict_reward(quarantine, True, policy.costs, policy.hold)
    assert np.abs(up - target).mean() < np.abs(before - target).mean()
