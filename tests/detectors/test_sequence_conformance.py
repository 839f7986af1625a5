"""One conformance suite for every registered sequence detector (the numeric suite's counterpart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from misuse.detectors.sequence import SEQUENCE_DETECTORS, SequenceDetector, make_sequence_detector
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError

NAMES = sorted(SEQUENCE_DETECTORS)
SMALL = {"gru": {"hidden": 8, "embed": 4, "epochs": 4, "max_entities": 8, "max_actions": 32}}


def _make(name: str, **params: object) -> SequenceDetector:
    return make_sequence_detector(name, **{**SMALL.get(name, {}), **params})


def _habits(rng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    """A user who mostly cycles through a personal routine, with some noise."""
    out = []
    for i in range(n):
        out.append(vocab[i % len(vocab)] if rng.random() < 0.85 else vocab[int(rng.integers(len(vocab)))])
    return out


def _users(seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    return {
        "alice": _habits(rng, ["ls", "cd", "vi", "cat", "grep"], 400),
        "bob": _habits(rng, ["make", "gcc", "ld", "gdb", "git"], 400),
        "carol": _habits(rng, ["ssh", "scp", "top", "ps", "kill"], 400),
    }


@pytest.fixture(params=NAMES)
def fitted(request: pytest.FixtureRequest) -> SequenceDetector:
    torch.set_num_threads(1)
    det = _make(request.param, seed=3)
    for user, actions in _users().items():
        det.learn_many(user, actions)
    return det


def test_unfitted_detector_refuses_to_score() -> None:
    for name in NAMES:
        with pytest.raises(NotFittedError):
            _make(name).score_block("alice", ["ls"])


def test_unknown_parameter_is_rejected_with_its_name() -> None:
    for name in NAMES:
        with pytest.raises(InvalidParameterError, match="bogus"):
            _make(name, bogus=1)


def test_unknown_entity_and_empty_block_are_schema_errors(fitted: SequenceDetector) -> None:
    with pytest.raises(SchemaError, match="mallory"):
        fitted.score_block("mallory", ["ls"])
    with pytest.raises(SchemaError, match="empty block"):
        fitted.score_block("alice", [])


def test_another_users_block_scores_higher_than_own(fitted: SequenceDetector) -> None:
    rng = np.random.default_rng(9)
    own = _habits(rng, ["ls", "cd", "vi", "cat", "grep"], 50)
    other = _habits(rng, ["make", "gcc", "ld", "gdb", "git"], 50)
    s_own, s_other = fitted.score_block("alice", own), fitted.score_block("alice", other)
    assert np.isfinite([s_own, s_other]).all()
    assert s_other > s_own


def test_closest_names_the_user_the_behaviour_resembles(fitted: SequenceDetector) -> None:
    block = _habits(np.random.default_rng(4), ["make", "gcc", "ld", "gdb", "git"], 60)
    assert fitted.closest(block, top=1)[0][0] == "bob"


def test_scoring_never_changes_state(fitted: SequenceDetector, tmp_path: Path) -> None:
    block = ["ls", "never-seen", "gcc"]
    first = fitted.score_block("alice", block)
    fitted.explain_block("alice", block)
    fitted.closest(block)
    assert fitted.score_block("alice", block) == first
    assert "never-seen" not in fitted.vocab_


def test_save_load_round_trip_gives_identical_scores(fitted: SequenceDetector, tmp_path: Path) -> None:
    block = ["make", "ls", "ssh", "unknown-cmd"]
    fitted.save(tmp_path / "m")
    back = SequenceDetector.load(tmp_path / "m")
    assert type(back) is type(fitted)
    assert back.score_block("bob", block) == pytest.approx(fitted.score_block("bob", block), rel=1e-6)
    assert not list(tmp_path.glob("m/*.pkl"))


def test_same_seed_same_scores() -> None:
    torch.set_num_threads(1)
    for name in NAMES:
        a, b = _make(name, seed=5), _make(name, seed=5)
        for det in (a, b):
            for user, actions in _users(1).items():
                det.learn_many(user, actions[:120])
        assert a.score_block("alice", ["gcc", "ls"]) == pytest.approx(b.score_block("alice", ["gcc", "ls"]))


def test_clone_is_unfitted_with_same_params(fitted: SequenceDetector) -> None:
    twin = fitted.clone()
    assert twin.get_params() == fitted.get_params()
    assert not twin.is_fitted


def test_explanation_names_the_foreign_actions(fitted: SequenceDetector) -> None:
    block = ["ls", "cd", "vi", "make", "gcc", "make", "gcc", "ls"]
    top = fitted.explain_block("alice", block, top=3)
    assert top and {c.feature for c in top} & {"make", "gcc"}
    assert all(0 <= c.typical <= 1 and 0 < c.actual <= 1 and c.weight > 0 for c in top)


def test_learn_one_continues_the_sequence(fitted: SequenceDetector) -> None:
    before = fitted.share("alice", "zz-new")
    for a in ["zz-new"] * 30:
        fitted.learn_one("alice", a)
    assert before == 0.0
    assert fitted.share("alice", "zz-new") > 0.0
