"""Real firmware-like images: busybox binaries from Debian packages, fetched with apt into a cache.

``apt-get download`` fetches ``busybox-static`` and ``busybox`` for the machine's architecture.
Other architectures of ``busybox-static`` (arm64, armhf) come from a private package index kept
in the cache folder (``apt-get -o Dir::State::Lists=...``), so the machine's dpkg architectures
and apt lists are never changed. Other upstream versions of the amd64 ``busybox-static``
(Debian bullseye 1.30.1, trixie 1.37.0) come the same way, from a private sources list naming
those releases. Packages are unpacked with ``dpkg-deb -x``. Without apt or
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
OTHER_RELEASES = ("bullseye", "trixie")


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
        opts = _apt_opts(cache, ("amd64", *FOREIGN))
        if _run(["apt-get", *opts, "update"], debs):
            for arch in FOREIGN:
                _run(["apt-get", *opts, "download", f"busybox-static:{arch}"], debs)
        shutil.rmtree(cache / "apt", ignore_errors=True)
    return _extract(debs, cache / "unpacked")


def _apt_opts(cache: Path, archs: tuple[str, ...], sources: Path | None = None) -> list[str]:
    lists, apt_cache = cache / "apt" / "lists", cache / "apt" / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (apt_cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    opts = ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={apt_cache}", "-o", "Debug::NoLocking=1"]
    if sources is not None:
        opts += ["-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null"]
    for arch in archs:
        opts += ["-o", f"APT::Architectures::={arch}"]
    return opts


def fetch_busybox_versions(cache: Path = CACHE) -> dict[str, Path]:
    """Download (once) the amd64 busybox-static of other Debian releases.

    Returns ``{"busybox-static-<upstream version>-amd64": path}``; empty without apt or network.
    """
    debs = cache / "versions"
    debs.mkdir(parents=True, exist_ok=True)
    if not any(debs.glob("busybox-static_*.deb")):
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            return {}
        sources = cache / "versions.sources.list"
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        sources.write_text(
            "".join(
                f"deb [signed-by={keyring}] http://deb.debian.org/debian {suite} main\n" for suite in OTHER_RELEASES
            )
        )
        opts = _apt_opts(cache, ("amd64",), sources)
        if _run(["apt-get", *opts, "update"], debs):
            for suite in OTHER_RELEASES:
                _run(["apt-get", *opts, "download", f"busybox-static/{suite}"], debs)
        shutil.rmtree(cache / "apt", ignore_errors=True)
    found: dict[str, Path] = {}
    for deb in sorted(debs.glob("busybox-static_*_amd64.deb")):
        upstream = deb.name.split("_")[1].replace("%3a", ":").split(":")[-1].split("-")[0]
        target = cache / "unpacked-versions" / upstream
        binaries = [target / "bin" / "busybox", target / "usr" / "bin" / "busybox"]
        if not any(b.is_file() for b in binaries):
            target.mkdir(parents=True, exist_ok=True)
            _run(["dpkg-deb", "-x", str(deb), str(target)], debs)
        for b in binaries:
            if b.is_file():
                found[f"busybox-static-{upstream}-amd64"] = b
    return found


@pytest.fixture(scope="session")
def busybox_versions() -> dict[str, bytes]:
    """Genuine amd64 busybox-static images of other Debian releases (at least one)."""
    found = fetch_busybox_versions()
    if not found:
        _unavailable(f"apt-get download busybox-static/{OTHER_RELEASES} gave nothing in {CACHE}")
    return {k: p.read_bytes() for k, p in sorted(found.items())}


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
