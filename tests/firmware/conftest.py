"""Real firmware-like images: busybox binaries from Debian packages, fetched with apt into a cache.

``apt-get download`` fetches ``busybox-static`` and ``busybox`` for the machine's architecture.
Other architectures of ``busybox-static`` (arm64, armhf) come from a private package index kept
in the cache folder (``apt-get -o Dir::State::Lists=...``), so the machine's dpkg architectures
and apt lists are never changed. Packages are unpacked with ``dpkg-deb -x``. Without apt or
network the tests skip with the reason, unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("MISUSE_FIRMWARE_CACHE", Path.home() / ".cache" / "misuse-firmware"))
NATIVE = ("busybox-static", "busybox")
FOREIGN = ("arm64", "armhf")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"firmware test images unavailable under CI=true: {reason}")
    pytest.skip(f"firmware test images unavailable: {reason}")


def _run(cmd: list[str], cwd: Path) -> bool:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _extract(debs: Path, out: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for deb in sorted(debs.glob("*.deb")):
        pkg, _, rest = deb.name.partition("_")
        arch = rest.rsplit("_", 1)[-1].removesuffix(".deb")
        key = f"{pkg}-{arch}"
        target = out / key
        binary = target / "bin" / "busybox"
        if not binary.is_file():
            target.mkdir(parents=True, exist_ok=True)
            if not _run(["dpkg-deb", "-x", str(deb), str(target)], out):
                continue
        if binary.is_file():
            found[key] = binary
    return found


def fetch_busybox(cache: Path = CACHE) -> dict[str, Path]:
    """Download (once) and unpack busybox packages; returns ``{"<package>-<arch>": path}``."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not any(debs.glob("busybox-static_*.deb")):
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            return {}
        _run(["apt-get", "download", *NATIVE], debs)
        lists, apt_cache = cache / "apt" / "lists", cache / "apt" / "cache"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        (apt_cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        opts = ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={apt_cache}", "-o", "Debug::NoLocking=1"]
        for arch in ("amd64", *FOREIGN):
            opts += ["-o", f"APT::Architectures::={arch}"]
        if _run(["apt-get", *opts, "update"], debs):
            for arch in FOREIGN:
                _run(["apt-get", *opts, "download", f"busybox-static:{arch}"], debs)
        shutil.rmtree(cache / "apt", ignore_errors=True)
    return _extract(debs, cache / "unpacked")


@pytest.fixture(scope="session")
def busybox() -> dict[str, bytes]:
    """Known-good busybox images by ``<package>-<arch>`` (at least the native busybox-static)."""
    found = fetch_busybox()
    static = [k for k in found if k.startswith("busybox-static-")]
    if not static:
        _unavailable(f"apt-get download busybox-static gave nothing in {CACHE} (no apt or no network)")
    return {k: p.read_bytes() for k, p in sorted(found.items())}


@pytest.fixture(scope="session")
def native_static(busybox: dict[str, bytes]) -> str:
    """Key of the machine's own busybox-static image."""
    return next(k for k in busybox if k.startswith("busybox-static-") and not k.endswith(FOREIGN))
