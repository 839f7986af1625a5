"""Signed manifests and allow-lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, ParseError
from misuse.firmware.signing import (
    AllowList,
    Manifest,
    generate_key,
    load_private_key,
    load_public_key,
    save_keypair,
    sign_image,
    verify_image,
)


def test_signed_image_verifies_and_survives_the_file_round_trip(tmp_path: Path) -> None:
    key = generate_key()
    save_keypair(key, tmp_path / "k", tmp_path / "k.pub")
    manifest = sign_image(b"image-bytes", load_private_key(tmp_path / "k"), "cam", "1.2", "fw.bin")

    back = Manifest.from_json(manifest.to_json())
    result = verify_image(b"image-bytes", back, load_public_key(tmp_path / "k.pub"))

    assert result.ok and result.checks == {"signature": True, "hash": True}
    assert result.alerts == []


def test_each_failure_is_an_explained_alert() -> None:
    key, other = generate_key(), generate_key()
    manifest = sign_image(b"good", key, "cam", "1.0", "fw.bin")
    allowed = AllowList()
    allowed.add("cam", "0.9", b"older")

    changed = verify_image(b"evil", manifest, key.public_key(), allowed, entity="cam-7")
    forged = verify_image(b"good", manifest, other.public_key())

    assert changed.checks == {"signature": True, "hash": False, "allow_list": False}
    assert {a.detector for a in changed.alerts} == {"firmware.verify.hash", "firmware.verify.allow_list"}
    assert all(a.entity == "cam-7" and a.misuse_type == MisuseType.FIRMWARE_TAMPERING for a in changed.alerts)
    assert "0.9" in changed.alerts[-1].contributions[0]["typical"]
    assert forged.checks["signature"] is False and forged.alerts[0].severity == "critical"


def test_edited_manifest_breaks_the_signature() -> None:
    key = generate_key()
    manifest = sign_image(b"good", key, "cam", "1.0", "fw.bin")
    manifest.version = "2.0"

    assert verify_image(b"good", manifest, key.public_key()).checks["signature"] is False


def test_allow_list_round_trip(tmp_path: Path) -> None:
    allowed = AllowList()
    allowed.add("cam", "1.0", b"a")
    allowed.save(tmp_path / "allow.json")

    back = AllowList.load(tmp_path / "allow.json")

    assert back.models == allowed.models


def test_bad_inputs_fail_loudly(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_text("not a key")
    with pytest.raises(ParseError, match=r"x\.pem"):
        load_private_key(tmp_path / "x.pem")
    with pytest.raises(ParseError, match=r"x\.pem"):
        load_public_key(tmp_path / "x.pem")
    with pytest.raises(ParseError, match=r"x\.pem"):
        AllowList.load(tmp_path / "x.pem")
    with pytest.raises(InvalidParameterError, match="model"):
        sign_image(b"x", generate_key(), "", "1", "fw")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_manifest_text_gives_a_manifest_or_a_parse_error(text: str) -> None:
    try:
        m = Manifest.from_json(text, source="m.json")
    except ParseError as exc:
        assert str(exc).startswith("m.json: ")
        return
    assert isinstance(m, Manifest)
