"""One conformance suite that every registered detector must pass."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.detectors.base import Detector
from misuse.detectors.registry import available, load_detector, make_detector
from misuse.errors import InvalidParameterError, NotFittedError

NAMES = sorted(available())


def _data(seed: int = 0, n: int = 600) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Normal training rows; a test set with 10% clear outliers and its labels."""
    rng = np.random.default_rng(seed)
    cols = ["a", "b", "c", "d"]
    train = pd.DataFrame(rng.normal(size=(n, 4)), columns=cols)
    normal = rng.normal(size=(180, 4))
    outliers = rng.normal(loc=6.0, size=(20, 4))
    test = pd.DataFrame(np.vstack([normal, outliers]), columns=cols)
    y = np.r_[np.zeros(180), np.ones(20)]
    return train, test, y


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.fixture(params=NAMES, scope="module")
def fitted(request: pytest.FixtureRequest) -> tuple[Detector, pd.DataFrame, np.ndarray]:
    train, test, y = _data()
    det = make_detector(request.param, seed=3)
    det.learn_many(train)
    return det, test, y


def test_unfitted_detector_refuses_to_score() -> None:
    for name in NAMES:
        with pytest.raises(NotFittedError):
            make_detector(name).score_one({"a": 1.0})


def test_unknown_parameter_is_rejected_with_its_name() -> None:
    for name in NAMES:
        with pytest.raises(InvalidParameterError, match="bogus"):
            make_detector(name, bogus=1)


def test_scores_are_finite_and_separate_outliers(fitted: tuple[Detector, pd.DataFrame, np.ndarray]) -> None:
    det, test, y = fitted
    s = det.score_many(test)
    assert s.shape == (len(test),)
    assert np.isfinite(s).all()
    assert _auc(y, s) >= 0.9


def test_score_one_matches_score_many(fitted: tuple[Detector, pd.DataFrame, np.ndarray]) -> None:
    det, test, _ = fitted
    many = det.score_many(test.head(10))
    one = [det.score_one(r) for r in test.head(10).to_dict("records")]
    np.testing.assert_allclose(many, one, rtol=1e-9, atol=1e-12)


def test_scoring_does_not_change_state(fitted: tuple[Detector, pd.DataFrame, np.ndarray]) -> None:
    det, test, _ = fitted
    before = copy.deepcopy(det.__dict__)
    det.score_many(test)
    det.score_one(test.iloc[0].to_dict())
    det.explain_one(test.iloc[0].to_dict())
    after = det.__dict__
    assert before.keys() == after.keys()
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, after[k])


def test_key_order_does_not_matter(fitted: tuple[Detector, pd.DataFrame, np.ndarray]) -> None:
    det, test, _ = fitted
    row = test.iloc[-1].to_dict()
    reordered = dict(reversed(list(row.items())))
    assert det.score_one(row) == det.score_one(reordered)
    assert np.allclose(det.score_many(test), det.score_many(test[list(reversed(test.columns))]))


def test_missing_and_new_features_are_tolerated(fitted: tuple[Detector, pd.DataFrame, np.ndarray]) -> None:
    det, test, _ = fitted
    row = test.iloc[-1].to_dict()
    partial = {k: v for k, v in row.items() if k != "a"}
    assert np.isfinite(det.score_one(partial))
    assert np.isfinite(det.score_one({**row, "never_seen": 5.0}))
    explained = det.explain_one({**row, "never_seen": 5.0})
    assert "never_seen" in [c.feature for c in explained]
    assert np.isfinite(det.score_many(test.drop(columns=["b"]).assign(z=1.0))).all()


def test_same_seed_same_result_and_clone_is_unfitted() -> None:
    train, test, _ = _data()
    for name in NAMES:
        a = make_detector(name, seed=5).learn_many(train)
        b = make_detector(name, seed=5).learn_many(train)
        np.testing.assert_allclose(a.score_many(test), b.score_many(test))
        c = a.clone()
        assert not c.is_fitted and c.get_params() == a.get_params()


def test_save_load_roundtrip(fitted: tuple[Detector, pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    det, test, _ = fitted
    det.save(tmp_path / "m")
    back = load_detector(tmp_path / "m")
    assert type(back) is type(det)
    np.testing.assert_allclose(back.score_many(test), det.score_many(test))
    assert not list(tmp_path.rglob("*.pkl"))


def test_explanation_names_the_outlying_feature(fitted: tuple[Detector, pd.DataFrame, np.ndarray]) -> None:
    det, _, _ = fitted
    row = {"a": 0.0, "b": 0.0, "c": 25.0, "d": 0.0}
    top = det.explain_one(row)[0]
    assert top.feature == "c"
    assert top.actual == 25.0
    assert abs(top.typical) < 0.5


def test_learn_one_from_scratch_then_scores() -> None:
    train, test, y = _data(seed=1)
    for name in NAMES:
        det = make_detector(name, seed=0)
        for r in train.to_dict("records"):
            det.learn_one(r)
        assert det.is_fitted
        assert _auc(y, det.score_many(test)) >= 0.9
