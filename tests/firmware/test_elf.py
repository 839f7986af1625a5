"""ELF table reader: real binaries, truncations and arbitrary bytes."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from misuse.errors import ParseError
from misuse.firmware.elf import ElfLayout, parse_elf
from misuse.firmware.features import entropy, string_kind, strings_with_offsets, window_features


def test_real_busybox_layouts(busybox: dict[str, bytes]) -> None:
    for name, data in busybox.items():
        layout = parse_elf(data, name)

        names = [s.name for s in layout.sections]
        assert ".text" in names and ".rodata" in names
        assert layout.content_end == len(data)
        text = next(s for s in layout.sections if s.name == ".text")
        assert layout.section_at(text.offset + 1) == text


def test_truncated_elf_names_the_file(busybox: dict[str, bytes], native_static: str) -> None:
    data = busybox[native_static][:4096]

    try:
        parse_elf(data, "fw.bin")
    except ParseError as exc:
        assert str(exc).startswith("fw.bin: ")
    else:
        raise AssertionError("truncated ELF parsed")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_layout_or_a_parse_error(body: bytes) -> None:
    data = b"\x7fELF" + body
    try:
        layout = parse_elf(data)
    except ParseError:
        return
    assert isinstance(layout, ElfLayout)
    assert all(0 <= s.offset <= s.end <= len(data) for s in layout.sections)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.integers(0, 5), st.integers(0, 2**32 - 1))
def test_header_fields_out_of_range_are_parse_errors(shnum: int, shstrndx: int, shoff: int) -> None:
    header = bytearray(b"\x7fELF\x01\x01\x01" + bytes(45))
    struct.pack_into("<I", header, 32, shoff)
    struct.pack_into("<HHH", header, 46, 40, shnum, shstrndx)
    try:
        layout = parse_elf(bytes(header))
    except ParseError:
        return
    assert all(0 <= s.offset <= s.end <= len(header) for s in layout.sections)
    assert layout.content_end <= len(header)


def test_window_features_and_strings() -> None:
    data = bytes(4096) + bytes(range(256)) * 16 + b"\x00telnetd\x00http://1.2.3.4:23/x\x00"

    feats = window_features(data)
    found = strings_with_offsets(data)

    assert feats.shape == (2, 4)
    assert feats[0, 0] == 0.0 and abs(feats[1, 0] - 1.0) < 1e-9
    assert entropy(bytes(range(256))) == 8.0
    assert [s for _, s in found][-2:] == ["telnetd", "http://1.2.3.4:23/x"]
    assert [string_kind(s) for _, s in found][-2:] == ["risky", "host"]
    banners = ["BusyBox v1.30.1 (Debian 1:1.30.1-6+b3)", "0.0.0.0.in-addr.", "bind 0.0.0.0:80", "v1.2.3.4.5"]
    assert [string_kind(s) for s in banners] == ["text"] * 4
    assert string_kind("/bin/busybox telnetd -p 2323") == "risky"
