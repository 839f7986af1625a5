"""Per-user SEA thresholds: the Neyman-Pearson budget split and the training-only pseudo-protocol."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from misuse.eval.sea import PER_USER, SeaData, np_thresholds, run_per_user, run_sea
from misuse.ingest.sea import SEA_SHAPE


def _synthetic(n_users: int = 4, seed: int = 0) -> SeaData:
    """Users with personal vocabularies; masquerade blocks are another vocabulary spliced in."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((SEA_SHAPE[0], n_users), dtype=np.int8)
    commands = []
    shared = [f"common{i}" for i in range(6)]
    for u in range(n_users):
        own = [*(f"u{u}c{i}" for i in range(10)), *shared]
        seq = rng.choice(own, 15_000)
        for b in rng.choice(SEA_SHAPE[0], 5, replace=False):
            truth[b, u] = 1
            seq[5000 + b * 100 : 5100 + b * 100] = rng.choice([f"intruder{i}" for i in range(8)] + shared, 100)
        commands.append(seq.astype(object))
    return SeaData([f"User{u + 1}" for u in range(n_users)], commands, truth)


def test_budget_is_kept_and_separable_users_get_lower_thresholds() -> None:
    rng = np.random.default_rng(0)
    centre, spread = np.zeros(2), np.ones(2)
    easy = rng.normal(4.0, 0.5, 500)  # outsiders far from user 0's clean scores
    hard = rng.normal(1.0, 0.5, 500)  # outsiders close to user 1's
    thr = np_thresholds(centre, spread, [easy, hard], target=0.01)
    assert norm.sf(thr).mean() <= 0.01 + 1e-9
    assert thr[0] < thr[1]  # the budget goes where it buys hits... or is spared where it buys none
    assert np.mean(easy > thr[0]) > 0.95


def test_per_user_run_catches_synthetic_masquerades_with_training_only_choice() -> None:
    data = _synthetic()
    small = {"alpha": (0.01,), "spread": ("cv", "drift"), "inflate": (1.0, 1.5), "target": (0.01,)}
    res = run_per_user(data, grid=small)
    m = res.metrics
    assert m["hit_rate"] >= 0.9
    assert m["false_alarm_rate"] < 0.05
    sel = m["selection"][PER_USER]
    assert len(sel["candidates"]) == 4
    assert sel["chosen"] in sel["candidates"]
    assert all(0.0 <= c["pseudo_fa"] <= 1.0 for c in sel["candidates"])


def test_run_sea_runs_the_per_user_model_by_name() -> None:
    (only,) = run_sea(_synthetic(3, seed=1), [PER_USER])
    assert only.model == PER_USER
    assert only.alarms.shape == (SEA_SHAPE[0], 3)
    assert only.metrics["roc_auc"] > 0.9


def test_mixture_population_weighs_every_other_user_once() -> None:
    import pytest

    from misuse.detectors.naive_bayes import NaiveBayesDetector
    from misuse.errors import InvalidParameterError

    heavy = ["make"] * 900 + ["ls"] * 100
    light = ["vi"] * 100
    pooled = NaiveBayesDetector(population="pooled").learn_many("me", ["ls"] * 50 + ["cd"] * 50)
    mixed = NaiveBayesDetector(population="mixture").learn_many("me", ["ls"] * 50 + ["cd"] * 50)
    for det in (pooled, mixed):
        det.learn_many("heavy", heavy)
        det.learn_many("light", light)
    # "vi" is 1 in 11 of the pooled others but half of the mixture: more typical of someone else
    assert mixed.score_block("me", ["vi"] * 10) > pooled.score_block("me", ["vi"] * 10) + 1.0
    with pytest.raises(InvalidParameterError, match="population"):
        NaiveBayesDetector(population="everyone")
