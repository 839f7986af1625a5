"""Service configuration: the only place the service reads the environment or a config file.

Settings come, in increasing priority, from defaults, a TOML file (``<project>/service.toml`` or
``MISUSE_SERVICE_CONFIG``), the environment (``MISUSE_*``) and explicit overrides (the CLI's
options). Every setting is documented in ``docs/service.md``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from misuse.errors import InvalidParameterError

ENV_PREFIX = "MISUSE_"


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``misuse serve`` needs.

    Parameters
    ----------
    project:
        Project folder holding the store, the models and ``tokens.json``.
    host, port:
        Where the HTTP API listens.
    mqtt_enabled, mqtt_host, mqtt_port, mqtt_username, mqtt_password, mqtt_client_id:
        The broker the worker subscribes to. The client id is fixed so the broker keeps the
        worker's session (and queues its QoS 1 messages) while it is down.
    topic_prefix:
        Root of the topic layout: ``<prefix>/events/<publisher>/...`` in, ``<prefix>/alerts/<entity>`` out.
    mqtt_topics:
        Topic filters the worker subscribes to, each under ``<prefix>/events/`` (default: all
        events). Workers sharing a PostgreSQL store take disjoint publishers, so that each entity's
        windows stay on one worker.
    zeek_tail:
        Zeek log files to tail as they grow.
    max_body_bytes:
        Largest accepted request body.
    batch_max, batch_wait:
        The worker commits a batch when it holds ``batch_max`` events or after ``batch_wait`` seconds.
    idle_close:
        Seconds after a window's end (wall clock) at which it is closed even if the entity is silent.
    store_url:
        ``duckdb`` (default, the project store) or a ``postgresql://`` URL (state shared by workers).
    worker_id:
        Names this worker's stored events (default: ``mqtt_client_id``); each worker sharing a
        PostgreSQL store needs its own.
    insecure_dev:
        Run without API tokens and without MQTT credentials (loopback only, for development).
    rules:
        Sigma-style rules run over every stored event batch: ``builtin`` (the IoT pack of
        :mod:`misuse.rules`), ``none``, or a rule file or folder.
    """

    project: Path = Path(".misuse")
    host: str = "127.0.0.1"
    port: int = 8080
    mqtt_enabled: bool = True
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_client_id: str = "misuse-worker"
    topic_prefix: str = "misuse"
    mqtt_topics: tuple[str, ...] = ()
    zeek_tail: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    batch_max: int = 2000
    batch_wait: float = 0.05
    idle_close: float = 5.0
    store_url: str = "duckdb"
    worker_id: str = ""
    insecure_dev: bool = False
    rules: str = "builtin"

    @property
    def tokens_path(self) -> Path:
        """Where hashed API tokens are kept."""
        return self.project / "tokens.json"

    @property
    def worker(self) -> str:
        """This worker's id: ``worker_id``, else ``mqtt_client_id``."""
        return self.worker_id or self.mqtt_client_id

    @property
    def events_topic(self) -> str:
        """The subscription filter for all incoming events."""
        return f"{self.topic_prefix}/events/#"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The filters the worker subscribes to: ``mqtt_topics``, else every event."""
        return self.mqtt_topics or (self.events_topic,)

    def alert_topic(self, entity: str) -> str:
        """The topic an alert about ``entity`` is published on."""
        safe = "".join("_" if ch in "+#/" else ch for ch in entity) or "_"
        return f"{self.topic_prefix}/alerts/{safe}"

    def check(self) -> ServiceConfig:
        """Validate values; raise :class:`InvalidParameterError` naming the setting."""
        if not 0 < self.port < 65536:
            raise InvalidParameterError(f"setting 'port' must be 1..65535, got {self.port}")
        if not 0 < self.mqtt_port < 65536:
            raise InvalidParameterError(f"setting 'mqtt_port' must be 1..65535, got {self.mqtt_port}")
        if self.max_body_bytes < 1024:
            raise InvalidParameterError(f"setting 'max_body_bytes' must be >= 1024, got {self.max_body_bytes}")
        if self.batch_max < 1 or self.batch_wait <= 0:
            raise InvalidParameterError(
                f"settings 'batch_max' (>= 1) and 'batch_wait' (> 0) got {self.batch_max}, {self.batch_wait}"
            )
        if not self.topic_prefix or any(ch in self.topic_prefix for ch in "+#"):
            raise InvalidParameterError(f"setting 'topic_prefix' must be a plain topic, got {self.topic_prefix!r}")
        for t in self.mqtt_topics:
            rest = t.removeprefix(f"{self.topic_prefix}/events/")
            if rest == t or not _is_filter(rest):
                raise InvalidParameterError(
                    f"setting 'mqtt_topics': {t!r} is not a topic filter under '{self.topic_prefix}/events/'"
                )
        if self.store_url != "duckdb" and not self.store_url.startswith(("postgresql://", "postgres://")):
            raise InvalidParameterError(
                f"setting 'store_url' must be 'duckdb' or a postgresql:// URL, got {self.store_url!r}"
            )
        if self.rules not in ("builtin", "none") and not Path(self.rules).exists():
            raise InvalidParameterError(
                f"setting 'rules' must be 'builtin', 'none' or a rule file or folder, got {self.rules!r} (not found)"
            )
        return self


def _is_filter(topic: str) -> bool:
    """An MQTT topic filter: ``+`` a whole level, ``#`` only the whole last level."""
    levels = topic.split("/")
    return bool(topic) and all(
        ("+" not in p or p == "+") and ("#" not in p or (p == "#" and i == len(levels) - 1))
        for i, p in enumerate(levels)
    )


_TYPES: dict[str, type] = {f.name: f.type for f in fields(ServiceConfig)}  # type: ignore[misc]


def _coerce(name: str, value: Any) -> Any:
    kind = str(_TYPES[name])
    try:
        if "Path" in kind:
            return Path(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            low = str(value).strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return low in ("1", "true", "yes", "on")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                return tuple(p for p in value.split(os.pathsep) if p)
            return tuple(str(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"setting '{name}': cannot read {value!r} as {kind}") from None
    return str(value)


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> ServiceConfig:
    """Build the configuration from a TOML file, the environment and explicit overrides.

    Parameters
    ----------
    overrides:
        Highest-priority values (None values are ignored), e.g. from CLI options.
    env:
        The environment (default ``os.environ``); ``MISUSE_<SETTING>`` in upper case, plus
        ``MISUSE_MQTT_PASSWORD_FILE`` naming a file that holds the MQTT password.
    file:
        A TOML file with a ``[service]`` table; default ``MISUSE_SERVICE_CONFIG`` or
        ``<project>/service.toml`` when it exists.

    Examples
    --------
    >>> cfg = load_config({"port": 9000}, env={"MISUSE_MQTT_PORT": "1884"})
    >>> (cfg.port, cfg.mqtt_port, cfg.host)
    (9000, 1884, '127.0.0.1')
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    for name in over:
        if name not in _TYPES:
            raise InvalidParameterError(f"unknown setting {name!r} (known: {', '.join(sorted(_TYPES))})")
    project = Path(over.get("project") or env.get(ENV_PREFIX + "PROJECT") or ".misuse")
    path = file or (Path(env[ENV_PREFIX + "SERVICE_CONFIG"]) if env.get(ENV_PREFIX + "SERVICE_CONFIG") else None)
    if path is None and (project / "service.toml").exists():
        path = project / "service.toml"
    if path is not None:
        try:
            table = tomllib.loads(path.read_text()).get("service", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidParameterError(f"{path}: cannot read the service config: {exc}") from None
        for k, v in table.items():
            if k not in _TYPES:
                raise InvalidParameterError(f"{path}: unknown setting {k!r}")
            values[k] = _coerce(k, v)
    for name in _TYPES:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = _coerce(name, env[key])
    pw_file = env.get(ENV_PREFIX + "MQTT_PASSWORD_FILE")
    if pw_file and "mqtt_password" not in over:
        try:
            values["mqtt_password"] = Path(pw_file).read_text().strip()
        except OSError as exc:
            raise InvalidParameterError(f"MISUSE_MQTT_PASSWORD_FILE={pw_file}: cannot read: {exc}") from None
    for k, v in over.items():
        values[k] = _coerce(k, v)
    values["project"] = project
    return replace(ServiceConfig(), **values).check()
