"""SeaReader and load_sea_truth: SEA masquerade command files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misuse.errors import InvalidParameterError, ParseError
from misuse.ingest.base import DeadLetter
from misuse.ingest.sea import MASQUERADE, SEA_SHAPE, SeaReader, load_sea_truth


def test_commands_get_synthetic_order_time_and_blocks(tmp_path: Path) -> None:
    p = tmp_path / "User2"
    p.write_text("\n".join(["sh"] * 150) + "\n")

    frame = SeaReader(base=1000.0).read(p)

    assert len(frame) == 150
    assert set(frame["entity"]) == {"User2"}
    assert frame["ts"].iloc[149].timestamp() == 1149.0
    assert frame["num.seq"].iloc[149] == 149.0
    assert frame["cat.block"].value_counts().to_dict() == {"0": 100, "1": 50}
    assert frame["source"].iloc[0] == "User2:1"


def test_truth_labels_masquerade_blocks(tmp_path: Path) -> None:
    p = tmp_path / "User2"
    p.write_text("\n".join(["ls"] * 5_200) + "\n")
    truth = np.zeros(SEA_SHAPE, dtype=np.int8)
    truth[1, 1] = 1  # second test block of User2 = commands 5,100..5,199

    frame = SeaReader(truth=truth).read(p)

    hit = frame.index[frame["label"] == MASQUERADE]
    assert (hit.min(), hit.max(), len(hit)) == (5_100, 5_199, 100)
    assert (frame["label"] == "benign").sum() == 5_100


def test_bad_lines_are_dead_letters_and_keep_the_index(tmp_path: Path) -> None:
    p = tmp_path / "User1"
    p.write_text("ls\ntwo words\n\ncat\n")
    dead = DeadLetter()

    frame = SeaReader().read(p, dead=dead)

    assert frame["num.seq"].tolist() == [0.0, 3.0]
    assert [s["line"] for s in dead.samples] == [2, 3]


@pytest.mark.parametrize("content", [b"", b"a b c\n" * 25, b"   \n"])
def test_wrong_files_raise_parse_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "User9"
    p.write_bytes(content)

    with pytest.raises(ParseError, match="User9"):
        SeaReader().read(p)


def test_truth_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "masquerade_summary.txt"
    good.write_text("\n".join(" ".join(["0"] * 50) for _ in range(100)) + "\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2\n")

    assert load_sea_truth(good).shape == SEA_SHAPE
    with pytest.raises(ParseError, match=r"bad\.txt line 1: expected 50 values"):
        load_sea_truth(bad)
    with pytest.raises(InvalidParameterError, match="'truth'"):
        SeaReader(truth=np.zeros((3, 3)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_bytes_give_frames_or_parse_error(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "User5"
    p.write_bytes(data)

    try:
        frames = list(SeaReader().batches(p, dead=DeadLetter()))
    except ParseError as exc:
        assert "User5" in str(exc)
    else:
        assert all(set(f["kind"]) == {"command"} for f in frames)


@pytest.mark.realdata
def test_sea_users_and_truth(shared_data: Path) -> None:
    folder = shared_data / "sea-masquerade"
    truth = load_sea_truth(folder / "masquerade_summary.txt")
    reader = SeaReader(truth=truth)

    lengths = {}
    masquerade_blocks = 0
    for user in sorted((folder / "users").iterdir()):
        frame = reader.read(user)
        lengths[user.name] = len(frame)
        test = frame[frame["num.seq"] >= 5_000]
        masquerade_blocks += test.loc[test["label"] == MASQUERADE, "cat.block"].nunique()

    assert int(truth.sum()) == 231
    assert len(lengths) == 50
    assert set(lengths.values()) == {15_000}
    assert masquerade_blocks == 231
