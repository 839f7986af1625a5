"""A small, strict reader of ELF section and segment tables (no code is loaded or run).

Only what the firmware checks need: the machine, the section list with names, file offsets,
sizes and flags, and where the file's described content ends (anything after it is an overlay,
the classic place for an appended payload).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from misuse.errors import ParseError

ELF_MAGIC = b"\x7fELF"
SHT_NOBITS = 8
_MACHINES = {3: "x86", 8: "mips", 20: "ppc", 21: "ppc64", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv"}


@dataclass(frozen=True, slots=True)
class Section:
    """One section of an ELF file.

    Parameters
    ----------
    name:
        Section name from the section-name string table (``.text``, ``.rodata``...).
    offset, size:
        Where its bytes are in the file; ``size`` is 0 in the file for ``SHT_NOBITS`` (``.bss``).
    kind:
        ``sh_type``.
    flags:
        ``sh_flags`` (1 write, 2 alloc, 4 exec).
    """

    name: str
    offset: int
    size: int
    kind: int
    flags: int

    @property
    def end(self) -> int:
        """First file offset after the section's bytes."""
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class ElfLayout:
    """The parts of an ELF header the firmware checks use.

    Parameters
    ----------
    machine:
        Architecture name (``x86_64``, ``aarch64``, ``arm``...) or ``machine-<n>``.
    bits:
        32 or 64.
    sections:
        Sections with file content, in section-table order (``SHT_NOBITS`` excluded).
    content_end:
        End of the last byte any header, section or segment describes.
    """

    machine: str
    bits: int
    sections: tuple[Section, ...]
    content_end: int

    def section_at(self, offset: int) -> Section | None:
        """The section holding a file offset, or None."""
        for s in self.sections:
            if s.offset <= offset < s.end:
                return s
        return None


def is_elf(data: bytes) -> bool:
    """True when the bytes start with the ELF magic."""
    return data[:4] == ELF_MAGIC


def parse_elf(data: bytes, name: str = "image") -> ElfLayout:
    """Read the section and program-header tables of an ELF image.

    Parameters
    ----------
    data:
        The whole file.
    name:
        What to call the file in error messages.

    Raises
    ------
    ParseError
        When the header or a table is truncated or inconsistent.

    Examples
    --------
    >>> parse_elf(b"not an elf")
    Traceback (most recent call last):
    ...
    misuse.errors.ParseError: image: not an ELF file (magic b'not ')
    """
    if len(data) < 52 or not is_elf(data):
        raise ParseError(f"not an ELF file (magic {data[:4]!r})", source=name)
    bits = {1: 32, 2: 64}.get(data[4])
    endian = {1: "<", 2: ">"}.get(data[5])
    if bits is None or endian is None:
        raise ParseError(f"unknown ELF class {data[4]} or data encoding {data[5]}", source=name)
    if bits == 64:
        if len(data) < 64:
            raise ParseError(f"ELF64 header truncated at {len(data)} bytes", source=name)
        machine, phoff, shoff = struct.unpack_from(endian + "18xH12xQQ", data, 0)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHHHH", data, 54)
    else:
        machine, phoff, shoff = struct.unpack_from(endian + "18xH8xII", data, 0)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHHHH", data, 42)
    size = len(data)
    end = 64 if bits == 64 else 52
    if phnum:
        _table(size, phoff, phentsize, phnum, "program header", name)
        end = max(end, phoff + phentsize * phnum)
        for i in range(phnum):
            at = phoff + i * phentsize
            if bits == 64:
                p_offset, p_filesz = struct.unpack_from(endian + "8xQ16xQ", data, at)
            else:
                p_offset, p_filesz = struct.unpack_from(endian + "4xI8xI", data, at)
            if p_offset + p_filesz <= size:
                end = max(end, p_offset + p_filesz)
    raw: list[tuple[int, int, int, int, int]] = []
    if shnum:
        _table(size, shoff, shentsize, shnum, "section header", name)
        end = max(end, shoff + shentsize * shnum)
        for i in range(shnum):
            at = shoff + i * shentsize
            if bits == 64:
                sh_name, sh_type, sh_flags, sh_offset, sh_size = struct.unpack_from(endian + "IIQ8xQQ", data, at)
            else:
                sh_name, sh_type, sh_flags, sh_offset, sh_size = struct.unpack_from(endian + "III4xII", data, at)
            raw.append((sh_name, sh_type, sh_flags, sh_offset, sh_size))
    if raw and not 0 <= shstrndx < len(raw):
        raise ParseError(f"section-name table index {shstrndx} outside 0..{len(raw) - 1}", source=name)
    names_at, names_size = (raw[shstrndx][3], raw[shstrndx][4]) if raw else (0, 0)
    if names_at + names_size > size:
        raise ParseError(f"section-name table at {names_at:#x}+{names_size} runs past end {size}", source=name)
    sections = []
    for i, (sh_name, sh_type, sh_flags, sh_offset, sh_size) in enumerate(raw):
        if sh_type == 0 or sh_type == SHT_NOBITS:
            continue
        if sh_offset + sh_size > size:
            raise ParseError(f"section {i} at {sh_offset:#x}+{sh_size} runs past end of file {size}", source=name)
        label = _cstr(data, names_at + sh_name, names_at + names_size) if sh_name < names_size else f"#{i}"
        sections.append(Section(label or f"#{i}", sh_offset, sh_size, sh_type, sh_flags))
        end = max(end, sh_offset + sh_size)
    return ElfLayout(_MACHINES.get(machine, f"machine-{machine}"), bits, tuple(sections), min(end, size))


def _table(size: int, offset: int, entsize: int, num: int, what: str, name: str) -> None:
    need = 40 if what == "section header" else 32
    if entsize < need or offset + entsize * num > size:
        raise ParseError(f"{what} table at {offset:#x} ({num} x {entsize} bytes) runs past end {size}", source=name)


def _cstr(data: bytes, start: int, limit: int) -> str:
    stop = data.find(b"\0", start, limit)
    return data[start : stop if stop >= 0 else limit].decode("latin-1")
