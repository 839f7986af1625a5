"""``misuse firmware keygen|sign|verify|inspect``: signed manifests, allow-lists and the family check.

Exit codes follow :mod:`misuse.cli.common`; ``verify`` and ``inspect`` exit 6 when the image
fails a check (so scripts can gate an update on them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from misuse.alerts.model import Alert
from misuse.cli.common import JsonOpt, console, emit_json, handled, open_store
from misuse.errors import InvalidParameterError, ParseError
from misuse.firmware.family import FamilyModel, summarise
from misuse.firmware.signing import (
    AllowList,
    Manifest,
    generate_key,
    load_private_key,
    load_public_key,
    save_keypair,
    sha256,
    sign_image,
    verify_image,
)

EXIT_TAMPERED = 6
firmware_app = typer.Typer(
    help="Firmware validation: sign images, verify them against signed manifests and allow-lists, "
    "inspect them against known-good images of the same family.",
    no_args_is_help=True,
)
ImageArg = Annotated[Path, typer.Argument(help="Firmware image file.", exists=True, dir_okay=False)]
StoreOpt = Annotated[
    Path | None, typer.Option("--store-alerts", help="Project folder whose store receives the alerts.")
]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read ({exc.strerror})", source=str(path)) from None


def _store(alerts: list[Alert], project: Path | None) -> None:
    if project is not None and alerts:
        with open_store(project, create=True) as store:
            store.add_alerts(alerts, dataset="firmware", model="firmware")


@firmware_app.command("keygen")
def keygen(
    private: Annotated[Path, typer.Option("--private", help="Where to write the private key (PEM).")],
    public: Annotated[Path, typer.Option("--public", help="Where to write the public key (PEM).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> None:
    """Make an Ed25519 signing key pair."""
    with handled():
        for p in (private, public):
            if p.exists() and not force:
                raise InvalidParameterError(f"{p} exists; pass --force to overwrite it")
        save_keypair(generate_key(), private, public)
        console.print(f"wrote {private} (keep it secret) and {public}")


@firmware_app.command("sign")
def sign(
    image: ImageArg,
    key: Annotated[Path, typer.Option("--key", help="Ed25519 private key (PEM).", exists=True)],
    model: Annotated[str, typer.Option("--model", help="Device model the image is for.")],
    version: Annotated[str, typer.Option("--version", help="Firmware version.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Manifest (default IMAGE.manifest.json).")] = None,
    allow_list: Annotated[
        Path | None, typer.Option("--allow-list", help="Also allow the image's hash in this list (created if absent).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a signed manifest for an image (and optionally allow its hash for the model)."""
    with handled():
        data = _read(image)
        manifest = sign_image(data, load_private_key(key), model, version, image.name)
        target = out or image.with_name(image.name + ".manifest.json")
        target.write_text(manifest.to_json())
        if allow_list is not None:
            allowed = AllowList.load(allow_list) if allow_list.exists() else AllowList()
            allowed.add(model, version, data)
            allowed.save(allow_list)
        if as_json:
            emit_json({"manifest": str(target), "sha256": manifest.sha256, "key_id": manifest.key_id})
            return
        console.print(f"signed {image.name} ({model} {version}, sha256 {manifest.sha256[:16]}...) -> {target}")


def _print_alerts(alerts: list[Alert]) -> None:
    table = Table("severity", "check", "summary")
    for a in alerts:
        table.add_row(a.severity, a.detector, a.summary)
    console.print(table)


@firmware_app.command("verify")
def verify(
    image: ImageArg,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", "-m", help="Signed manifest (default IMAGE.manifest.json).")
    ] = None,
    pubkey: Annotated[Path, typer.Option("--pubkey", help="Trusted Ed25519 public key (PEM).", exists=True)] = Path(
        "firmware.pub"
    ),
    allow_list: Annotated[Path | None, typer.Option("--allow-list", help="Known-good hashes per model.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Device the image belongs to.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the manifest's signature, the image's hash and size, and the model's allow-list."""
    with handled():
        data = _read(image)
        mpath = manifest or image.with_name(image.name + ".manifest.json")
        try:
            text = mpath.read_text()
        except OSError as exc:
            raise ParseError(f"cannot read manifest ({exc.strerror})", source=str(mpath)) from None
        m = Manifest.from_json(text, source=str(mpath))
        allowed = AllowList.load(allow_list) if allow_list is not None else None
        result = verify_image(data, m, load_public_key(pubkey), allowed, entity=entity, image_name=str(image))
        _store(result.alerts, store)
        if as_json:
            emit_json({"ok": result.ok, "checks": result.checks, "alerts": [a.to_dict() for a in result.alerts]})
        elif result.ok:
            console.print(f"[green]ok[/]: {image.name} is {m.model} {m.version}, signed by {m.key_id}")
        else:
            _print_alerts(result.alerts)
    if not result.ok:
        raise typer.Exit(EXIT_TAMPERED)


@firmware_app.command("inspect")
def inspect(
    image: ImageArg,
    reference: Annotated[
        list[Path] | None, typer.Option("--reference", "-r", help="A known-good image of the same family (repeat).")
    ] = None,
    profile: Annotated[Path | None, typer.Option("--profile", help="A saved family profile (JSON).")] = None,
    save_profile: Annotated[
        Path | None, typer.Option("--save-profile", help="Save the profile learned from --reference here.")
    ] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Device the image belongs to.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare an image with known-good images of its family; report unusual regions with their offsets."""
    with handled():
        if profile is not None:
            model = FamilyModel.load(profile)
        elif reference:
            model = FamilyModel().fit([_read(p) for p in reference], [p.name for p in reference])
            if save_profile is not None:
                model.save(save_profile)
        else:
            raise InvalidParameterError("give known-good images with --reference, or a saved --profile")
        data = _read(image)
        findings = model.inspect(data, image.name)
        alerts = model.to_alerts(findings, entity or image.name, image.name, sha256(data))
        _store(alerts, store)
        if as_json:
            emit_json({"image": str(image), "sha256": sha256(data), **summarise(findings)})
        elif not findings:
            console.print(f"[green]ok[/]: nothing in {image.name} differs from the {len(model.references_)} references")
        else:
            table = Table("check", "offset", "length", "score", "severity", "what")
            for f in findings:
                table.add_row(f.check, f"{f.offset:#x}", f"{f.length:,}", f"{f.score:.2f}", f.severity, f.summary)
            console.print(table)
    if findings:
        raise typer.Exit(EXIT_TAMPERED)
