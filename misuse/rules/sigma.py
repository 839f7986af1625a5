"""Sigma interoperability: field names onto the event model, and export back to Sigma YAML.

Field resolution (first match wins): a column of the frame with that exact name (``entity``,
``num.dst_port``...); the alias table of the rule's logsource (below); ``num.<field>``; then
``cat.<field>``. A field that resolves to nothing matches no event (and ``|exists: false``).

Linux authentication logsources (``product: linux`` with ``service`` ``auth``, ``sshd`` or
``syslog``) read the auth events of :mod:`misuse.ingest.authlog` and :mod:`misuse.ingest.cowrie`:

=====================================================  ====================================
Sigma field                                            event column
=====================================================  ====================================
user, User, user_name, username, pam_user, TargetUser  entity (the account)
client_ip, src_ip, pam_rhost, rhost, SourceIp          peer (the remote address)
host, hostname, Computer                               cat.host
deviceProcessName, process, program, ProcessName       cat.service
message, msg, pam_message; keyword selections          the message text (below)
=====================================================  ====================================

Other logsources (network) take ``src_ip``/``SourceIp`` as ``entity`` and ``dst_ip``,
``DestinationIp`` as ``peer``, ``DestinationPort``/``SourcePort`` as the port columns.

The message text is ``cat.message`` where the reader kept it; for auth events whose line the
reader parsed into fields (and so did not keep), it is rebuilt from OpenSSH's own templates
(``Failed password for root from 1.2.3.4``, ``Invalid user x from ...``, ``pam_unix(sshd:auth):
authentication failure; ... rhost=... user=...``), so keyword rules written for raw sshd lines
match the parsed events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml

if TYPE_CHECKING:
    from misuse.rules.model import Rule

MESSAGE = "\x00message"  # the virtual message column
PAM_MESSAGE = "\x00pam_message"  # the PAM part of the message ("authentication failure")
VIRTUAL = frozenset({MESSAGE, PAM_MESSAGE})
_AUTH_SERVICES = frozenset({"auth", "sshd", "syslog", "auth.log", "secure"})
AUTH_ALIASES: dict[str, str] = {
    **dict.fromkeys(("user", "User", "user_name", "username", "pam_user", "TargetUserName"), "entity"),
    **dict.fromkeys(("client_ip", "src_ip", "pam_rhost", "rhost", "SourceIp", "IpAddress"), "peer"),
    **dict.fromkeys(("host", "hostname", "Computer"), "cat.host"),
    **dict.fromkeys(("deviceProcessName", "process", "program", "ProcessName"), "cat.service"),
    **dict.fromkeys(("message", "msg"), MESSAGE),
    "pam_message": PAM_MESSAGE,
}
NETWORK_ALIASES: dict[str, str] = {
    **dict.fromkeys(("src_ip", "SourceIp", "id.orig_h", "source_ip"), "entity"),
    **dict.fromkeys(("dst_ip", "DestinationIp", "id.resp_h", "destination_ip"), "peer"),
    **dict.fromkeys(("DestinationPort", "id.resp_p", "destination_port"), "num.dst_port"),
    **dict.fromkeys(("SourcePort", "id.orig_p", "source_port"), "num.src_port"),
    **dict.fromkeys(("message", "msg"), MESSAGE),
}
# action -> template over columns; {name} is a column of the frame
AUTH_TEMPLATES: dict[str, str] = {
    "login.failed": "Failed {cat.method} for {entity} from {peer} port {num.src_port} ssh2",
    "login.success": "Accepted {cat.method} for {entity} from {peer} port {num.src_port} ssh2",
    "login.invalid_user": "Invalid user {entity} from {peer}",
    "userauth.invalid_user": "input_userauth_request: invalid user {entity} [preauth]",
    "pam.auth_failure": (
        "pam_unix({cat.service}:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={peer} user={entity}"
    ),
    "pam.user_unknown": "pam_unix({cat.service}:auth): check pass; user unknown",
    "pam.max_retries": "PAM service({cat.service}) ignoring max retries",
    "session.open": "pam_unix({cat.service}:session): session opened for user {entity}",
    "session.close": "pam_unix({cat.service}:session): session closed for user {entity}",
    "break_in": "reverse mapping checking getaddrinfo for {peer} failed - POSSIBLE BREAK-IN ATTEMPT!",
    "su": "Successful su for {entity}",
    "su.failed": "FAILED SU (to {entity})",
}
PAM_TEXT: dict[str, str] = {
    "pam.auth_failure": "authentication failure",
    "pam.user_unknown": "check pass; user unknown",
    "pam.max_retries": "ignoring max retries",
    "session.open": "session opened",
    "session.close": "session closed",
}


class FieldMap:
    """Maps Sigma field names onto event columns and builds the message text.

    Parameters
    ----------
    extra:
        Additional aliases (Sigma field -> column) that take precedence over the built-in ones.

    Examples
    --------
    >>> fm = FieldMap()
    >>> fm.resolve("pam_rhost", ["entity", "peer"], {"product": "linux", "service": "auth"})
    'peer'
    >>> fm.resolve("dst_port", ["entity", "num.dst_port"], {})
    'num.dst_port'
    """

    def __init__(self, extra: Mapping[str, str] | None = None) -> None:
        self.extra = dict(extra or {})

    @staticmethod
    def is_auth(logsource: Mapping[str, str]) -> bool:
        """True for a Linux authentication logsource."""
        return logsource.get("product") == "linux" and logsource.get("service", "") in _AUTH_SERVICES

    def resolve(self, name: str, columns: Iterable[str], logsource: Mapping[str, str]) -> str | None:
        """The column (or :data:`MESSAGE`) a Sigma field refers to, None if the frame lacks it."""
        cols = columns if isinstance(columns, set | frozenset) else set(columns)
        if name in self.extra:
            target = self.extra[name]
            return target if target in cols or target in VIRTUAL else None
        if name in cols:
            return name
        aliases = AUTH_ALIASES if self.is_auth(logsource) else NETWORK_ALIASES
        if name in aliases:
            target = aliases[name]
            return target if target in cols or target in VIRTUAL else None
        for prefix in ("num.", "cat."):
            if prefix + name in cols:
                return prefix + name
        return None

    def virtual(self, name: str, frame: pd.DataFrame) -> pd.Series:
        """The text of a virtual column (:data:`MESSAGE` or :data:`PAM_MESSAGE`)."""
        if name == PAM_MESSAGE:
            actions = frame["action"].astype(str) if "action" in frame.columns else pd.Series("", index=frame.index)
            return actions.map(PAM_TEXT).astype(object)
        return self.message(frame)

    def message(self, frame: pd.DataFrame) -> pd.Series:
        """The message text of every event (kept ``cat.message``, else rebuilt for auth events)."""
        n = len(frame)
        out = pd.Series(np.full(n, None, dtype=object), index=frame.index)
        if "cat.message" in frame.columns:
            out = frame["cat.message"].astype(object).where(frame["cat.message"].notna(), None)
        missing = out.isna().to_numpy()
        if not missing.any() or "action" not in frame.columns:
            return out
        actions = frame["action"].astype(str)
        for action, template in AUTH_TEMPLATES.items():
            rows = missing & (actions == action).to_numpy()
            if "kind" in frame.columns:
                rows &= (frame["kind"].astype(str) == "auth").to_numpy()
            if rows.any():
                out[rows] = _render(frame.loc[rows], template)
        rest = missing & out.isna().to_numpy()
        out[rest] = actions[rest]
        return out


def _render(rows: pd.DataFrame, template: str) -> pd.Series:
    """Fill a ``{column}`` template column-wise (vectorised string concatenation)."""
    parts = template.replace("}", "{").split("{")
    text = pd.Series("", index=rows.index, dtype=object)
    for i, part in enumerate(parts):
        if i % 2 == 0:
            text = text + part
            continue
        if part not in rows.columns:
            text = text + ("password" if part == "cat.method" else "")
            continue
        col = rows[part]
        if pd.api.types.is_numeric_dtype(col):
            vals = col.map(lambda v: "" if pd.isna(v) else f"{v:g}")
        else:
            vals = col.astype(object).where(col.notna(), "password" if part == "cat.method" else "").astype(str)
        text = text + vals
    return text


def export_sigma(rules: Iterable[Rule], *, strict: bool = False) -> str:
    """The rules as Sigma YAML documents (``---`` separated), as they were loaded.

    Parameters
    ----------
    rules:
        Rules to write.
    strict:
        Raise for rules that use a project extension (the ``periodic`` correlation type)
        instead of writing them; project attributes such as ``misuse_type`` are always kept,
        since Sigma tools ignore unknown attributes.

    Raises
    ------
    RuleError
        With ``strict=True``, for a rule that plain Sigma tools would reject.
    """
    from misuse.rules.model import EXTENSION_TYPES, RuleError

    docs: list[dict[str, Any]] = []
    for rule in rules:
        if strict and rule.correlation is not None and rule.correlation.type in EXTENSION_TYPES:
            raise RuleError(
                f"correlation type {rule.correlation.type!r} is a misuse extension, not Sigma",
                rule.source,
                rule.line,
                "correlation.type",
            )
        docs.append(dict(rule.raw))
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=False)
