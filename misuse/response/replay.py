"""Replays: labelled event streams turned into per-entity window risk, in time order.

A replay is a frame with one row per (entity, window) of a stream: the window's fused risk
(:func:`misuse.rules.fusion.fuse` over the window detector's signal and any rule alerts), the
detector score relative to its threshold, a few window features, and whether the window holds
attack events (``malicious``; ground truth, never shown to a policy), and whether the window
raised an alert (``alerted``: the window detector's score above its threshold, or a rule alert
fused in). The response environment (:mod:`misuse.response.env`) decides at the alerted windows,
as a deployment decides when an alert arrives; the benchmark builds replays from IoT-23 34-1
flows, MQTTset captures and the simulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, SchemaError
from misuse.events import is_malicious_label
from misuse.pipeline import WindowModel, score_windows, train
from misuse.rules.fusion import fuse

#: Window features copied into a replay (0 when a stream lacks one).
WINDOW_FEATURES = ("events", "peers", "dst_ports", "failed_frac", "login_failures", "new_peer_frac", "top_action_frac")
REPLAY_COLUMNS = ("stream", "entity", "t", "risk", "score_ratio", "signals", "malicious", "label", *WINDOW_FEATURES)
#: Fused risk of a window whose detector score equals its threshold (``fusion.detector_probability``).
ALERT_RISK = 0.5


def score_ratio(score: ArrayLike, threshold: ArrayLike) -> np.ndarray:
    """``log(score / threshold)``: how far a detector score lies above (> 0) or below (< 0) its threshold.

    Defined only where both the score and the threshold are positive: a ratio needs a scale,
    and a threshold at or below 0 (a profile warning's rule bound, say) has none. Elsewhere the
    value is missing (NaN), which :class:`~misuse.response.policy.BanditPolicy` treats as
    typical and never cites in an explanation, instead of the -20 or +20 a tiny floor under
    the division would give.

    >>> score_ratio([2.0, 1.0, 2.0, -1.0], [1.0, 1.0, 0.0, 1.0]).round(3).tolist()
    [0.693, 0.0, nan, nan]
    """
    s = np.asarray(score, dtype=float)
    th = np.asarray(threshold, dtype=float)
    ok = (s > 0) & (th > 0)
    return np.where(ok, np.log(np.where(ok, s, 1.0) / np.where(ok, th, 1.0)), np.nan)


@dataclass
class Replay:
    """One labelled stream as time-ordered window rows (see :data:`REPLAY_COLUMNS`).

    A frame without an ``alerted`` column gets one: fused risk above :data:`ALERT_RISK` (the
    detector's score above its threshold) or more than one fused signal (a rule alert).
    """

    name: str
    window: float
    frame: pd.DataFrame

    def __post_init__(self) -> None:
        missing = set(REPLAY_COLUMNS) - set(self.frame.columns)
        if missing:
            raise SchemaError(f"replay {self.name!r}: missing columns {sorted(missing)}")
        if "alerted" not in self.frame.columns:
            self.frame = self.frame.assign(alerted=(self.frame["risk"] > ALERT_RISK) | (self.frame["signals"] > 1))
        self.frame["alerted"] = self.frame["alerted"].astype(bool)
        self.frame = self.frame.sort_values(["t", "entity"], kind="stable").reset_index(drop=True)

    @property
    def attack_windows(self) -> int:
        """Number of windows that hold attack events."""
        return int(self.frame["malicious"].sum())

    @property
    def alerts(self) -> int:
        """Number of windows that raised an alert (the decision points of the environment)."""
        return int(self.frame["alerted"].sum())


def replay_from_scored(
    name: str, scored: pd.DataFrame, threshold: float, window: float, extra_alerts: Iterable[Alert] = ()
) -> Replay:
    """A replay from scored windows (``pipeline.score_windows`` output) and optional rule alerts.

    Each window's detector score is one signal with the fusion module's detector probability
    (0.5 at the threshold); rule alerts on the same entity and window add their confidence by
    noisy-OR, exactly as :func:`~misuse.rules.fusion.fuse` combines them. A window is
    ``alerted`` where the detector raised an alarm (``scored["alarm"]``, else score above the
    threshold) or a rule alert fell in it: the windows a deployment would store alerts for.
    """
    if len(scored) == 0:
        raise SchemaError(f"replay {name!r}: no scored windows")
    starts = pd.to_datetime(scored["window_start"], utc=True)
    alerts = [
        Alert(
            entity=str(e),
            window_start=s.to_pydatetime(),
            window_end=s.to_pydatetime(),
            score=float(sc),
            threshold=float(threshold),
            severity="low",
            misuse_type="anomaly",
            detector="window",
            summary="window score",
            alert_id=f"w{i}",
        )
        for i, (e, s, sc) in enumerate(zip(scored["entity"], starts, scored["score"], strict=True))
    ]
    risks = fuse([*alerts, *extra_alerts], window=window)
    by_key = {(r.entity, int(r.window_start.timestamp() // window)): r for r in risks}
    seconds = ((starts - pd.Timestamp(0, tz=UTC)) / pd.Timedelta(seconds=1)).to_numpy(float)
    t = np.floor(seconds / window).astype(np.int64)  # the fusion window of each row, as fuse() counts it
    rows = [by_key[(str(e), int(ti))] for e, ti in zip(scored["entity"], t, strict=True)]
    score = scored["score"].to_numpy(float)
    alarm = scored["alarm"].to_numpy(bool) if "alarm" in scored.columns else score > threshold
    frame = pd.DataFrame(
        {
            "stream": name,
            "entity": scored["entity"].astype(str).to_numpy(),
            "t": t.astype(np.int64),
            "risk": [r.risk for r in rows],
            "score_ratio": score_ratio(score, threshold),
            "signals": [len(r.contributions) for r in rows],
            "malicious": scored["label"].map(is_malicious_label).to_numpy(bool),
            "alerted": (alarm | np.array([len(r.contributions) > 1 for r in rows])).astype(bool),
            "label": scored["label"].fillna("benign").astype(str).to_numpy(),
        }
    )
    for f in WINDOW_FEATURES:
        frame[f] = scored[f].to_numpy(float) if f in scored.columns else 0.0
    frame[list(WINDOW_FEATURES)] = frame[list(WINDOW_FEATURES)].fillna(0.0)
    return Replay(name, window, frame)


def replay_from_events(
    name: str, model: WindowModel, events: pd.DataFrame, extra_alerts: Iterable[Alert] = ()
) -> Replay:
    """Score ``events`` with a trained window model and build their replay."""
    scored = score_windows(model, events)
    return replay_from_scored(name, scored, model.threshold.threshold_, model.window, extra_alerts)


# ----- the streams of the benchmark ------------------------------------------------------------
def simulated_replay(seed: int, *, scale: float = 0.3, days: int = 3, window: float = 300.0) -> Replay:
    """A simulated site: the window model learns the clean days, the replay is the attack day."""
    from misuse.simulate import simulate_site

    site = simulate_site(seed=seed, days=days, scale=scale)
    events = site.events()
    lo, _hi = site.day_bounds(site.params.attack_day)
    model = train(events[events["ts"] < lo], window=window, seed=seed, benign_only=True)
    return replay_from_events(f"sim-{seed}", model, events[events["ts"] >= lo])


def iot23_replays(root: Path, window: float = 60.0, seed: int = 0) -> tuple[Replay, Replay]:
    """IoT-23 34-1: (policy-training replay, held-out replay).

    The window model learns the benign honeypot captures 4-1 and 5-1 and the 34-1 flows before
    its first malicious flow. The flows from the infection on are split in time at their middle:
    the first half trains policies, the second half is held out.
    """
    from misuse.ingest.zeek import ZeekReader

    base = root / "iot23"
    reader = ZeekReader()
    honey = [
        reader.read(base / c / "bro" / "conn.log.labeled")
        for c in ("CTU-Honeypot-Capture-4-1", "CTU-Honeypot-Capture-5-1")
    ]
    mal = reader.read(base / "CTU-IoT-Malware-Capture-34-1" / "bro" / "conn.log.labeled")
    t_inf = mal.loc[mal["label"].map(is_malicious_label), "ts"].min()
    model = train(pd.concat([*honey, mal[mal["ts"] < t_inf]], ignore_index=True), window=window, seed=seed)
    post = mal[mal["ts"] >= t_inf]
    mid = post["ts"].min() + (post["ts"].max() - post["ts"].min()) / 2
    return (
        replay_from_events("iot23-34-1/first-half", model, post[post["ts"] < mid]),
        replay_from_events("iot23-34-1/second-half", model, post[post["ts"] >= mid]),
    )


MQTT_ATTACKS = ("bruteforce", "flood", "malariados", "malformed", "slowite")


def _mqtt_part(path: Path, label: str, start: pd.Timestamp) -> pd.DataFrame:
    from misuse.ingest.pcap import PcapReader

    ev = PcapReader().read(path)
    ev["ts"] = ev["ts"] - ev["ts"].min() + start
    broker = ev.get("num.src_port", pd.Series(np.nan, index=ev.index)) == 1883
    ev["label"] = np.where(broker | (label == "benign"), "benign", label)
    return ev


def mqttset_replay(root: Path, split: str, window: float = 10.0, seed: int = 0) -> Replay:
    """MQTTset ``train`` or ``test`` captures as one stream: benign, then each attack.

    The window model learns ``benign-5mb-train``; the replay is ``benign/benign-<split>`` then
    each attack's ``<attack>-<split>`` capture, each shifted to start one window after the
    previous one ends. Packets from the broker (source port 1883) count as benign.
    """
    base = root / "mqttset"
    t0 = pd.Timestamp("2020-06-01", tz=UTC)
    train_ev = _mqtt_part(base / "benign-5mb" / "benign-5mb-train.pcap", "benign", t0)
    model = train(train_ev, window=window, seed=seed)
    parts, start = [], t0 + pd.Timedelta(days=1)
    for label in ("benign", *MQTT_ATTACKS):
        ext = "pcapng" if label == "bruteforce" else "pcap"
        ev = _mqtt_part(base / label / f"{label}-{split}.{ext}", label, start)
        parts.append(ev)
        start = ev["ts"].max() + pd.Timedelta(seconds=window)
    return replay_from_events(f"mqttset/{split}", model, pd.concat(parts, ignore_index=True))


def synthetic_replay(
    name: str, seed: int, *, entities: int = 6, windows: int = 120, attack_entities: Sequence[int] = (0,)
) -> Replay:
    """A small random replay for tests: attack entities get high-risk runs, others noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(entities):
        start = int(rng.integers(windows // 4, windows // 2))
        for t in range(windows):
            attack = e in attack_entities and start <= t < start + windows // 4
            risk = float(np.clip(rng.beta(6, 3) if attack else rng.beta(2, 5 + e), 0, 0.999))
            rows.append(
                {
                    "stream": name,
                    "entity": f"dev{e}",
                    "t": t,
                    "risk": risk,
                    "score_ratio": float(np.log(risk / (1 - risk))),
                    "signals": 1,
                    "malicious": attack,
                    "label": "botnet" if attack else "benign",
                    **{f: float(rng.normal(2.0 if attack else 0.0, 1.0)) for f in WINDOW_FEATURES},
                }
            )
    return Replay(name, 60.0, pd.DataFrame(rows))


#: Simulator seeds that train policies, and those held out for evaluation (never trained on).
SIM_TRAIN_SEEDS = (1, 2, 3, 4)
SIM_HELD_OUT_SEEDS = (11, 12, 13)
SOURCES = ("sim", "iot23", "mqttset")


def streams(source: str, split: str, root: Path | None = None, seeds: Sequence[int] | None = None) -> list[Replay]:
    """The replays of one source for ``split`` ``train`` or ``held-out``.

    ``sim``: the simulator with :data:`SIM_TRAIN_SEEDS` / :data:`SIM_HELD_OUT_SEEDS` (or
    ``seeds``); ``iot23``: 34-1's first / second half after the infection; ``mqttset``: the
    ``-train`` / ``-test`` captures. Real sources need ``root`` (the shared data folder).
    """
    if split not in ("train", "held-out"):
        raise InvalidParameterError(f"streams: split must be 'train' or 'held-out', got {split!r}")
    if source == "sim":
        chosen = seeds if seeds is not None else (SIM_TRAIN_SEEDS if split == "train" else SIM_HELD_OUT_SEEDS)
        return [simulated_replay(int(s)) for s in chosen]
    if source not in SOURCES:
        raise InvalidParameterError(f"streams: unknown source {source!r}; known: {', '.join(SOURCES)}")
    if root is None:
        raise InvalidParameterError(f"streams: source {source!r} needs the data folder")
    if source == "iot23":
        first, second = iot23_replays(root)
        return [first if split == "train" else second]
    return [mqttset_replay(root, "train" if split == "train" else "test")]
