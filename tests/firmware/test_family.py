"""The family check on real busybox images and on copies the tests modify."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, NotFittedError, ParseError
from misuse.firmware.elf import parse_elf
from misuse.firmware.family import FamilyModel

C2 = b"http://cnc.badhost.ru:23/bot"


@pytest.fixture(scope="module")
def family(busybox: dict[str, bytes]) -> FamilyModel:
    return FamilyModel().fit(list(busybox.values()), list(busybox))


def test_a_reference_image_is_known_by_its_hash(
    family: FamilyModel, busybox: dict[str, bytes], native_static: str
) -> None:
    findings = family.inspect(busybox[native_static])

    assert findings == []


def test_genuine_other_versions_raise_nothing(busybox: dict[str, bytes], busybox_versions: dict[str, bytes]) -> None:
    for held_out, data in busybox_versions.items():
        refs = {**busybox, **{k: v for k, v in busybox_versions.items() if k != held_out}}
        model = FamilyModel().fit(list(refs.values()), list(refs))

        findings = model.inspect(data, held_out)

        assert findings == [], held_out


def test_an_image_for_a_machine_no_reference_has_is_one_machine_finding(
    busybox: dict[str, bytes], native_static: str
) -> None:
    arch = native_static.rsplit("-", 1)[1]
    refs = {k: v for k, v in busybox.items() if k.endswith(arch)}
    foreign = [k for k in busybox if not k.endswith(arch)]
    if not foreign:
        pytest.skip("no busybox-static of another architecture was fetched")
    model = FamilyModel().fit(list(refs.values()), list(refs))

    findings = model.inspect(busybox[foreign[0]])

    assert [f.check for f in findings].count("machine") == 1
    assert not [f for f in findings if f.check == "section"]
    assert parse_elf(busybox[foreign[0]]).machine in findings[0].summary


def test_appended_payload_is_an_overlay_at_the_old_end(
    family: FamilyModel, busybox: dict[str, bytes], native_static: str
) -> None:
    orig = busybox[native_static]
    payload = np.random.default_rng(1).bytes(40_000)

    findings = family.inspect(orig + payload)

    overlay = [f for f in findings if f.check == "overlay"]
    assert [(f.offset, f.length) for f in overlay] == [(len(orig), len(payload))]
    assert overlay[0].severity == "high"


def test_patched_string_reports_the_host_at_its_offset(
    family: FamilyModel, busybox: dict[str, bytes], native_static: str
) -> None:
    orig = bytearray(busybox[native_static])
    at = orig.find(b"https://github.com/")
    assert at > 0
    orig[at : at + len(C2)] = C2

    findings = family.inspect(bytes(orig))

    hosts = [f for f in findings if f.check == "string"]
    assert hosts and all(f.offset <= at < f.offset + f.length for f in hosts)
    assert "cnc.badhost.ru" in hosts[0].actual
    assert not [f for f in findings if f.check == "overlay"]


def test_replaced_section_is_flagged_inside_the_section(
    family: FamilyModel, busybox: dict[str, bytes], native_static: str
) -> None:
    orig = busybox[native_static]
    sec = next(s for s in parse_elf(orig).sections if s.name == ".eh_frame")
    copy = bytearray(orig)
    copy[sec.offset : sec.end] = np.random.default_rng(2).bytes(sec.size)

    findings = family.inspect(bytes(copy))

    regions = [f for f in findings if f.check == "region"]
    covered = sum(f.length for f in regions)
    assert regions and all(sec.offset <= f.offset and f.offset + f.length <= sec.end for f in regions)
    assert covered >= 0.8 * sec.size


def test_compressed_code_is_found_against_code_of_the_same_machine(
    busybox: dict[str, bytes], busybox_versions: dict[str, bytes], native_static: str
) -> None:
    refs = {**{k: v for k, v in busybox.items() if k != native_static}, **busybox_versions}
    model = FamilyModel().fit(list(refs.values()), list(refs))
    orig = busybox[native_static]
    text = next(s for s in parse_elf(orig).sections if s.name == ".text")
    at = text.offset + 65536
    copy = bytearray(orig)
    copy[at : at + 16384] = zlib.compress(orig[text.offset : text.offset + 65536], 9)[:16384].ljust(16384, b"\0")

    findings = model.inspect(bytes(copy))

    assert findings and all(f.check == "region" for f in findings)
    assert all(at - model.window < f.offset < at + 16384 for f in findings)


def test_alerts_explain_each_finding_with_its_offset(
    family: FamilyModel, busybox: dict[str, bytes], native_static: str
) -> None:
    data = busybox[native_static] + b"\x00" * 8192 + C2
    findings = family.inspect(data)

    alerts = family.to_alerts(findings, "cam-1", "fw.bin", "digest")

    assert {a.detector for a in alerts} >= {"firmware.family.overlay"}
    assert all(a.misuse_type == MisuseType.FIRMWARE_TAMPERING.value for a in alerts)
    offsets = {c["offset"] for a in alerts for c in a.contributions}
    assert len(busybox[native_static]) in offsets
    assert all({"typical", "actual"} <= set(c) for a in alerts for c in a.contributions)


def test_save_load_gives_the_same_findings(
    family: FamilyModel, busybox: dict[str, bytes], native_static: str, tmp_path: Path
) -> None:
    data = busybox[native_static] + np.random.default_rng(3).bytes(10_000)
    family.save(tmp_path / "family.json")

    loaded = FamilyModel.load(tmp_path / "family.json")

    assert [(f.check, f.offset, f.length) for f in loaded.inspect(data)] == [
        (f.check, f.offset, f.length) for f in family.inspect(data)
    ]


def test_raw_images_are_profiled_by_windows() -> None:
    rng = np.random.default_rng(0)
    good = [bytes(rng.integers(0, 16, 65536, dtype=np.uint8)) for _ in range(3)]
    bad = good[1][:8192] + bytes(4096) + good[1][12288:]

    findings = FamilyModel().fit(good).inspect(bad)

    assert [(f.check, f.offset, f.length) for f in findings] == [("region", 8192, 4096)]


def test_parameters_and_state_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="window"):
        FamilyModel(window=10)
    with pytest.raises(NotFittedError):
        FamilyModel().inspect(b"abc")
    with pytest.raises(InvalidParameterError):
        FamilyModel().fit([])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ParseError, match=r"bad\.json"):
        FamilyModel.load(tmp_path / "bad.json")
