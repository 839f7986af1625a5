"""Signed firmware manifests (Ed25519) and a hash allow-list per device model.

A manifest names the device model, the version and the image's size and SHA-256; the vendor (or
the site's operator) signs its canonical JSON with an Ed25519 key. Verification checks, in order:
the signature against a trusted public key, the image's hash and size against the manifest, and,
when an allow-list is given, that the hash is one of the known-good images of that model.
Every failed check becomes an :class:`~misuse.alerts.model.Alert` of type
``firmware_tampering`` that says what was expected and what was found.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType, Severity
from misuse.errors import InvalidParameterError, MisuseError, ParseError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MANIFEST_FORMAT = "misuse-firmware-manifest/1"
ALLOW_LIST_FORMAT = "misuse-firmware-allow-list/1"
DETECTOR = "firmware.verify"


def _crypto() -> tuple[ModuleType, ModuleType, type[Exception]]:
    """cryptography's serialization and ed25519 modules and InvalidSignature, imported on first use so
    that the rest of the package (and ``misuse demo``) works without the firmware extra."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MisuseError("firmware signing needs cryptography: pip install 'misuse[firmware]'") from None
    return serialization, ed25519, InvalidSignature


def sha256(data: bytes) -> str:
    """Hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 signing key."""
    return _crypto()[1].Ed25519PrivateKey.generate()  # type: ignore[no-any-return]


def save_keypair(key: Ed25519PrivateKey, private_path: Path, public_path: Path) -> None:
    """Write the private key (PKCS#8 PEM, mode 0600) and its public key (SubjectPublicKeyInfo PEM)."""
    serialization = _crypto()[0]
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.write_bytes(pem)
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file.

    Raises
    ------
    ParseError
        When the file is not a PEM Ed25519 private key.
    """
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ParseError(f"not an unencrypted PEM private key ({exc})", source=str(path)) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ParseError(f"expected an Ed25519 key, got {type(key).__name__}", source=str(path))
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM file.

    Raises
    ------
    ParseError
        When the file is not a PEM Ed25519 public key.
    """
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError) as exc:
        raise ParseError(f"not a PEM public key ({exc})", source=str(path)) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ParseError(f"expected an Ed25519 key, got {type(key).__name__}", source=str(path))
    return key


def key_id(key: Ed25519PublicKey) -> str:
    """Short, stable id of a public key (first 16 hex digits of the SHA-256 of its raw bytes)."""
    serialization = _crypto()[0]
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(raw)[:16]


@dataclass
class Manifest:
    """What a signer vouches for: one image of one device model.

    Parameters
    ----------
    model, version:
        Device model (``cam-x200``) and firmware version.
    image_name, size, sha256:
        The image's file name, length in bytes and hex SHA-256.
    key_id, signed_at, signature:
        Set by :func:`sign_image`; ``signature`` is base64 Ed25519 over :meth:`payload`.
    """

    model: str
    version: str
    image_name: str
    size: int
    sha256: str
    key_id: str = ""
    signed_at: str = ""
    signature: str = ""

    def payload(self) -> bytes:
        """The canonical bytes that are signed (everything but the signature)."""
        body = {
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "version": self.version,
            "image": {"name": self.image_name, "size": self.size, "sha256": self.sha256},
            "key_id": self.key_id,
            "signed_at": self.signed_at,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> str:
        """The manifest file's text."""
        body = json.loads(self.payload())
        body["signature"] = self.signature
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> Manifest:
        """Read a manifest file's text.

        Raises
        ------
        ParseError
            When it is not JSON or a field is missing or of the wrong type.
        """
        try:
            body = json.loads(text)
            if body.get("format") != MANIFEST_FORMAT:
                raise ParseError(f"format {body.get('format')!r}, expected {MANIFEST_FORMAT!r}", source=source)
            image = body["image"]
            return cls(
                model=str(body["model"]),
                version=str(body["version"]),
                image_name=str(image["name"]),
                size=int(image["size"]),
                sha256=str(image["sha256"]),
                key_id=str(body.get("key_id", "")),
                signed_at=str(body.get("signed_at", "")),
                signature=str(body.get("signature", "")),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ParseError):
                raise
            raise ParseError(f"not a firmware manifest ({type(exc).__name__}: {exc})", source=source) from None


def sign_image(
    data: bytes, key: Ed25519PrivateKey, model: str, version: str, image_name: str, at: datetime | None = None
) -> Manifest:
    """Make and sign the manifest of an image.

    Examples
    --------
    >>> key = generate_key()
    >>> m = sign_image(b"firmware", key, "cam-x200", "1.0", "fw.bin")
    >>> verify_image(b"firmware", m, key.public_key()).ok
    True
    >>> verify_image(b"firmwarE", m, key.public_key()).ok
    False
    """
    if not model or not version:
        raise InvalidParameterError(f"model and version must be non-empty, got {model!r} and {version!r}")
    when = (at or datetime.now(UTC)).isoformat()
    m = Manifest(model, version, image_name, len(data), sha256(data), key_id(key.public_key()), when)
    m.signature = base64.b64encode(key.sign(m.payload())).decode()
    return m


@dataclass
class AllowList:
    """Known-good image hashes per device model: ``{model: {sha256: version}}``.

    Examples
    --------
    >>> a = AllowList()
    >>> a.add("cam-x200", "1.0", b"firmware")
    >>> a.lookup("cam-x200", sha256(b"firmware"))
    '1.0'
    """

    models: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, model: str, version: str, data: bytes) -> None:
        """Allow an image for a model."""
        self.models.setdefault(model, {})[sha256(data)] = version

    def lookup(self, model: str, digest: str) -> str | None:
        """The version of an allowed hash, or None when the model does not allow it."""
        return self.models.get(model, {}).get(digest)

    def save(self, path: Path) -> None:
        """Write the list as JSON."""
        path.write_text(json.dumps({"format": ALLOW_LIST_FORMAT, "models": self.models}, indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> AllowList:
        """Read a list written by :meth:`save`.

        Raises
        ------
        ParseError
            When the file is not an allow-list.
        """
        try:
            body = json.loads(path.read_text())
            models = body["models"]
            if body.get("format") != ALLOW_LIST_FORMAT or not isinstance(models, dict):
                raise ValueError(f"format {body.get('format')!r}")
            return cls({str(m): {str(h): str(v) for h, v in hs.items()} for m, hs in models.items()})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ParseError(f"not a firmware allow-list ({exc})", source=str(path)) from None


@dataclass
class Verification:
    """The outcome of :func:`verify_image`: ``ok`` and one alert per failed check."""

    ok: bool
    checks: dict[str, bool]
    alerts: list[Alert]


def verify_image(
    data: bytes,
    manifest: Manifest,
    public_key: Ed25519PublicKey,
    allow_list: AllowList | None = None,
    entity: str | None = None,
    at: datetime | None = None,
    image_name: str | None = None,
) -> Verification:
    """Check an image against its signed manifest and, optionally, the model's allow-list.

    Parameters
    ----------
    data:
        The image bytes.
    manifest, public_key:
        The manifest and the trusted key it must be signed with.
    allow_list:
        Known-good hashes per model; None skips that check.
    entity:
        The device the image belongs to (default: the manifest's model).
    at:
        Time stamped on alerts (default now).
    image_name:
        The file that was checked (default: the image the manifest names). Alerts name it and,
        when it differs, the manifest's image it was compared with.

    Examples
    --------
    >>> key = generate_key()
    >>> m = sign_image(b"firmware", key, "cam-x200", "1.0", "bb.bin")
    >>> v = verify_image(b"firmwarE", m, key.public_key(), image_name="mod.bin")
    >>> print(v.alerts[0].summary.split(" (")[0])
    image mod.bin differs from the manifest's image bb.bin
    >>> v.alerts[0].evidence[0]
    'mod.bin'
    """
    when = at or datetime.now(UTC)
    who = entity or manifest.model
    checked = image_name or manifest.image_name
    compared = "its manifest" if checked == manifest.image_name else f"the manifest's image {manifest.image_name}"
    digest = sha256(data)
    checks: dict[str, bool] = {}
    alerts: list[Alert] = []

    def fail(check: str, severity: Severity, summary: str, typical: Any, actual: Any) -> None:
        alerts.append(
            Alert(
                entity=who,
                window_start=when,
                window_end=when,
                score=1.0,
                threshold=0.5,
                severity=severity.value,
                misuse_type=MisuseType.FIRMWARE_TAMPERING.value,
                detector=f"{DETECTOR}.{check}",
                summary=summary,
                contributions=[{"feature": check, "typical": typical, "actual": actual, "weight": 1.0}],
                evidence=[checked, digest],
            )
        )

    invalid_signature = _crypto()[2]
    try:
        public_key.verify(base64.b64decode(manifest.signature, validate=True), manifest.payload())
        checks["signature"] = True
    except (invalid_signature, ValueError):
        checks["signature"] = False
        fail(
            "signature",
            Severity.CRITICAL,
            f"manifest of {manifest.model} {manifest.version} is not signed by trusted key {key_id(public_key)}",
            f"valid Ed25519 signature by {key_id(public_key)}",
            f"invalid signature (manifest names key {manifest.key_id or 'none'})",
        )
    checks["hash"] = digest == manifest.sha256 and len(data) == manifest.size
    if not checks["hash"]:
        fail(
            "hash",
            Severity.CRITICAL,
            f"image {checked} differs from {compared} ({len(data):,} bytes, sha256 {digest[:16]}...)",
            f"{manifest.image_name}: {manifest.size} bytes, sha256 {manifest.sha256}",
            f"{len(data)} bytes, sha256 {digest}",
        )
    if allow_list is not None:
        version = allow_list.lookup(manifest.model, digest)
        checks["allow_list"] = version is not None
        if version is None:
            known = sorted(set(allow_list.models.get(manifest.model, {}).values()))
            fail(
                "allow_list",
                Severity.HIGH,
                f"image {checked} (sha256 {digest[:16]}...) is not an allowed image of model {manifest.model}",
                f"one of versions {known or 'none listed'}",
                f"unknown hash {digest}",
            )
    return Verification(all(checks.values()), checks, alerts)
