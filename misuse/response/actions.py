"""Apply a response policy to stored alerts: decide, explain, log, undo, learn from feedback.

Every decision is written to the ``response_actions`` table of the project store (created here
through ``Store.con``): the alert, the entity, the action, the observation the policy saw, the
features that led to the action, the policy, the time, and its status: ``active`` until
:func:`undo` marks it ``undone``, or ``no_action`` for an ``ignore`` decision, which asks for
nothing and so cannot be undone. Nothing here enforces a decision (no firewall, broker or
network call): the rows are a record for a person or an enforcement point to act on, and
``undo`` only changes a row's status. :func:`learn_from_feedback` feeds the analysts' verdicts
(the store's ``feedback`` table) on decided alerts back into the policy, once per decision.

The observation of a stored alert follows :data:`~misuse.response.env.OBS_FEATURES`: the fused
risk of the entity's alerts in the alert's window (:func:`misuse.rules.fusion.fuse`), its score
over its threshold, and the context of the entity's earlier alerts, verdicts and actions. The
store keeps alerts, not every scored window, so ``risk_ema``, ``streak``, ``recent`` and ``age``
are computed over the entity's alerts; window features come from the alert's contributions when
it names them and are otherwise taken as typical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import InvalidParameterError, StoreError
from misuse.response.env import ACTIONS, CONTAINING, IGNORE, OBS_FEATURES, RECENT
from misuse.response.policy import BanditPolicy, verdict_reward
from misuse.response.replay import score_ratio
from misuse.rules.fusion import fuse
from misuse.store.duck import Store

TABLE = "response_actions"
_DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    action_id VARCHAR PRIMARY KEY, alert_id VARCHAR, entity VARCHAR, action VARCHAR, risk DOUBLE,
    explanation VARCHAR, observation VARCHAR, policy VARCHAR, created_at TIMESTAMPTZ, status VARCHAR,
    undone_at TIMESTAMPTZ, learned BOOLEAN)"""


#: ``status`` of a logged decision: a containing or threshold action in force, one lifted by
#: :func:`undo`, or an ``ignore`` decision, which puts nothing in force and cannot be undone.
STATUSES = ("active", "undone", "no_action")


def ensure_table(store: Store) -> None:
    """Create the ``response_actions`` table if missing.

    Ignore decisions logged as ``active`` before they had their own status become ``no_action``.
    """
    store.con.execute(_DDL)
    store.con.execute(f"UPDATE {TABLE} SET status = 'no_action' WHERE action = 'ignore' AND status = 'active'")


def _alert(row: pd.Series) -> Alert:
    return Alert(
        entity=str(row["entity"]),
        window_start=pd.Timestamp(row["window_start"]).to_pydatetime(),
        window_end=pd.Timestamp(row["window_end"]).to_pydatetime(),
        score=float(row["score"]),
        threshold=float(row["threshold"]),
        severity=str(row["severity"]),
        misuse_type=str(row["misuse_type"]),
        detector=str(row["detector"]),
        summary=str(row["summary"]),
        contributions=list(row["contributions"]),
        alert_id=str(row["alert_id"]),
    )


def observations(store: Store, alerts: pd.DataFrame, window: float = 60.0) -> np.ndarray:
    """One observation per row of ``alerts`` (the store's alert frame), in row order."""
    ensure_table(store)
    if len(alerts) == 0:
        return np.zeros((0, len(OBS_FEATURES)))
    objs = [_alert(r) for _, r in alerts.iterrows()]
    fused = {(r.entity, int(r.window_start.timestamp() // window)): r for r in fuse(objs, window=window)}
    verdicts = store.con.execute(
        "SELECT a.entity, f.verdict, count(*) FROM feedback f JOIN alerts a USING (alert_id) GROUP BY 1, 2"
    ).fetchall()
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    for entity, verdict, n in verdicts:
        (tp if verdict == "true_positive" else fp)[entity] = int(n)
    held = {
        r[0]
        for r in store.con.execute(
            f"SELECT DISTINCT entity FROM {TABLE} WHERE action IN ({', '.join('?' * len(CONTAINING))})",
            list(CONTAINING),
        ).fetchall()
    }
    out = np.full((len(objs), len(OBS_FEATURES)), np.nan)
    history: dict[str, list[tuple[int, float]]] = {}
    order = sorted(range(len(objs)), key=lambda i: objs[i].window_start)
    for i in order:
        a = objs[i]
        b = int(a.window_start.timestamp() // window)
        risk = fused[(a.entity, b)].risk
        past = history.setdefault(a.entity, [])
        ema = 0.0
        for _, r in past:
            ema = 0.8 * ema + 0.2 * r
        streak = 0
        for tb, _ in reversed(past):
            if tb != b - 1 - streak:
                break
            streak += 1
        t_, f_ = tp.get(a.entity, 0), fp.get(a.entity, 0)
        ctx = {
            "risk": risk,
            "score_ratio": float(score_ratio(a.score, a.threshold)),
            "signals": float(len(fused[(a.entity, b)].contributions)),
            "risk_ema": ema,
            "streak": float(np.log1p(streak)),
            "recent": float(np.log1p(sum(1 for tb, _ in past if b - RECENT <= tb < b))),
            "age": float(np.log1p(len(past))),
            "fp_rate": (f_ + 1.0) / (t_ + f_ + 2.0),
            "tp_rate": (t_ + 1.0) / (t_ + f_ + 2.0),
            "contained_before": float(a.entity in held),
        }
        for c in a.contributions:
            name = str(c.get("feature", ""))
            if name in OBS_FEATURES and name not in ctx:
                ctx[name] = float(c.get("actual", np.nan))
        out[i] = [ctx.get(f, np.nan) for f in OBS_FEATURES]
        past.append((b, risk))
    return out


def _action_id(policy_name: str, alert_id: str) -> str:
    return hashlib.sha1(f"{policy_name}|{alert_id}".encode()).hexdigest()[:16]


def apply(
    store: Store,
    policy: BanditPolicy,
    policy_name: str,
    alerts: pd.DataFrame | None = None,
    *,
    window: float = 60.0,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """Decide on every alert not yet decided by this policy; log each decision unless ``dry_run``.

    Returns one dict per decision: ``action_id, alert_id, entity, action, risk, because`` (the
    features that favoured the action over the runner-up, with actual and typical values).
    """
    ensure_table(store)
    alerts = store.alerts() if alerts is None else alerts
    done = {r[0] for r in store.con.execute(f"SELECT alert_id FROM {TABLE} WHERE policy = ?", [policy_name]).fetchall()}
    alerts = alerts[~alerts["alert_id"].isin(done)].reset_index(drop=True)
    obs = observations(store, alerts, window)
    out, rows = [], []
    now = datetime.now(UTC)
    for (_, row), x in zip(alerts.iterrows(), obs, strict=True):
        action, because = policy.explain(x)
        decision = {
            "action_id": _action_id(policy_name, str(row["alert_id"])),
            "alert_id": str(row["alert_id"]),
            "entity": str(row["entity"]),
            "action": ACTIONS[action],
            "risk": float(x[0]),
            "because": [asdict(c) for c in because],
        }
        out.append(decision)
        rows.append(
            [
                decision["action_id"],
                decision["alert_id"],
                decision["entity"],
                decision["action"],
                decision["risk"],
                json.dumps(decision["because"]),
                json.dumps([None if not np.isfinite(v) else float(v) for v in x]),
                policy_name,
                now,
                "no_action" if action == IGNORE else "active",
                None,
                False,
            ]
        )
    if rows and not dry_run:
        store.con.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES ({', '.join('?' * 12)})", rows)
    return out


def logged(store: Store, *, status: str | None = None) -> pd.DataFrame:
    """The logged decisions, newest first."""
    ensure_table(store)
    q, args = f"SELECT * FROM {TABLE}", []
    if status is not None:
        q += " WHERE status = ?"
        args.append(status)
    return store.con.execute(q + " ORDER BY created_at DESC, action_id", args).df()


def undo(store: Store, action_id: str | None = None, *, entity: str | None = None) -> int:
    """Lift one logged action (by id) or every active action on an entity; returns how many.

    Only ``active`` rows are lifted: an ``ignore`` decision (status ``no_action``) put nothing in
    force, so it is neither undone nor counted.
    """
    ensure_table(store)
    if (action_id is None) == (entity is None):
        raise InvalidParameterError("undo: give exactly one of an action id or an entity")
    col, val = ("action_id", action_id) if action_id is not None else ("entity", entity)
    n = store.con.execute(f"SELECT count(*) FROM {TABLE} WHERE {col} = ? AND status = 'active'", [val]).fetchone()
    count = int(n[0]) if n else 0
    if count == 0:
        row = store.con.execute(f"SELECT action, status FROM {TABLE} WHERE action_id = ?", [action_id]).fetchone()
        if row is not None and row[1] == "no_action":
            raise StoreError(f"{TABLE}: action {action_id} is an {row[0]!r} decision; it put nothing in force to undo")
        raise StoreError(f"{TABLE}: no active action with {col} {val!r}")
    store.con.execute(
        f"UPDATE {TABLE} SET status = 'undone', undone_at = ? WHERE {col} = ? AND status = 'active'",
        [datetime.now(UTC), val],
    )
    return count


def learn_from_feedback(store: Store, policy: BanditPolicy, policy_name: str) -> int:
    """Update ``policy`` from analyst verdicts on alerts it decided; each decision teaches once.

    A decision with a verdict gives one update: the reward the latest verdict on its alert
    implies (:func:`~misuse.response.policy.verdict_reward` with the policy's costs and hold)
    for the action taken on the observation logged with it. The decision is then marked
    ``learned``. Returns the number of updates.
    """
    ensure_table(store)
    rows = store.con.execute(
        f"""WITH latest AS (
                SELECT alert_id, verdict, created_at,
                       row_number() OVER (PARTITION BY alert_id ORDER BY created_at DESC) AS k
                FROM feedback)
            SELECT r.action_id, r.action, r.observation, f.verdict FROM {TABLE} r JOIN latest f USING (alert_id)
            WHERE r.policy = ? AND NOT r.learned AND f.k = 1 ORDER BY f.created_at, r.action_id""",
        [policy_name],
    ).fetchall()
    used = []
    for action_id, action, observation, verdict in rows:
        x = np.array([np.nan if v is None else v for v in json.loads(observation)], dtype=float)
        x = np.where(np.isfinite(x), x, policy.mean_)
        a = ACTIONS.index(action)
        policy.update(x, a, verdict_reward(a, verdict == "true_positive", policy.costs, policy.hold))
        used.append(action_id)
    if used:
        store.con.execute(f"UPDATE {TABLE} SET learned = true WHERE action_id IN ({', '.join('?' * len(used))})", used)
    return len(used)
