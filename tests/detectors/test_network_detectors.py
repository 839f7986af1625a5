"""KitNET, the wrapped detectors and the deep autoencoder: what the conformance suite does not check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from misuse.detectors.kitnet import KitNET, feature_groups
from misuse.detectors.registry import load_detector
from misuse.detectors.wrapped import ECOD, HalfSpaceTrees, OneClassSVM


def _frame(n: int = 400, d: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{i}" for i in range(d)])


def test_feature_groups_cover_every_column_within_the_size_limit() -> None:
    # prepare: three blocks of strongly correlated columns
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 3))
    X = np.hstack([base[:, [i]] + 0.01 * rng.normal(size=(500, 3)) for i in range(3)])
    # execute
    groups = feature_groups(X, max_group=3)
    # assert
    assert sorted(c for g in groups for c in g) == list(range(9))
    assert all(len(g) <= 3 for g in groups)
    assert sorted(map(tuple, groups)) == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]


def test_kitnet_keeps_learning_online_and_saves_its_groups(tmp_path: Path) -> None:
    X = _frame(d=12)
    det = KitNET(max_group=4, seed=0).learn_many(X)
    before = det.ens_.W.copy()
    for row in _frame(n=2000, d=12, seed=1).to_dict("records"):
        det.learn_one(row)
    assert not np.allclose(before, det.ens_.W)
    assert det.group_idx_.shape[1] <= 4
    back = load_detector(det.save(tmp_path / "k"))
    np.testing.assert_array_equal(back.group_idx_, det.group_idx_)  # type: ignore[attr-defined]


def test_ecod_ranks_training_rows_like_pyod() -> None:
    from pyod.models import ecod as pyod_ecod

    X = _frame(n=300)
    ours = ECOD().learn_many(X).score_many(X)
    theirs = pyod_ecod.ECOD().fit(X.to_numpy()).decision_scores_
    assert spearmanr(ours, theirs).statistic > 0.99


def test_one_class_svm_numpy_scores_are_sklearns_decision_flipped() -> None:
    from sklearn.svm import OneClassSVM as SkOneClassSVM

    X = _frame(n=300)
    det = OneClassSVM(nu=0.1).learn_many(X)
    Z = (X.to_numpy() - det.median_) / det.scale_
    sk = SkOneClassSVM(nu=0.1, gamma=det.gamma_).fit(Z)
    np.testing.assert_allclose(det.score_many(X), -sk.decision_function(Z), rtol=1e-6, atol=1e-7)
    far = pd.DataFrame([[50.0] * 6, [90.0] * 6], columns=X.columns)
    near, farther = det.score_many(far)
    assert farther > near  # no tie where the kernel vanishes


def test_half_space_trees_restore_exactly_after_streaming(tmp_path: Path) -> None:
    X = _frame(n=300)
    det = HalfSpaceTrees(window_size=50, n_trees=5, seed=2).learn_many(X)
    for row in _frame(n=137, seed=3).to_dict("records"):
        det.learn_one(row)
    back = load_detector(det.save(tmp_path / "h"))
    test = _frame(n=50, seed=4)
    np.testing.assert_array_equal(back.score_many(test), det.score_many(test))


def test_autoencoder_numpy_scoring_matches_torch_forward() -> None:
    torch = pytest.importorskip("torch")
    from misuse.detectors.autoencoder import DeepAutoencoder

    X = _frame(n=200)
    det = DeepAutoencoder(hidden=(4, 2), epochs=2).learn_many(X)
    Z = torch.from_numpy(det._z(X.to_numpy()).astype(np.float64))
    h = Z
    for i, (W, b) in enumerate(zip(det.weights_, det.biases_, strict=True)):
        h = h @ torch.from_numpy(W).T + torch.from_numpy(b)
        if i < len(det.weights_) - 1:
            h = torch.relu(h)
    expected = ((h - Z) ** 2).mean(dim=1).numpy()
    np.testing.assert_allclose(det.score_many(X), expected, rtol=1e-9)


def test_naive_bayes_is_not_drowned_by_one_huge_variance_column(tmp_path: Path) -> None:
    # one column with variance 1e20 made the smoothing (1e-9 of the largest variance) swamp the
    # informative unit-scale column; standardised, naive Bayes separates the classes
    from misuse.detectors.supervised import load_classifier, make_classifier

    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 200)
    X = pd.DataFrame({"signal": np.r_[rng.normal(0, 1, 200), rng.normal(5, 1, 200)], "huge": rng.normal(0, 1e10, 400)})
    clf = make_classifier("naive_bayes").fit(X, y)
    assert (clf.predict(X) == y).mean() > 0.95
    again = load_classifier(clf.save(tmp_path / "nb"))
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X))
