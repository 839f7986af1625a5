"""API tokens with roles, stored hashed.

A token looks like ``msu_<id>_<secret>``. Only the id, the role and an scrypt hash of the whole
token (with a per-token salt) are written to ``<project>/tokens.json``; the token itself is shown
once, when it is created. Roles are ordered: ``viewer`` < ``analyst`` < ``admin``; a route needing
``analyst`` accepts analysts and admins.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from misuse.errors import InvalidParameterError, NotFoundError, StoreError

ROLES = ("viewer", "analyst", "admin")
PREFIX = "msu"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class TokenInfo:
    """What is stored about one token (never the token itself)."""

    token_id: str
    name: str
    role: str
    created_at: str
    salt: str
    hash: str

    def public(self) -> dict[str, str]:
        """The fields safe to show through the API."""
        return {"token_id": self.token_id, "name": self.name, "role": self.role, "created_at": self.created_at}


def role_at_least(role: str, needed: str) -> bool:
    """True when ``role`` grants what ``needed`` requires.

    >>> role_at_least("admin", "analyst"), role_at_least("viewer", "analyst")
    (True, False)
    """
    return ROLES.index(role) >= ROLES.index(needed)


def _hash(token: str, salt: bytes) -> str:
    return hashlib.scrypt(token.encode(), salt=salt, **_SCRYPT).hex()


class TokenStore:
    """Hashed API tokens in a JSON file.

    Parameters
    ----------
    path:
        The ``tokens.json`` file (created on the first token).

    Examples
    --------
    >>> import tempfile
    >>> ts = TokenStore(Path(tempfile.mkdtemp()) / "tokens.json")
    >>> token = ts.create("alice", "analyst")
    >>> ts.verify(token).role, ts.verify(token + "x")
    ('analyst', None)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cache: dict[str, TokenInfo] = {}
        self._mtime: float | None = None
        self._tokens: dict[str, TokenInfo] = {}

    def _load(self) -> dict[str, TokenInfo]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._tokens, self._mtime, self._cache = {}, None, {}
            return self._tokens
        if mtime != self._mtime:
            try:
                raw = json.loads(self.path.read_text())
                tokens = {t["token_id"]: TokenInfo(**t) for t in raw.get("tokens", [])}
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise StoreError(f"{self.path}: unreadable token file: {exc}") from None
            self._tokens, self._mtime, self._cache = tokens, mtime, {}
        return self._tokens

    def _save(self, tokens: dict[str, TokenInfo]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"tokens": [asdict(t) for t in tokens.values()]}, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def create(self, name: str, role: str) -> str:
        """Create a token and return it (the only time it is visible)."""
        if role not in ROLES:
            raise InvalidParameterError(f"token role must be one of {ROLES}, got {role!r}")
        if not name or len(name) > 100:
            raise InvalidParameterError(f"token name must be 1-100 characters, got {name!r}")
        with self._lock:
            tokens = dict(self._load())
            token_id = secrets.token_hex(6)
            token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
            salt = os.urandom(16)
            info = TokenInfo(token_id, name, role, datetime.now(UTC).isoformat(), salt.hex(), _hash(token, salt))
            tokens[token_id] = info
            self._save(tokens)
            self._mtime = None
        return token

    def revoke(self, token_id: str) -> None:
        """Delete a token by id."""
        with self._lock:
            tokens = dict(self._load())
            if token_id not in tokens:
                raise NotFoundError(f"{self.path}: no token with id {token_id!r}")
            del tokens[token_id]
            self._save(tokens)
            self._mtime = None

    def list(self) -> list[TokenInfo]:
        """All tokens (hashed), oldest first."""
        with self._lock:
            return sorted(self._load().values(), key=lambda t: t.created_at)

    def __len__(self) -> int:
        return len(self.list())

    def verify(self, token: str) -> TokenInfo | None:
        """The token's record if ``token`` is valid, else None (constant-time hash comparison)."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX or len(token) > 200:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            tokens = self._load()
            cached = self._cache.get(digest)
            if cached is not None and cached.token_id in tokens:
                return cached
            info = tokens.get(parts[1])
        if info is None:
            return None
        if not hmac.compare_digest(_hash(token, bytes.fromhex(info.salt)), info.hash):
            return None
        with self._lock:
            self._cache[digest] = info
        return info
