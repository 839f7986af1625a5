"""Firmware validation: signed manifests and hash allow-lists, and a learned check against known-good images.

* :mod:`misuse.firmware.signing`: Ed25519-signed manifests, per-model hash allow-lists, verification
  that produces alerts.
* :mod:`misuse.firmware.family`: :class:`FamilyModel`, a profile of known-good images of one family
  (section layout, per-section byte statistics, strings) that flags injected, appended or replaced
  regions of an image with their offsets.
* :mod:`misuse.firmware.elf`: a small ELF section/segment table reader.
"""

from misuse.firmware.family import FamilyModel, Finding
from misuse.firmware.signing import AllowList, Manifest, sign_image, verify_image

__all__ = ["AllowList", "FamilyModel", "Finding", "Manifest", "sign_image", "verify_image"]
