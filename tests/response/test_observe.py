"""Stored alerts seen as in training: decided at the environment's decision points, history over the windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.events import Event, events_to_frame
from misuse.pipeline import WindowModel
from misuse.response import actions
from misuse.response.env import ACTIONS, ALERT, OBS_FEATURES, QUARANTINE, RAISE_THRESHOLD, ResponseEnv
from misuse.response.observe import FROM_ALERTS, FROM_WINDOWS, observe
from misuse.response.policy import BanditPolicy, Contribution
from misuse.response.replay import Replay, replay_from_events, synthetic_replay
from misuse.store.duck import Store
from misuse.workflows import detect_on_store, train_on_store

DAY = 86400.0
WINDOW = 300.0
COL = {f: i for i, f in enumerate(OBS_FEATURES)}


def _events(seed: int = 0) -> pd.DataFrame:
    """Four days of five devices talking MQTT to their broker; dev2 scans telnet on day 4."""
    rng = np.random.default_rng(seed)
    ev = [
        Event(
            ts=d * DAY + float(t),
            entity=f"dev{dev}",
            kind="flow",
            action="mqtt",
            peer="broker",
            num={"orig_bytes": float(rng.lognormal(5, 0.3)), "dst_port": 1883.0},
            cat={"conn_state": "SF"},
            label="benign",
        )
        for d in range(4)
        for dev in range(5)
        for t in np.sort(rng.uniform(0, DAY, 300))
    ]
    ev += [
        Event(
            ts=3.5 * DAY + i * 2.0,
            entity="dev2",
            kind="flow",
            action="telnet",
            peer=f"203.0.113.{i % 250}",
            num={"orig_bytes": 0.0, "dst_port": 23.0},
            cat={"conn_state": "S0"},
            label="botnet",
        )
        for i in range(600)
    ]
    return events_to_frame(ev)


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the events, a window model trained on days 1-3 and its alerts on day 4."""
    root = tmp_path_factory.mktemp("observe") / ".misuse"
    store = Store(root)
    store.write_events("site", [_events()], sources=["test"])
    day4 = str(pd.Timestamp(3 * DAY, unit="s", tz="UTC"))
    train_on_store(store, "site", "wm", window=WINDOW, until=day4, seed=1)
    alerts, _ = detect_on_store(store, "site", "wm", since=day4)
    assert any(a.entity == "dev2" for a in alerts)
    store.close()
    return root


def test_a_window_model_alert_is_observed_over_its_windows_as_in_training(detected: Path) -> None:
    store = Store(detected)
    alerts = store.alerts()
    model = WindowModel.load(store.model_dir("wm"))
    replay = replay_from_events("site", model, store.events("site"))
    env = ResponseEnv([replay])
    row = {(e, int(t)): i for i, (e, t) in enumerate(zip(replay.frame["entity"], replay.frame["t"], strict=True))}

    obs, sources = observe(store, alerts, window=WINDOW)

    assert set(sources) == {FROM_WINDOWS}
    starts = (alerts["window_start"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    for x, e, s in zip(obs, alerts["entity"], starts, strict=True):
        # no verdicts or actions yet on either side, so the whole observation is the environment's
        np.testing.assert_allclose(x, env.observation(row[(e, int(s // WINDOW))]))
    # the entity's earlier windows count, not only its earlier alerts
    first = alerts.groupby("entity").head(1).index
    assert (np.expm1(obs[first, COL["age"]]) > 100).all()
    assert (obs[first, COL["risk_ema"]] > 0.3).all()


def test_history_falls_back_to_the_alerts_with_the_training_formulas(store: Store) -> None:
    alerts = store.alerts()  # self-made alerts: no window model, no events in the store

    obs, sources = observe(store, alerts)

    assert set(sources) == {FROM_ALERTS}
    cam = obs[(alerts["entity"] == "cam").to_numpy()]
    r = cam[:, COL["risk"]]
    # the EMA of earlier windows as pandas' ewm(alpha=0.2) computes it in training: not 0.2 * risk
    assert cam[:, COL["risk_ema"]] == pytest.approx([0.0, r[0], (r[1] + 0.8 * r[0]) / 1.8])
    assert np.expm1(cam[:, COL["age"]]).round().tolist() == [0, 1, 2]


def test_apply_reports_where_each_history_came_from(detected: Path, store: Store) -> None:
    pol = BanditPolicy(seed=0).fit(ResponseEnv([synthetic_replay("t", seed=0)]), epochs=1)

    windows = actions.apply(Store(detected), pol, "p", window=WINDOW, dry_run=True)
    alerts_only = actions.apply(store, pol, "p", dry_run=True)

    assert {d["history"] for d in windows} == {FROM_WINDOWS}
    assert {d["history"] for d in alerts_only} == {FROM_ALERTS}


class _ByRisk(BanditPolicy):
    """Quarantines at or above ``high``, raises the threshold at or above ``mid``, else alerts."""

    def __init__(self, mid: float, high: float) -> None:
        super().__init__()
        self.mid, self.high = mid, high
        self.setting_ = {"hold": 10}

    def choose(self, obs: np.ndarray) -> int:
        risk = obs[COL["risk"]]
        return QUARANTINE if risk >= self.high else RAISE_THRESHOLD if risk >= self.mid else ALERT

    def explain(self, obs: np.ndarray, top: int = 3) -> tuple[int, list[Contribution]]:
        return self.choose(obs), []


def test_apply_decides_at_the_environments_decision_points(detected: Path) -> None:
    store = Store(detected)
    model = WindowModel.load(store.model_dir("wm"))
    frame = replay_from_events("site", model, store.events("site")).frame
    day4 = Replay("site", WINDOW, frame[frame["t"] >= 3 * DAY // WINDOW])  # the day the alerts were raised on
    risk = np.sort(day4.frame.loc[day4.frame["alerted"], "risk"].to_numpy())
    policy = _ByRisk(mid=risk[len(risk) // 3], high=risk[2 * len(risk) // 3])
    env = ResponseEnv([day4], hold=10)
    env.reset()
    in_env = []
    while env.current_row is not None:
        row = env.current_row
        in_env.append((str(env._ent[row]), int(env._t[row]), ACTIONS[policy.choose(env.observation(row))]))
        env.step(policy.choose(env.observation(row)))
    skipped: list[dict[str, object]] = []

    decided = actions.apply(store, policy, "by-risk", window=WINDOW, skipped=skipped)

    alerts = store.alerts().set_index("alert_id")
    starts = (alerts["window_start"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    in_apply = [(d["entity"], int(starts[d["alert_id"]] // WINDOW), d["action"]) for d in decided]
    assert in_apply == in_env
    assert {a for _e, _t, a in in_env} == {"alert", "raise_threshold", "quarantine"}
    assert len(skipped) == len(alerts) - len(decided) > 0  # held or muted alerts are not decided, as in training
