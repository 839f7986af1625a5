"""A learned profile of a firmware family, and the inspection of an image against it.

The model learns from known-good images of one family (other versions, other architectures):

* the section layout (names, flags) and how much lies past the described ELF content (overlay);
* for every section name, the byte statistics of its 4 KiB windows (entropy, printable share,
  zero share, top-byte share), with a nearest-neighbour distance threshold learned by leaving
  one reference out at a time; kept over all machines, and for executable sections also per
  machine (code of one instruction set is compared with code of the same set when at least two
  references have it; data sections look alike across instruction sets and stay pooled);
* the vocabulary of printable strings.

An inspected image is compared window by window with the known-good windows of the same
section; windows farther from all of them than the learned threshold are merged into regions and
reported with their offsets. Bytes after the ELF content, sections no reference of the same
machine has (executable ones, or data sections of at least one window: compilers add and drop
small constant pools between versions), an image built for a machine no reference is built for,
and new strings that look like hosts, URLs or remote-shell hints are reported too.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> good = [bytes(rng.integers(0, 16, 65536, dtype=np.uint8)) for _ in range(3)]
>>> model = FamilyModel().fit(good)
>>> bad = good[0][:16384] + rng.bytes(8192) + good[0][24576:]
>>> [(f.check, f.offset, f.length) for f in model.inspect(bad)]
[('region', 16384, 8192)]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType, Severity
from misuse.errors import InvalidParameterError, NotFittedError, ParseError
from misuse.firmware.elf import ElfLayout, is_elf, parse_elf
from misuse.firmware.features import WINDOW_FEATURES, entropy, string_kind, strings_with_offsets, window_features
from misuse.firmware.signing import sha256

WHOLE = "<image>"
DETECTOR = "firmware.family"
_MIN_THRESHOLD = 0.05
_SHF_EXECINSTR = 0x4
_SEP = "::"
_KIND_WORDS = {"host": "host/URL", "risky": "remote-shell/downloader"}
_SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


@dataclass
class Finding:
    """One thing an inspected image has that the family's known-good images do not.

    Parameters
    ----------
    check:
        ``region`` (unusual bytes), ``overlay`` (data after the ELF content), ``section``
        (a section no reference of the same machine has), ``machine`` (no reference is built for
        the image's machine), ``string`` (new host/URL/remote-shell string).
    offset, length:
        Where in the image (bytes).
    score:
        How far beyond the learned limit (1.0 = at the limit).
    severity:
        low / medium / high / critical.
    summary:
        One sentence.
    typical, actual:
        What known-good images show there, and what this image has.
    """

    check: str
    offset: int
    length: int
    score: float
    severity: str
    summary: str
    typical: str
    actual: str


def _sections(data: bytes, name: str) -> tuple[ElfLayout | None, list[tuple[str, int, int]]]:
    """(layout, [(section name, start, end)]) — one pseudo-section for non-ELF images."""
    if not is_elf(data):
        return None, [(WHOLE, 0, len(data))]
    layout = parse_elf(data, name)
    return layout, [(s.name, s.offset, s.end) for s in layout.sections]


@dataclass
class FamilyModel:
    """Profile of known-good images of one firmware family.

    Parameters
    ----------
    window:
        Window size in bytes for the byte statistics.
    quantile:
        Quantile of the leave-one-out neighbour distances taken as the threshold.
    margin:
        Factor the threshold is widened by.
    max_windows:
        Cap on reference windows kept per section name (evenly subsampled).
    """

    window: int = 4096
    quantile: float = 0.995
    margin: float = 1.5
    max_windows: int = 4000
    references_: list[dict[str, Any]] = field(default_factory=list)
    windows_: dict[str, np.ndarray] = field(default_factory=dict)
    owners_: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds_: dict[str, float] = field(default_factory=dict)
    strings_: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.window < 256:
            raise InvalidParameterError(f"The 'window' parameter of FamilyModel must be >= 256. Got {self.window}.")
        if not 0.5 < self.quantile <= 1.0:
            raise InvalidParameterError(f"The 'quantile' parameter must be in (0.5, 1]. Got {self.quantile}.")
        if self.margin < 1.0:
            raise InvalidParameterError(f"The 'margin' parameter must be >= 1. Got {self.margin}.")

    def fit(self, images: list[bytes], names: list[str] | None = None) -> FamilyModel:
        """Learn the family from known-good images (at least one); returns self."""
        if not images:
            raise InvalidParameterError("FamilyModel.fit needs at least one known-good image, got 0")
        names = names or [f"reference-{i}" for i in range(len(images))]
        feats: dict[str, list[np.ndarray]] = {}
        owners: dict[str, list[np.ndarray]] = {}
        self.references_, self.strings_ = [], set()
        for i, (data, name) in enumerate(zip(images, names, strict=True)):
            layout, secs = _sections(data, name)
            code = {s.name for s in layout.sections if s.flags & _SHF_EXECINSTR} if layout else set()
            for sec, start, end in secs:
                f = window_features(data, self.window, start, end)
                if len(f):
                    for key in (sec, _machine_key(layout.machine, sec)) if layout and sec in code else (sec,):
                        feats.setdefault(key, []).append(f)
                        owners.setdefault(key, []).append(np.full(len(f), i))
            self.strings_.update(s for _, s in strings_with_offsets(data))
            self.references_.append(
                {
                    "name": name,
                    "sha256": sha256(data),
                    "size": len(data),
                    "machine": layout.machine if layout else "raw",
                    "sections": [s for s, _, _ in secs],
                    "overlay": len(data) - layout.content_end if layout else 0,
                }
            )
        rng = np.random.default_rng(0)
        self.windows_, self.owners_, self.thresholds_ = {}, {}, {}
        for sec, parts in feats.items():
            w, o = np.vstack(parts), np.concatenate(owners[sec])
            if len(w) > self.max_windows:
                keep = np.sort(rng.choice(len(w), self.max_windows, replace=False))
                w, o = w[keep], o[keep]
            self.windows_[sec], self.owners_[sec] = w, o
            self.thresholds_[sec] = self._learn_threshold(w, o)
        return self

    def _learn_threshold(self, w: np.ndarray, owner: np.ndarray) -> float:
        if len(np.unique(owner)) < 2:
            return _MIN_THRESHOLD * self.margin
        dists = []
        for i in np.unique(owner):
            mine, rest = w[owner == i], w[owner != i]
            dists.append(_nearest(mine, rest))
        d = np.concatenate(dists)
        return max(_MIN_THRESHOLD, float(np.quantile(d, self.quantile))) * self.margin

    def _check(self) -> None:
        if not self.references_:
            raise NotFittedError("FamilyModel has not learned any known-good image; call fit first")

    def inspect(self, data: bytes, name: str = "image") -> list[Finding]:
        """Everything in ``data`` that the family's known-good images do not have, by offset."""
        self._check()
        if sha256(data) in {r["sha256"] for r in self.references_}:
            return []
        layout, secs = _sections(data, name)
        findings: list[Finding] = []
        machine = layout.machine if layout else "raw"
        same = [r for r in self.references_ if r["machine"] == machine]
        if not same:
            known = sorted({str(r["machine"]) for r in self.references_})
            findings.append(
                Finding(
                    "machine",
                    0,
                    min(len(data), 64),
                    1.0,
                    "medium",
                    f"built for {machine}, but no known-good image of the family is (they are {', '.join(known)}); "
                    "its section layout cannot be compared",
                    f"machines {known}",
                    machine,
                )
            )
        known_sections = {s for r in same for s in r["sections"]}
        flags = {s.name: s.flags for s in layout.sections} if layout else {}
        for sec, start, end in secs:
            small_data = end - start < self.window and not flags.get(sec, 0) & _SHF_EXECINSTR
            if same and sec not in known_sections and end > start and not small_data:
                findings.append(
                    Finding(
                        "section",
                        start,
                        end - start,
                        2.0,
                        "high",
                        f"section {sec} ({end - start:,} bytes at {start:#x}) is in no known-good {machine} image",
                        f"sections {sorted(known_sections)[:12]}",
                        sec,
                    )
                )
            findings.extend(self._regions(data, sec, start, end, machine))
        if layout is not None:
            findings.extend(self._overlay(data, layout))
        findings.extend(self._strings(data))
        return sorted(findings, key=lambda f: (f.offset, f.check))

    def _regions(self, data: bytes, sec: str, start: int, end: int, machine: str) -> list[Finding]:
        key = _machine_key(machine, sec)
        if key not in self.windows_ or len(np.unique(self.owners_[key])) < 2:
            key = sec
        pooled = [v for k, v in self.windows_.items() if _SEP not in k]
        ref = self.windows_.get(key)
        if ref is None:
            ref = np.vstack(pooled) if pooled else None
        f = window_features(data, self.window, start, end)
        if ref is None or not len(f):
            return []
        limit = self.thresholds_.get(
            key, max((v for k, v in self.thresholds_.items() if _SEP not in k), default=_MIN_THRESHOLD)
        )
        d = _nearest(f, ref)
        bad = d > limit
        out = []
        i = 0
        while i < len(bad):
            if not bad[i]:
                i += 1
                continue
            j = i
            while j < len(bad) and bad[j]:
                j += 1
            lo, hi = start + i * self.window, start + j * self.window
            score = float(d[i:j].max() / limit)
            typ = ref.mean(axis=0)
            act = f[i:j].mean(axis=0)
            out.append(
                Finding(
                    "region",
                    lo,
                    hi - lo,
                    score,
                    "high" if score > 2 else "medium",
                    f"{hi - lo:,} bytes at {lo:#x} in {sec} look unlike any known-good {sec} "
                    f"(entropy {act[0] * 8:.2f} bits/byte, typical {typ[0] * 8:.2f})",
                    _describe(typ),
                    _describe(act),
                )
            )
            i = j
        return out

    def _overlay(self, data: bytes, layout: ElfLayout) -> list[Finding]:
        extra = len(data) - layout.content_end
        usual = max((int(r["overlay"]) for r in self.references_), default=0)
        if extra <= usual:
            return []
        tail = data[layout.content_end :]
        return [
            Finding(
                "overlay",
                layout.content_end,
                extra,
                float(extra / max(usual, 1)),
                "high",
                f"{extra:,} bytes appended after the end of the ELF content at {layout.content_end:#x} "
                f"(entropy {entropy(tail):.2f} bits/byte)",
                f"at most {usual} bytes after the ELF content",
                f"{extra} bytes, entropy {entropy(tail):.2f}, starts {tail[:16].hex()}",
            )
        ]

    def _strings(self, data: bytes) -> list[Finding]:
        out = []
        for off, text in strings_with_offsets(data):
            if text in self.strings_:
                continue
            kind = string_kind(text)
            if kind == "text":
                continue
            out.append(
                Finding(
                    "string",
                    off,
                    len(text),
                    2.0 if kind == "host" else 1.5,
                    "high" if kind == "host" else "medium",
                    f"new {_KIND_WORDS[kind]} string at {off:#x}: {text[:80]!r}",
                    "not in any known-good image of the family",
                    text[:200],
                )
            )
        return out

    def score(self, data: bytes) -> float:
        """Largest finding score (0 for an image with no finding; >= 1 means beyond a learned limit)."""
        return max((f.score for f in self.inspect(data)), default=0.0)

    def to_alerts(
        self, findings: list[Finding], entity: str, image_name: str, digest: str, at: datetime | None = None
    ) -> list[Alert]:
        """One alert per check that found something, each finding a contribution with its offset."""
        when = at or datetime.now(UTC)
        by_check: dict[str, list[Finding]] = {}
        for f in findings:
            by_check.setdefault(f.check, []).append(f)
        alerts = []
        for check, items in by_check.items():
            items = sorted(items, key=lambda f: -f.score)
            worst = max(items, key=lambda f: _SEVERITY_RANK[f.severity]).severity
            total = sum(f.length for f in items)
            alerts.append(
                Alert(
                    entity=entity,
                    window_start=when,
                    window_end=when,
                    score=float(items[0].score),
                    threshold=1.0,
                    severity=Severity(worst).value,
                    misuse_type=MisuseType.FIRMWARE_TAMPERING.value,
                    detector=f"{DETECTOR}.{check}",
                    summary=f"{image_name}: {len(items)} {check} finding(s), {total:,} bytes; {items[0].summary}",
                    contributions=[
                        {
                            "feature": f"{check}@{f.offset:#x}+{f.length}",
                            "offset": f.offset,
                            "length": f.length,
                            "typical": f.typical,
                            "actual": f.actual,
                            "weight": round(f.score, 3),
                        }
                        for f in items[:20]
                    ],
                    evidence=[image_name, digest],
                )
            )
        return alerts

    def save(self, path: Path) -> None:
        """Write the profile as JSON (no code, no pickle)."""
        self._check()
        body = {
            "format": "misuse-firmware-family/1",
            "params": {"window": self.window, "quantile": self.quantile, "margin": self.margin},
            "references": self.references_,
            "windows": {k: v.round(6).tolist() for k, v in self.windows_.items()},
            "owners": {k: v.tolist() for k, v in self.owners_.items()},
            "thresholds": self.thresholds_,
            "strings": sorted(self.strings_),
        }
        path.write_text(json.dumps(body))

    @classmethod
    def load(cls, path: Path) -> FamilyModel:
        """Read a profile written by :meth:`save`.

        Raises
        ------
        ParseError
            When the file is not such a profile.
        """
        try:
            body = json.loads(path.read_text())
            if body.get("format") != "misuse-firmware-family/1":
                raise ValueError(f"format {body.get('format')!r}")
            m = cls(**body["params"])
            m.references_ = list(body["references"])
            width = len(WINDOW_FEATURES)
            m.windows_ = {k: np.asarray(v, dtype=float).reshape(-1, width) for k, v in body["windows"].items()}
            m.owners_ = {k: np.asarray(v, dtype=int) for k, v in body["owners"].items()}
            m.thresholds_ = {k: float(v) for k, v in body["thresholds"].items()}
            m.strings_ = set(body["strings"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"not a firmware family profile ({exc})", source=str(path)) from None
        return m


def _machine_key(machine: str, section: str) -> str:
    """Key of one machine's windows of a section (the bare section name pools all machines)."""
    return f"{machine}{_SEP}{section}"


def _nearest(a: np.ndarray, b: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Euclidean distance from each row of ``a`` to its nearest row of ``b``."""
    out = np.empty(len(a))
    for i in range(0, len(a), chunk):
        d = ((a[i : i + chunk, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        out[i : i + chunk] = np.sqrt(d.min(axis=1))
    return out


def _describe(v: np.ndarray) -> str:
    return ", ".join(f"{n} {x:.2f}" for n, x in zip(WINDOW_FEATURES, v, strict=True))


def summarise(findings: list[Finding]) -> dict[str, Any]:
    """Counts per check and the findings as dicts (for JSON output)."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.check] = counts.get(f.check, 0) + 1
    return {"counts": counts, "findings": [asdict(f) for f in findings]}
