"""Login attempts: the one shape every authentication source is turned into before detection.

The readers already give events (``kind="auth"`` from auth logs and Cowrie, ``kind="ssh"`` from
Zeek ``ssh.log``, ``kind="command"`` from app/API logs). :func:`login_attempts` picks the events
that are login attempts and puts them in one frame, ordered by time:

==========  =======  ================================================================
column      type     meaning
==========  =======  ================================================================
event_id    str      the event the attempt came from (evidence in alerts)
ts          float    epoch seconds, UTC
account     str      account tried ("host:<address>" for Zeek ssh.log, which has none)
source      str      where the attempt came from (address, "" when unknown)
success     bool     whether it got in
failures    float    failed attempts this row stands for ("message repeated 3 times": 3)
client      str      client fingerprint: SSH version string, MQTT client id, user agent
password    str      the password tried when the source logs it (honeypots), else ""
channel     str      the auth event's ``cat.service`` (``sshd``, ``su``, ``api``...) or
                     ``auth`` without one; cowrie, zeek-ssh, mqtt, api (app sessions)
==========  =======  ================================================================

Counting rules (so one attempt is counted once):

* auth logs: ``login.success`` and ``login.failed`` count; ``login.invalid_user`` does not (sshd
  logs the same attempt again as ``Failed password for invalid user``). PAM
  ``authentication failure`` lines count only for a service (``cat.service``) that logged no
  ``login.failed`` in the frame (old Linux logs where sshd only has PAM lines); otherwise they
  repeat sshd's ``Failed password``.
* Other auth events (events JSONL: API, web or app logins): ``login.success`` / ``login.failed``;
  the client is the first of ``cat.client``, ``cat.user_agent``, ``cat.client_id`` that is set,
  the source ``peer`` (or ``cat.src_ip`` when ``peer`` is empty).
* Cowrie: ``login.success`` / ``login.failed``, the client is the session's ``client.version``.
* Zeek ssh.log: ``auth_attempts`` failures, then one success when ``auth_success`` is true.
* App/API commands: see :func:`api_logins`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError, SchemaError

ATTEMPT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "ts",
    "account",
    "source",
    "success",
    "failures",
    "client",
    "password",
    "channel",
)
#: event columns naming the client, in order of preference (the client strings of
#: :data:`misuse.profiles.footprint.CONTEXT_COLUMNS`)
CLIENT_COLUMNS: tuple[str, ...] = ("cat.client", "cat.user_agent", "cat.client_id")


def empty_attempts() -> pd.DataFrame:
    """A login-attempt frame with no rows and the canonical columns."""
    return pd.DataFrame(
        {
            "event_id": pd.Series([], dtype=object),
            "ts": pd.Series([], dtype="float64"),
            "account": pd.Series([], dtype=object),
            "source": pd.Series([], dtype=object),
            "success": pd.Series([], dtype=bool),
            "failures": pd.Series([], dtype="float64"),
            "client": pd.Series([], dtype=object),
            "password": pd.Series([], dtype=object),
            "channel": pd.Series([], dtype=object),
        }
    )


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return frame[name].astype(object).where(frame[name].notna(), "").astype(str)
    return pd.Series([""] * len(frame), index=frame.index, dtype=object)


def _first_set(frame: pd.DataFrame, names: tuple[str, ...]) -> pd.Series:
    """Per row, the first of the columns ``names`` that is set (not missing, not empty)."""
    out = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    for name in names:
        out = out.where(out != "", _col(frame, name))
    return out


def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame.columns:
        return pd.to_numeric(frame[name], errors="coerce")
    return pd.Series(np.nan, index=frame.index)


def _epoch(ts: pd.Series) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9  # type: ignore[no-any-return]


def _frame(sub: pd.DataFrame, success: np.ndarray, failures: np.ndarray, **cols: object) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "event_id": sub["event_id"].astype(str).to_numpy(),
            "ts": _epoch(sub["ts"]),
            "account": cols["account"],
            "source": cols["source"],
            "success": success.astype(bool),
            "failures": failures.astype("float64"),
            "client": cols.get("client", ""),
            "password": cols.get("password", ""),
            "channel": cols["channel"],
        }
    )
    return out


def _from_auth(frame: pd.DataFrame) -> list[pd.DataFrame]:
    auth = frame[frame["kind"] == "auth"]
    if auth.empty:
        return []
    parts: list[pd.DataFrame] = []
    is_cowrie = _col(auth, "cat.eventid").str.startswith("cowrie.")
    cow = auth[is_cowrie & auth["action"].isin(["login.success", "login.failed"])]
    if not cow.empty:
        clients = _cowrie_clients(frame)
        sessions = _col(cow, "cat.session")
        ok = (cow["action"] == "login.success").to_numpy()
        parts.append(
            _frame(
                cow,
                ok,
                (~ok).astype(float),
                account=cow["entity"].to_numpy(),
                source=cow["peer"].to_numpy(),
                client=sessions.map(lambda s: clients.get(s, "")).to_numpy(),
                password=_col(cow, "cat.password").to_numpy(),
                channel="cowrie",
            )
        )
    sys_auth = auth[~is_cowrie]
    if sys_auth.empty:
        return parts
    service = _col(sys_auth, "cat.service")
    with_failed = set(service[sys_auth["action"] == "login.failed"])
    pam = (sys_auth["action"] == "pam.auth_failure") & ~service.isin(with_failed)
    sub = sys_auth[sys_auth["action"].isin(["login.success", "login.failed"]) | pam]
    if sub.empty:
        return parts
    ok = (sub["action"] == "login.success").to_numpy()
    repeat = _num(sub, "num.repeat").fillna(1.0).clip(lower=1.0).to_numpy()
    parts.append(
        _frame(
            sub,
            ok,
            np.where(ok, 0.0, repeat),
            account=sub["entity"].to_numpy(),
            source=_first_set(sub, ("peer", "cat.src_ip")).to_numpy(),
            client=_first_set(sub, CLIENT_COLUMNS).to_numpy(),
            channel=_col(sub, "cat.service").replace("", "auth").to_numpy(),
        )
    )
    return parts


def _cowrie_clients(frame: pd.DataFrame) -> dict[str, str]:
    ver = frame[frame["action"] == "client.version"]
    if ver.empty or "cat.session" not in frame.columns:
        return {}
    return dict(zip(_col(ver, "cat.session"), _col(ver, "cat.client"), strict=True))


def _from_zeek_ssh(frame: pd.DataFrame) -> list[pd.DataFrame]:
    ssh = frame[(frame["kind"] == "ssh") & frame["action"].isin(["auth.success", "auth.failed"])]
    if ssh.empty:
        return []
    ok = (ssh["action"] == "auth.success").to_numpy()
    tries = _num(ssh, "num.auth_attempts").fillna(1.0).clip(lower=1.0).to_numpy()
    return [
        _frame(
            ssh,
            ok,
            np.where(ok, tries - 1.0, tries),
            account=("host:" + ssh["peer"].astype(str)).to_numpy(),
            source=ssh["entity"].to_numpy(),
            client=_col(ssh, "cat.client").to_numpy(),
            channel="zeek-ssh",
        )
    ]


def login_attempts(frame: pd.DataFrame) -> pd.DataFrame:
    """The login attempts in an event frame, one row per attempt (or per repeated failure line).

    Parameters
    ----------
    frame:
        Events in the canonical columnar form (any mix of sources; other events are ignored).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ATTEMPT_COLUMNS`, sorted by ``ts`` (stable).

    Raises
    ------
    SchemaError
        When the frame lacks the ``kind``, ``action``, ``entity``, ``peer`` or ``ts`` column.

    Examples
    --------
    >>> from misuse.events import events_to_frame, Event
    >>> f = events_to_frame([Event(ts=1.0, entity="root", peer="1.2.3.4", kind="auth",
    ...                            action="login.failed", event_id="a:1")])
    >>> login_attempts(f)[["account", "source", "success", "failures"]].to_dict("records")
    [{'account': 'root', 'source': '1.2.3.4', 'success': False, 'failures': 1.0}]
    """
    missing = [c for c in ("ts", "kind", "action", "entity", "peer", "event_id") if c not in frame.columns]
    if missing:
        raise SchemaError(f"login_attempts: event frame lacks column(s) {missing}")
    parts = _from_auth(frame) + _from_zeek_ssh(frame)
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty_attempts()
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def api_logins(frame: pd.DataFrame, session_gap: float = 1800.0) -> pd.DataFrame:
    """App/API sessions as successful logins: an account's first command after ``session_gap`` idle seconds.

    App logs (``kind="command"`` with ``cat.src_ip`` and ``cat.client``) record what a signed-in
    person did, not the sign-in itself; the start of each session stands for it. The source is
    ``cat.src_ip`` (or ``peer`` when absent), the client the user agent in ``cat.client``.

    Raises
    ------
    InvalidParameterError
        When ``session_gap`` is not positive.
    """
    if not session_gap > 0:
        raise InvalidParameterError(f"The 'session_gap' parameter of api_logins must be > 0. Got {session_gap}.")
    cmd = frame[frame["kind"] == "command"] if "kind" in frame.columns else frame.iloc[0:0]
    if cmd.empty:
        return empty_attempts()
    cmd = cmd.assign(_t=_epoch(cmd["ts"])).sort_values(["entity", "_t"], kind="stable")
    gap = cmd.groupby("entity", sort=False)["_t"].diff()
    client = _col(cmd, "cat.client")
    src = _col(cmd, "cat.src_ip")
    # a new session also starts when the address or client changes mid-stream
    new_ctx = (src != src.groupby(cmd["entity"]).shift()) | (client != client.groupby(cmd["entity"]).shift())
    start = (gap.isna() | (gap > session_gap) | new_ctx).to_numpy()
    sub = cmd[start]
    source = np.where(_col(sub, "cat.src_ip") != "", _col(sub, "cat.src_ip"), sub["peer"].astype(str))
    out = _frame(
        sub,
        np.ones(len(sub), dtype=bool),
        np.zeros(len(sub)),
        account=sub["entity"].to_numpy(),
        source=source,
        client=_col(sub, "cat.client").to_numpy(),
        channel="api",
    )
    return out.sort_values("ts", kind="stable").reset_index(drop=True)
