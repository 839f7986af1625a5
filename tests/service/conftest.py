"""Fixtures of the service tests: a real Mosquitto on 127.0.0.1 (from the shipped config), a trained
project, and ``misuse serve`` as a subprocess. Servers are killed by PID at the end."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from misuse.service.auth import TokenStore
from misuse.service.loadgen import train_steady_model
from misuse.store.duck import Store

SHIPPED = Path(__file__).resolve().parents[2] / "misuse" / "service" / "mosquitto"
PASSWORDS = {"misuse-worker": "worker-pw", "gateway-1": "gateway-pw", "misuse-reader": "reader-pw"}
N_ENTITIES, RATE, WINDOW = 20, 400.0, 1.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something listens on 127.0.0.1:port."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def need_binary(name: str) -> str:
    """Path of a system binary; skip without it, fail under CI=true."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        msg = f"{name} not installed (Debian package: see Makefile SYSTEM_PACKAGES)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " and CI=true")
        pytest.skip(msg)
    return path


@dataclass
class Broker:
    """A Mosquitto process run from the shipped config, rewritten for a temp dir and a free port."""

    folder: Path
    port: int
    binary: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.folder / "mosquitto.conf")],
            stdout=open(self.folder / "mosquitto.out", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A running broker with password file and ACL from the shipped configuration."""
    binary = need_binary("mosquitto")
    passwd = need_binary("mosquitto_passwd")
    folder = tmp_path / "broker"
    (folder / "data").mkdir(parents=True)
    pw = folder / "misuse.passwd"
    for i, (user, secret) in enumerate(PASSWORDS.items()):
        subprocess.run([passwd, "-b", *(["-c"] if i == 0 else []), str(pw), user, secret], check=True)
    shutil.copy(SHIPPED / "misuse.acl", folder / "misuse.acl")
    port = free_port()
    conf = (SHIPPED / "mosquitto.conf").read_text()
    conf = (
        conf.replace("/etc/mosquitto/misuse.passwd", str(pw))
        .replace("/etc/mosquitto/misuse.acl", str(folder / "misuse.acl"))
        .replace("/var/lib/mosquitto/", str(folder / "data") + "/")
        .replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    )
    # run as the test's user: a root-started broker would otherwise switch to "mosquitto" and not read tmp
    conf += f"\nuser {getpass.getuser()}\n"
    (folder / "mosquitto.conf").write_text(conf)
    b = Broker(folder, port, binary)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@dataclass
class Project:
    """A project folder with an active model trained on steady traffic and one token per role."""

    root: Path
    tokens: dict[str, str]


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a trained, active model (window 1 s), made once per session."""
    root = tmp_path_factory.mktemp("template") / "project"
    with Store(root) as store:
        train_steady_model(store, "steady", n_entities=N_ENTITIES, rate=RATE, window=WINDOW, windows=60)
    return root


@pytest.fixture
def project(tmp_path: Path, trained_template: Path) -> Project:
    """A fresh copy of the trained project with viewer/analyst/admin tokens."""
    root = tmp_path / "project"
    shutil.copytree(trained_template, root)
    ts = TokenStore(root / "tokens.json")
    return Project(root, {role: ts.create(f"{role}-1", role) for role in ("viewer", "analyst", "admin")})


@dataclass
class Service:
    """``misuse serve`` running as a subprocess."""

    project: Project
    broker: Broker
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        pwfile = self.project.root / "mqtt.pw"
        pwfile.write_text(PASSWORDS["misuse-worker"])
        cmd = [
            sys.executable, "-c", "from misuse.cli import main; main()", "serve",
            "--project", str(self.project.root), "--port", str(self.port),
            "--mqtt-port", str(self.broker.port), "--mqtt-username", "misuse-worker",
            "--mqtt-password-file", str(pwfile), "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "MISUSE_IDLE_CLOSE": "1.5", "MISUSE_BATCH_WAIT": "0.02"}
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=open(self.project.root / "serve.out", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, timeout=60)
        end = time.monotonic() + 20
        while self.get("/api/health")["mqtt"] != "connected":
            if time.monotonic() > end:
                raise TimeoutError("service never connected to the broker")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str, role: str = "viewer") -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {self.project.tokens[role]}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def log(self) -> str:
        return (self.project.root / "serve.out").read_text(errors="replace")[-3000:]


@pytest.fixture
def service(project: Project, broker: Broker) -> Iterator[Service]:
    """The service, subscribed to the broker with the worker's credentials."""
    svc = Service(project, broker, free_port())
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
