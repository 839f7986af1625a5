"""Signature and heuristic detection: Sigma-style rules, the built-in IoT pack, risk fusion."""

from __future__ import annotations

from pathlib import Path

from misuse.rules.model import Rule, load_rules

PACK_DIR = Path(__file__).resolve().parent / "pack"


def builtin_pack() -> list[Rule]:
    """The built-in IoT rule pack (``misuse/rules/pack/*.yml``), loaded and validated."""
    return load_rules(PACK_DIR)
