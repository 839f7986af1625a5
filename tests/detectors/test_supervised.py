"""Supervised classifiers: numpy predictions equal scikit-learn's, saving needs no pickle, reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misuse.detectors.supervised import CLASSIFIERS, class_report, load_classifier, make_classifier
from misuse.errors import InvalidParameterError, NotFittedError


def _data(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(600, 3)), columns=["a", "b", "c"])
    y = np.where(X["a"] > 0.5, "dos", np.where(X["b"] > 1.0, "scan", "benign"))
    return X, y


def test_forest_probabilities_equal_scikit_learns() -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = _data()
    ours = make_classifier("random_forest", n_estimators=20, seed=1).fit(X, y)
    codes = np.searchsorted(np.unique(y), y)
    sk = RandomForestClassifier(n_estimators=20, random_state=1, n_jobs=1).fit(X.to_numpy(), codes)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X.to_numpy()))


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_every_classifier_learns_known_classes_and_round_trips(kind: str, tmp_path: Path) -> None:
    X, y = _data()
    Xt, yt = _data(seed=1)
    clf = make_classifier(kind, seed=0).fit(X, y)
    report = class_report(yt, clf.predict(Xt))
    assert report["macro_f1"] > 0.8
    back = load_classifier(clf.save(tmp_path / kind))
    np.testing.assert_array_equal(back.predict(Xt), clf.predict(Xt))
    assert not list(tmp_path.rglob("*.pkl"))
    # missing and extra columns are tolerated
    assert len(clf.predict(Xt.drop(columns=["c"]).assign(z=1.0))) == len(Xt)


def test_class_report_counts_by_hand() -> None:
    r = class_report(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert r["confusion"] == [[1, 1], [0, 2]]
    assert r["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert r["accuracy"] == 0.75


def test_errors_name_the_problem() -> None:
    with pytest.raises(InvalidParameterError, match="bogus"):
        make_classifier("bogus")
    with pytest.raises(InvalidParameterError, match="depth"):
        make_classifier("decision_tree", depth=3)
    with pytest.raises(NotFittedError):
        make_classifier("naive_bayes").predict(pd.DataFrame({"a": [1.0]}))
