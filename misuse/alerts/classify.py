"""Decide the misuse type of an anomalous window from what drove its score and what its events were.

The rules, in order (the first that matches wins):

1. **brute_force**: at least 5 failed logins or failed/short connections to a login service
   (ssh 22, telnet 23/2323, mqtt 1883) from the entity in the window.
2. **botnet**: the entity contacts at least 10 distinct hosts with mostly failed connections, or
   mostly on telnet ports (Mirai-style scanning), or shows a flood: at least 100 events to at most 2 peers.
3. **exfiltration**: the entity sent at least 1 MB and 10x its own typical bytes in a window, at least
   80% of it to one peer it never contacted in training.
4. **impersonation**: the entity is a person (command or auth events) and the time of day or the set
   of actions drove the score.
5. otherwise **anomaly**: the window diverges from the baseline, cause not determined.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from misuse.alerts.types import MisuseType
from misuse.features.windows import FAILED_CONN_STATES

LOGIN_PORTS = (22.0, 23.0, 2323.0, 1883.0)
LOGIN_ACTIONS = ("ssh", "telnet", "mqtt")


def classify_window(
    events: pd.DataFrame,
    top_features: Sequence[str],
    typical: Mapping[str, float] | None = None,
    known_peers: Collection[str] | None = None,
) -> tuple[MisuseType, str]:
    """Return the misuse type of a window and a one-sentence reason.

    Parameters
    ----------
    events:
        The window's events (one entity).
    top_features:
        Names of the features that drove the score, most important first.
    typical:
        The entity's own typical window features (``sum:orig_bytes`` etc., as log1p), if known.
    known_peers:
        The peers the entity contacted in training, if known.
    """
    n = len(events)
    if n == 0:
        return MisuseType.ANOMALY, "no events in the window"
    action = events["action"].astype(str)
    failed_login = action.str.endswith("login.failed") | action.str.contains("invalid_user")
    port = events["num.dst_port"] if "num.dst_port" in events.columns else pd.Series(np.nan, index=events.index)
    state = events["cat.conn_state"] if "cat.conn_state" in events.columns else pd.Series("", index=events.index)
    to_login = port.isin(LOGIN_PORTS) | action.isin(LOGIN_ACTIONS)
    peers = events["peer"].nunique()
    failed_conn = state.isin(FAILED_CONN_STATES)
    if int(failed_login.sum()) >= 5:
        return MisuseType.BRUTE_FORCE, f"{int(failed_login.sum())} failed logins in the window"
    login_attempts = to_login & (failed_conn | (peers <= 2))
    if int(login_attempts.sum()) >= 5 and peers <= 2:
        return (
            MisuseType.BRUTE_FORCE,
            f"{int(login_attempts.sum())} connections to a login service on {peers} host(s)",
        )
    telnet = port.isin((23.0, 2323.0))
    if peers >= 10 and (failed_conn.mean() >= 0.5 or telnet.mean() >= 0.5):
        return (
            MisuseType.BOTNET,
            f"contacted {peers} hosts, {failed_conn.mean():.0%} unanswered, {telnet.mean():.0%} on telnet ports "
            "(Mirai-like scanning)",
        )
    if n >= 100 and peers <= 2:
        return MisuseType.BOTNET, f"{n} events to {peers} host(s) in one window (flood)"
    top = list(top_features[:3])
    if "num.orig_bytes" in events.columns:
        by_peer = events.groupby("peer")["num.orig_bytes"].sum()
        total = float(by_peer.sum())
        usual = float(np.expm1((typical or {}).get("sum:orig_bytes", 0.0)))
        new_peer = known_peers is None or str(by_peer.idxmax()) not in known_peers
        if total >= max(1e6, 10 * usual) and float(by_peer.max()) / total >= 0.8 and new_peer:
            return (
                MisuseType.EXFILTRATION,
                f"{total:,.0f} bytes sent (typical {usual:,.0f}), {by_peer.max() / total:.0%} to {by_peer.idxmax()}",
            )
    kinds = set(events["kind"].astype(str))
    if kinds & {"command", "auth"} and any(f.startswith(("hour_", "actions", "dev:actions", "peers")) for f in top):
        return (
            MisuseType.IMPERSONATION,
            "the account acts at unusual times or with unusual actions for its owner",
        )
    return MisuseType.ANOMALY, "behaviour diverges from the baseline"
