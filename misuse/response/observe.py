"""The observation of a stored alert, computed the way the response environment computes it for a window.

Training sees every scored window of an entity (:func:`~misuse.response.env.context_columns` over
a replay): ``risk_ema`` is the EMA of the entity's earlier windows' fused risk, ``streak`` the
alerted windows just before, ``recent`` the alerted windows among the last :data:`~misuse.response.env.RECENT`,
``age`` the windows seen. The store keeps alerts, not scored windows, so for a dataset whose
events are in the store and whose alerts came (mostly) from a registered window model, the
events of the alerts' entities are scored again with that model and turned into a replay frame
(:func:`~misuse.response.replay.replay_from_scored`, the dataset's other alerts fused in), and
the context of each alert is read from that frame's window: the same code on the same kind of
rows as in training. Elsewhere (alerts from other detectors on a dataset without a window model
or without stored events, or a window the rescoring does not reach) the same context columns
are computed over the windows in which the entity has alerts, which undercounts ``age`` and
sees a higher ``risk_ema`` (``streak`` and ``recent`` count alerted windows in training too, so
they agree when every alert of the entity is in the store); each observation says which it used.

The rest of the observation: ``risk`` is the fused risk (:func:`misuse.rules.fusion.fuse`) of
the entity's alerts in the alert's window, ``score_ratio`` the alert's score over its threshold
(:func:`~misuse.response.replay.score_ratio`), ``signals`` the number of fused signals,
``fp_rate`` / ``tp_rate`` the entity's analyst verdicts, ``contained_before`` whether a policy
rate-limited or quarantined it. The window features come from the rescored window when there is
one, else from the alert's contributions when they name them (in a replay's units), else they
are missing (the policy takes them as typical).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.features.windows import LOG_FEATURES
from misuse.pipeline import WindowModel, score_windows
from misuse.response.env import OBS_FEATURES, context_columns
from misuse.response.replay import WINDOW_FEATURES, replay_from_scored, score_ratio
from misuse.rules.fusion import fuse

if TYPE_CHECKING:
    from misuse.store.duck import Store

#: The context features that depend on the entity's history of windows.
HISTORY = ("risk_ema", "streak", "recent", "age")
#: Where an observation's history came from: every scored window, or only the alerted ones.
FROM_WINDOWS, FROM_ALERTS = "windows", "alerts"


def bucket(ts: pd.Series, window: float) -> np.ndarray:
    """The window number of each timestamp (seconds since the epoch over ``window``, floored)."""
    seconds = (pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.floor(seconds.to_numpy(float) / window).astype(np.int64)


def window_history(store: Store, alerts: pd.DataFrame) -> dict[str, tuple[float, pd.DataFrame]]:
    """Per dataset of ``alerts``: the window length and the history and window features of every scored window.

    A dataset qualifies when its events are in the store and some of its alerts came from a
    registered window model; the model that raised most of them scores the events of the
    alerts' entities. The frame is indexed by ``(entity, t)`` with ``t`` the window number.
    """
    if "dataset" not in alerts.columns or "model" not in alerts.columns:
        return {}
    window_models = {str(r[0]) for r in store.con.execute("SELECT name FROM models WHERE kind = 'window'").fetchall()}
    out: dict[str, tuple[float, pd.DataFrame]] = {}
    for dataset, part in alerts.groupby("dataset", sort=True):
        dataset = str(dataset)
        counts = part.loc[part["model"].isin(window_models), "model"].value_counts()
        if counts.empty or not any(store.events_dir(dataset).glob("part-*.parquet")):
            continue
        name = str(min(counts.index, key=lambda m: (-counts[m], str(m))))
        if not (store.model_dir(name) / "model.json").exists():  # the model was removed since
            continue
        model = WindowModel.load(store.model_dir(name))
        entities = set(part["entity"].astype(str))
        events = store.events(dataset)
        scored = score_windows(model, events[events["entity"].astype(str).isin(entities)])
        if len(scored) == 0:
            continue
        others = store.alerts(dataset=dataset)
        others = others[(others["model"] != name) & others["entity"].astype(str).isin(entities)]
        extra = [Alert.from_row(r) for _, r in others.iterrows()]
        frame = replay_from_scored(f"{dataset}/{name}", scored, model.threshold.threshold_, model.window, extra).frame
        cols = [*HISTORY, *WINDOW_FEATURES]
        out[dataset] = (model.window, context_columns(frame).set_index(["entity", "t"])[cols])
    return out


def _alert_history(known: pd.DataFrame, fused: dict[tuple[str, int], float], window: float) -> pd.DataFrame:
    """The history columns over the windows in which each entity has alerts, indexed by ``(entity, t)``."""
    keys = sorted(set(zip(known["entity"].astype(str), bucket(known["window_start"], window), strict=True)))
    frame = pd.DataFrame(
        {"entity": [e for e, _ in keys], "t": [t for _, t in keys], "risk": [fused[k] for k in keys]}
    ).sort_values(["t", "entity"], kind="stable")
    return context_columns(frame.assign(alerted=True)).set_index(["entity", "t"])[list(HISTORY)]


def _named_features(a: Alert) -> dict[str, float]:
    """The window features an alert's contributions name, in the units of a replay.

    A window model's alert (detector ``window-...``) shows counts where the features hold their
    log1p (:func:`misuse.features.windows.display_value`); that is undone here.
    """
    out = {}
    for c in a.contributions:
        name = str(c.get("feature", ""))
        if name in WINDOW_FEATURES:
            value = float(c.get("actual", np.nan))
            out[name] = float(np.log1p(value)) if a.detector.startswith("window-") and name in LOG_FEATURES else value
    return out


def observe(
    store: Store,
    alerts: pd.DataFrame,
    window: float = 60.0,
    contained: Collection[str] = frozenset(),
) -> tuple[np.ndarray, list[str]]:
    """One observation per row of ``alerts`` (the store's alert frame), in row order, and its history source.

    ``window`` is the fusion window in seconds, ``contained`` the entities a policy rate-limited or
    quarantined before. The second value says per alert whether its :data:`HISTORY` came from
    every scored window (:data:`FROM_WINDOWS`) or only from the entity's alerts (:data:`FROM_ALERTS`).
    """
    if len(alerts) == 0:
        return np.zeros((0, len(OBS_FEATURES))), []
    entities = set(alerts["entity"].astype(str))
    stored = store.alerts()
    stored = stored[stored["entity"].astype(str).isin(entities) & ~stored["alert_id"].isin(alerts["alert_id"])]
    known = pd.concat([alerts, stored], ignore_index=True) if len(stored) else alerts
    risks = fuse([Alert.from_row(r) for _, r in known.iterrows()], window=window)
    fused = {(r.entity, int(r.window_start.timestamp() // window)): r for r in risks}
    by_alerts = _alert_history(known, {k: r.risk for k, r in fused.items()}, window)
    by_windows = window_history(store, alerts)

    verdicts = store.con.execute(
        "SELECT a.entity, f.verdict, count(*) FROM feedback f JOIN alerts a USING (alert_id) GROUP BY 1, 2"
    ).fetchall()
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    for entity, verdict, n in verdicts:
        (tp if verdict == "true_positive" else fp)[entity] = int(n)

    out = np.full((len(alerts), len(OBS_FEATURES)), np.nan)
    sources = []
    for i, (_, row) in enumerate(alerts.iterrows()):
        a = Alert.from_row(row)
        b = int(a.window_start.timestamp() // window)
        risk = fused[(a.entity, b)]
        history, source = by_alerts.loc[(a.entity, b)], FROM_ALERTS
        features = _named_features(a)
        dataset = str(row.get("dataset", ""))
        if dataset in by_windows:
            w, frame = by_windows[dataset]
            key = (a.entity, int(a.window_start.timestamp() // w))
            if key in frame.index:
                history, source = frame.loc[key], FROM_WINDOWS
                features = {f: float(history[f]) for f in WINDOW_FEATURES}
        t_, f_ = tp.get(a.entity, 0), fp.get(a.entity, 0)
        ctx = {
            "risk": risk.risk,
            "score_ratio": float(score_ratio(a.score, a.threshold)),
            "signals": float(len(risk.contributions)),
            **{h: float(history[h]) for h in HISTORY},
            "fp_rate": (f_ + 1.0) / (t_ + f_ + 2.0),
            "tp_rate": (t_ + 1.0) / (t_ + f_ + 2.0),
            "contained_before": float(a.entity in contained),
            **features,
        }
        out[i] = [ctx.get(f, np.nan) for f in OBS_FEATURES]
        sources.append(source)
    return out, sources
