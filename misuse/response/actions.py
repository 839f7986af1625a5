"""Apply a response policy to stored alerts: decide, explain, log, undo, learn from feedback.

Every decision is written to the ``response_actions`` table of the project store (created here
through ``Store.con``): the alert, the entity, the action, the observation the policy saw, the
features that led to the action, the policy, the time, and its status: ``active`` until
:func:`undo` marks it ``undone``, or ``no_action`` for an ``ignore`` decision, which asks for
nothing and so cannot be undone. Nothing here enforces a decision (no firewall, broker or
network call): the rows are a record for a person or an enforcement point to act on, and
``undo`` only changes a row's status. :func:`learn_from_feedback` feeds the analysts' verdicts
(the store's ``feedback`` table) on decided alerts back into the policy, once per decision.

The observation of a stored alert (:mod:`misuse.response.observe`) follows
:data:`~misuse.response.env.OBS_FEATURES` and is computed as in training where the store allows.
:func:`apply` decides where :class:`~misuse.response.env.ResponseEnv` does: once per entity and
window with an alert, in time order, skipping windows an active rate limit or quarantine holds
or a raised threshold mutes, and windows already decided.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, NotFoundError
from misuse.response.env import ACTIONS, CONTAINING, IGNORE, OBS_FEATURES, RAISE_THRESHOLD
from misuse.response.observe import bucket, observe
from misuse.response.policy import BanditPolicy, verdict_reward
from misuse.store.duck import Store

TABLE = "response_actions"
_DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    action_id VARCHAR PRIMARY KEY, alert_id VARCHAR, entity VARCHAR, action VARCHAR, risk DOUBLE,
    explanation VARCHAR, observation VARCHAR, policy VARCHAR, created_at TIMESTAMPTZ, status VARCHAR,
    undone_at TIMESTAMPTZ, learned BOOLEAN)"""


#: ``status`` of a logged decision: ``active`` (recorded, not undone), ``undone`` by :func:`undo`,
#: or ``no_action`` for an ``ignore`` decision, which asks for nothing and cannot be undone.
STATUSES = ("active", "undone", "no_action")


def ensure_table(store: Store) -> None:
    """Create the ``response_actions`` table if missing.

    Ignore decisions logged as ``active`` before they had their own status become ``no_action``.
    """
    store.con.execute(_DDL)
    store.con.execute(f"UPDATE {TABLE} SET status = 'no_action' WHERE action = 'ignore' AND status = 'active'")


def contained_entities(store: Store) -> set[str]:
    """Entities any policy has rate-limited or quarantined (logged, whether undone or not)."""
    ensure_table(store)
    rows = store.con.execute(
        f"SELECT DISTINCT entity FROM {TABLE} WHERE action IN ({', '.join('?' * len(CONTAINING))})",
        list(CONTAINING),
    ).fetchall()
    return {str(r[0]) for r in rows}


def observations(store: Store, alerts: pd.DataFrame, window: float = 60.0) -> np.ndarray:
    """One observation per row of ``alerts`` (see :func:`misuse.response.observe.observe`)."""
    return observe(store, alerts, window, contained_entities(store))[0]


def _in_force(store: Store, policy_name: str, window: float, hold: int) -> tuple[dict, dict, set]:
    """From the log: per entity the window a hold lasts until, the (until, risk) of a mute, decided windows."""
    rows = store.con.execute(
        f"SELECT r.entity, r.action, r.risk, r.status, r.policy, a.window_start FROM {TABLE} r "
        "JOIN alerts a USING (alert_id)"
    ).df()
    held: dict[str, int] = {}
    muted: dict[str, tuple[int, float]] = {}
    decided: set[tuple[str, int]] = set()
    if len(rows) == 0:
        return held, muted, decided
    rows["b"] = bucket(rows["window_start"], window)
    for r in rows.itertuples():
        e, b = str(r.entity), int(r.b)
        if r.policy == policy_name:
            decided.add((e, b))
        if r.status != "active":
            continue
        if r.action in CONTAINING:
            held[e] = max(held.get(e, -1), b + hold)
        elif r.action == ACTIONS[RAISE_THRESHOLD] and b + hold > muted.get(e, (-1, 0.0))[0]:
            muted[e] = (b + hold, float(r.risk))
    return held, muted, decided


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
    skipped: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Decide on the alerts not yet decided by this policy, in time order; log each decision unless ``dry_run``.

    As in training, one decision per entity and ``window``: an alert is skipped, not decided,
    when its entity's window was already decided by this policy, lies within ``hold`` windows of
    an active rate limit or quarantine (logged by any policy, or decided earlier in this run), or
    is muted by an active raised threshold (risk at most the muted level). A skipped alert is
    appended to ``skipped`` (when given) with the reason, and comes up again in a later run if
    what covered it is undone. A containing decision sets ``contained_before`` for the entity's
    later alerts of the run, as the environment does.

    Returns one dict per decision: ``action_id, alert_id, entity, action, risk, because`` (the
    features that favoured the action over the runner-up, with actual and typical values) and
    ``history``: whether the entity's history features came from every scored window, as in
    training, or from its alerts only (see :mod:`misuse.response.observe`).
    """
    ensure_table(store)
    alerts = store.alerts() if alerts is None else alerts
    done = {r[0] for r in store.con.execute(f"SELECT alert_id FROM {TABLE} WHERE policy = ?", [policy_name]).fetchall()}
    alerts = alerts[~alerts["alert_id"].isin(done)]
    alerts = alerts.sort_values(["window_start", "entity", "alert_id"], kind="stable").reset_index(drop=True)
    contained = contained_entities(store)
    obs, sources = observe(store, alerts, window, contained)
    hold = int(getattr(policy, "setting_", {}).get("hold", 10))
    held, muted, decided = _in_force(store, policy_name, window, hold)
    windows = bucket(alerts["window_start"], window) if len(alerts) else np.zeros(0, dtype=np.int64)
    col = OBS_FEATURES.index("contained_before")
    out, rows = [], []
    now = datetime.now(UTC)
    for (_, row), x, source, b in zip(alerts.iterrows(), obs, sources, windows, strict=True):
        e, b = str(row["entity"]), int(b)
        until, level = muted.get(e, (-1, 0.0))
        reason = (
            "window already decided"
            if (e, b) in decided
            else "held by an active rate limit or quarantine"
            if held.get(e, -1) > b
            else "muted by an active raised threshold"
            if b < until and x[0] <= level
            else None
        )
        if reason is not None:
            if skipped is not None:
                skipped.append({"alert_id": str(row["alert_id"]), "entity": e, "reason": reason})
            continue
        x = x.copy()
        x[col] = float(e in contained)
        action, because = policy.explain(x)
        decided.add((e, b))
        if ACTIONS[action] in CONTAINING:
            held[e] = b + hold
            contained.add(e)
        elif action == RAISE_THRESHOLD:
            muted[e] = (b + hold, float(x[0]))
        decision = {
            "action_id": _action_id(policy_name, str(row["alert_id"])),
            "alert_id": str(row["alert_id"]),
            "entity": str(row["entity"]),
            "action": ACTIONS[action],
            "risk": float(x[0]),
            "because": [asdict(c) for c in because],
            "history": source,
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
            raise InvalidParameterError(
                f"{TABLE}: action {action_id} is an {row[0]!r} decision; it put nothing in force to undo"
            )
        raise NotFoundError(f"{TABLE}: no active action with {col} {val!r}")
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
