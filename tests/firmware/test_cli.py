"""``misuse firmware keygen|sign|verify|inspect`` end to end (the sub-app on its own)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from misuse.cli.firmware import EXIT_TAMPERED, firmware_app
from misuse.store.duck import Store

runner = CliRunner()


def test_keygen_sign_verify_and_tamper(tmp_path: Path) -> None:
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\x00firmware image\x00" * 100)
    priv, pub, allow = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "allow.json"

    made = runner.invoke(firmware_app, ["keygen", "--private", str(priv), "--public", str(pub)])
    signed = runner.invoke(
        firmware_app,
        ["sign", str(image), "--key", str(priv), "--model", "cam", "--version", "1", "--allow-list", str(allow)],
    )
    good = runner.invoke(
        firmware_app, ["verify", str(image), "--pubkey", str(pub), "--allow-list", str(allow), "--json"]
    )
    image.write_bytes(image.read_bytes() + b"payload")
    store = str(tmp_path / "p")
    bad = runner.invoke(
        firmware_app,
        ["verify", str(image), "--pubkey", str(pub), "--allow-list", str(allow), "--json", "--store-alerts", store],
    )
    again = runner.invoke(firmware_app, ["keygen", "--private", str(priv), "--public", str(pub)])

    assert made.exit_code == 0 and signed.exit_code == 0, signed.output
    assert json.loads(good.stdout)["ok"] is True
    assert bad.exit_code == EXIT_TAMPERED
    assert {a["detector"] for a in json.loads(bad.stdout)["alerts"]} == {
        "firmware.verify.hash",
        "firmware.verify.allow_list",
    }
    with Store(tmp_path / "p", create=False) as store:
        assert len(store.alerts()) == 2
    assert again.exit_code == 3


def test_verify_names_the_checked_file_not_the_manifests_image(tmp_path: Path) -> None:
    signed, modified = tmp_path / "bb.bin", tmp_path / "mod.bin"
    signed.write_bytes(b"\x7fELF genuine image" * 50)
    modified.write_bytes(b"\x7fELF genuine image" * 49 + b"\x7fELF backdoored!!")
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    runner.invoke(firmware_app, ["keygen", "--private", str(priv), "--public", str(pub)])
    runner.invoke(firmware_app, ["sign", str(signed), "--key", str(priv), "--model", "cam", "--version", "1"])
    manifest = str(tmp_path / "bb.bin.manifest.json")

    out = runner.invoke(firmware_app, ["verify", str(modified), "-m", manifest, "--pubkey", str(pub), "--json"])

    assert out.exit_code == EXIT_TAMPERED
    (alert,) = json.loads(out.stdout)["alerts"]
    assert alert["summary"].startswith(f"image {modified} differs from the manifest's image bb.bin (")
    assert alert["evidence"][0] == str(modified)
    assert alert["contributions"][0]["typical"].startswith("bb.bin: ")


def test_inspect_reports_offsets_and_saves_a_profile(
    tmp_path: Path, busybox: dict[str, bytes], native_static: str
) -> None:
    refs = []
    for name, data in busybox.items():
        refs.append(tmp_path / name)
        refs[-1].write_bytes(data)
    target = tmp_path / "suspect"
    target.write_bytes(busybox[native_static] + b"\x7fELF" + bytes(range(256)) * 64)
    args = [x for r in refs for x in ("--reference", str(r))]

    first = runner.invoke(
        firmware_app, ["inspect", str(target), *args, "--save-profile", str(tmp_path / "fam.json"), "--json"]
    )
    second = runner.invoke(firmware_app, ["inspect", str(refs[0]), "--profile", str(tmp_path / "fam.json")])
    none = runner.invoke(firmware_app, ["inspect", str(target)])

    body = json.loads(first.stdout)
    assert first.exit_code == EXIT_TAMPERED
    assert body["counts"]["overlay"] == 1
    assert body["findings"][-1]["offset"] == len(busybox[native_static])
    assert second.exit_code == 0 and "ok" in second.stdout
    assert none.exit_code == 3
