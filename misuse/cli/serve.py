"""``misuse serve`` (API + streaming worker + dashboard) and ``misuse token`` (API tokens)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Annotated

import typer

from misuse.cli.common import DEFAULT_PROJECT, EXIT_USAGE, JsonOpt, ProjectOpt, console, emit_json, err_console, handled
from misuse.errors import InvalidParameterError

token_app = typer.Typer(help="Create, list and revoke API tokens (stored hashed in <project>/tokens.json).")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_password(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidParameterError(f"--mqtt-password-file {path}: cannot read the broker password: {why}") from None


def serve(
    project: ProjectOpt = DEFAULT_PROJECT,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (env MISUSE_HOST).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="HTTP port (env MISUSE_PORT).")] = None,
    mqtt_host: Annotated[str | None, typer.Option("--mqtt-host", help="Broker address.")] = None,
    mqtt_port: Annotated[int | None, typer.Option("--mqtt-port", help="Broker port.")] = None,
    mqtt_username: Annotated[str | None, typer.Option("--mqtt-username", help="Broker user name.")] = None,
    mqtt_password_file: Annotated[
        Path | None, typer.Option("--mqtt-password-file", help="File holding the broker password.")
    ] = None,
    no_mqtt: Annotated[bool, typer.Option("--no-mqtt", help="Do not subscribe to a broker (HTTP/Zeek only).")] = False,
    zeek_tail: Annotated[
        list[Path] | None, typer.Option("--zeek-tail", help="Zeek log to follow as it grows (repeatable).")
    ] = None,
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="Run without API tokens or broker credentials (loopback only).")
    ] = False,
    rules: Annotated[
        str | None,
        typer.Option("--rules", help="Rules run over the stream: builtin (the IoT pack), none, or a rule file/folder."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the live service: REST API, dashboard, MQTT subscription and Zeek tailing.

    Refuses to start without API tokens and broker credentials unless --insecure-dev.
    """
    import uvicorn

    from misuse.service.app import create_app, open_state
    from misuse.service.auth import TokenStore
    from misuse.service.config import load_config

    with handled():
        password = _read_password(mqtt_password_file) if mqtt_password_file else None
        cfg = load_config(
            {
                "project": project,
                "host": host,
                "port": port,
                "mqtt_host": mqtt_host,
                "mqtt_port": mqtt_port,
                "mqtt_username": mqtt_username,
                "mqtt_password": password,
                "mqtt_enabled": False if no_mqtt else None,
                "zeek_tail": [str(p) for p in zeek_tail] if zeek_tail else None,
                "insecure_dev": True if insecure_dev else None,
                "rules": rules,
            }
        )
        problems = []
        if cfg.insecure_dev:
            if not _is_loopback(cfg.host):
                problems.append(
                    f"--insecure-dev (no authentication) binds only a loopback address (127.0.0.1, ::1 or "
                    f"localhost), not {cfg.host}: leave --host / MISUSE_HOST unset for a local run, or drop "
                    f"--insecure-dev and configure API tokens and broker credentials to listen on {cfg.host}"
                )
            else:
                err_console.print("[bold yellow]warning:[/] --insecure-dev: no authentication on the API or the broker")
        else:
            if len(TokenStore(cfg.tokens_path)) == 0:
                problems.append(
                    f"no API token in {cfg.tokens_path}: run `misuse token create --name <you> --role admin`"
                )
            if cfg.mqtt_enabled and not (cfg.mqtt_username and cfg.mqtt_password):
                problems.append(
                    "no broker credentials: set --mqtt-username and --mqtt-password-file "
                    "(or MISUSE_MQTT_USERNAME / MISUSE_MQTT_PASSWORD_FILE), or pass --no-mqtt"
                )
        if problems:
            for p in problems:
                err_console.print(f"[bold red]error:[/] {p}", highlight=False, soft_wrap=True)
            hint = "" if cfg.insecure_dev else " (pass --insecure-dev for a local development run on 127.0.0.1)"
            err_console.print(f"refusing to start{hint}")
            raise typer.Exit(EXIT_USAGE)
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # open the store here, so a bad store_url or a locked store is a clean error, not a traceback
        app = create_app(cfg, state=open_state(cfg))
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=log_level, access_log=False)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="Who or what the token is for.")],
    role: Annotated[str, typer.Option("--role", help="viewer, analyst or admin.")] = "viewer",
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Create a token and print it once (only its hash is kept)."""
    from misuse.service.auth import TokenStore

    with handled():
        store = TokenStore(project / "tokens.json")
        token = store.create(name, role)
        if as_json:
            emit_json({"name": name, "role": role, "token": token})
        else:
            console.print(f"token for [bold]{name}[/] ({role}); shown only now:", highlight=False)
            print(token)


@token_app.command("list")
def token_list(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False) -> None:
    """List tokens (ids, names, roles; never the tokens)."""
    from misuse.service.auth import TokenStore

    with handled():
        rows = [t.public() for t in TokenStore(project / "tokens.json").list()]
        if as_json:
            emit_json(rows)
            return
        for r in rows:
            console.print(f"{r['token_id']}  {r['role']:<8} {r['name']}  {r['created_at']}", highlight=False)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token id (see `misuse token list`).")],
    project: ProjectOpt = DEFAULT_PROJECT,
) -> None:
    """Revoke a token."""
    from misuse.service.auth import TokenStore

    with handled():
        TokenStore(project / "tokens.json").revoke(token_id)
        console.print(f"revoked {token_id}")
