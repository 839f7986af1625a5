"""The misuse types an alert (and a simulator's ground truth) can carry."""

from __future__ import annotations

from enum import StrEnum


class MisuseType(StrEnum):
    """What kind of misuse an alert reports.

    The values are stable strings used in the store, the API and ground-truth files.
    """

    BOTNET = "botnet"  # infection and its traffic: scanning, C&C, floods (Mirai and kin)
    SCANNING = "scanning"
    DOS = "dos"
    BRUTE_FORCE = "brute_force"
    UNAUTHORIZED_ACCESS = "unauthorized_access"
    IMPERSONATION = "impersonation"
    INSIDER_MISUSE = "insider_misuse"
    INADVERTENT_MISUSE = "inadvertent_misuse"
    EXFILTRATION = "exfiltration"
    DATA_TAMPERING = "data_tampering"
    FIRMWARE_TAMPERING = "firmware_tampering"
    ANOMALY = "anomaly"  # diverges from the baseline, cause not determined


class Severity(StrEnum):
    """How urgent an alert is."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
