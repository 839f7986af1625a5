"""`make demo` installs only the core package: the CLI and the demo must work without any extra.

The extras' modules are made unimportable in a child interpreter (a meta-path finder that refuses
them), which is what a core-only virtual environment looks like to the package.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# import names of every distribution an extra adds (dev tools excluded: they are never imported by misuse)
EXTRA_MODULES = {
    "torch": ["torch"],
    "safetensors": ["safetensors"],
    "pyod": ["pyod"],
    "river": ["river"],
    "fastapi": ["fastapi", "starlette"],
    "uvicorn": ["uvicorn"],
    "paho-mqtt": ["paho"],
    "httpx": ["httpx"],
    "websocket-client": ["websocket"],
    "psycopg": ["psycopg"],
    "flwr": ["flwr"],
    "gymnasium": ["gymnasium"],
    "stable-baselines3": ["stable_baselines3"],
    "matplotlib": ["matplotlib"],
    "dask": ["dask", "distributed"],
    "cryptography": ["cryptography"],
}
BLOCKER = """
import importlib.abc, runpy, sys
BLOCKED = set({blocked!r})
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("not installed in a core-only environment: " + name)
        return None
sys.meta_path.insert(0, Refuse())
"""
RUN_CLI = """
sys.argv = ["misuse", *sys.argv[1:]]
from misuse.cli import main
main()
"""


def _extras() -> list[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {
        re.split(r"[\[<>=~! ]", req, maxsplit=1)[0] for extra, reqs in meta.items() if extra != "dev" for req in reqs
    }
    return sorted(names)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    blocked = sorted({m for mods in EXTRA_MODULES.values() for m in mods})
    code = BLOCKER.format(blocked=blocked) + RUN_CLI
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )


def test_every_extra_is_blocked_here() -> None:
    assert not [n for n in _extras() if n not in EXTRA_MODULES], "add the new extra's modules to EXTRA_MODULES"


def test_the_blocker_really_blocks() -> None:
    r = subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=["cryptography"]) + "\nimport cryptography"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0 and "core-only" in r.stderr


COMMANDS = [
    "ingest", "alerts", "feedback", "train", "detect", "simulate", "demo", "serve", "token", "profile", "federate",
    "rules", "firmware", "integrity", "exfil", "scale", "devices", "policy", "access", "eval",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_help_works_without_extras(command: str, tmp_path: Path) -> None:
    r = _run(command, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Usage" in r.stdout


def test_demo_runs_without_extras(tmp_path: Path) -> None:
    r = _run("demo", "--out", str(tmp_path / "demo"), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "demo" / "report.html").is_file()
    assert '"recall"' in r.stdout


def test_an_extra_command_says_which_extra_to_install(tmp_path: Path) -> None:
    r = _run("firmware", "keygen", "--private", "k.pem", "--public", "k.pub", cwd=tmp_path)
    assert r.returncode != 0
    assert "misuse[firmware]" in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
