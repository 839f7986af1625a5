"""Per-user SEA thresholds: the Neyman-Pearson budget split and the training-only rehearsal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from misuse.errors import InvalidParameterError
from misuse.eval.sea import PER_USER, REHEARSED, SeaData, run_sea
from misuse.eval.sea_per_user import (
    Rehearsal,
    inject,
    np_thresholds,
    rehearse,
    run_per_user,
    run_rehearsed,
)
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


@pytest.mark.parametrize(
    ("run", "name", "grid", "fa_key"),
    [
        (run_per_user, PER_USER, {"alpha": (0.01,), "spread": ("cv", "drift")}, "pseudo_fa"),
        (run_rehearsed, REHEARSED, {"model": ("additive", "dirichlet"), "burst": ("none",)}, "rehearsal_fa"),
    ],
)
def test_per_user_runs_catch_synthetic_masquerades_with_training_only_choice(
    run: Any, name: str, grid: dict[str, tuple[Any, ...]], fa_key: str
) -> None:
    res = run(_synthetic(), grid={**grid, "inflate": (1.0, 1.5), "target": (0.01,)})
    m = res.metrics
    assert m["hit_rate"] >= 0.9
    assert m["false_alarm_rate"] < 0.05
    sel = m["selection"][name]
    assert len(sel["candidates"]) == 4
    assert sel["chosen"] in sel["candidates"]
    assert all(0.0 <= c[fa_key] <= 1.0 for c in sel["candidates"])


def test_rehearsal_needs_only_training_commands() -> None:
    full = _synthetic(4, seed=2)
    train_only = SeaData(full.users, [c[:5000] for c in full.commands], np.zeros((0, 4), dtype=np.int8))
    grid = {"model": ("dirichlet",), "burst": ("log",), "inflate": (1.5,), "target": (0.01,)}
    sel = rehearse(train_only, grid)
    assert sel == rehearse(full, grid)  # the test blocks and truth play no part
    assert sel["injected"] > 0 and sel["clean"] > 0


def test_injected_runs_are_consecutive_outsider_blocks_and_leave_the_rest_clean() -> None:
    clean = np.full((30, 100), "own", dtype=object)
    outsider = np.array([[f"out{b}"] * 100 for b in range(50)], dtype=object)
    stream, labels = inject(clean, [outsider], Rehearsal(start=0.2, stay=0.8), np.random.default_rng(1))
    assert labels.any() and not labels.all()
    assert (stream[~labels] == "own").all()
    blocks = [int(stream[t, 0][3:]) for t in np.flatnonzero(labels)]
    starts = np.flatnonzero(labels & ~np.r_[False, labels[:-1]])
    for t in np.flatnonzero(labels):
        if t not in starts:  # inside a run: the outsider's next block
            assert int(stream[t, 0][3:]) == (int(stream[t - 1, 0][3:]) + 1) % 50
    assert len(blocks) == labels.sum()


def test_rehearsal_parameters_are_checked() -> None:
    with pytest.raises(InvalidParameterError, match="train_blocks"):
        Rehearsal(train_blocks=50)
    with pytest.raises(InvalidParameterError, match="start"):
        Rehearsal(start=0.0)
    with pytest.raises(InvalidParameterError, match="at least 3 users"):
        rehearse(_synthetic(2))


def test_run_sea_runs_the_per_user_models_by_name() -> None:
    results = run_sea(_synthetic(3, seed=1), [REHEARSED, PER_USER])
    assert [r.model for r in results] == [REHEARSED, PER_USER]
    for r in results:
        assert r.alarms.shape == (SEA_SHAPE[0], 3)
        assert r.metrics["roc_auc"] > 0.9


def test_mixture_population_weighs_every_other_user_once() -> None:
    from misuse.detectors.naive_bayes import NaiveBayesDetector

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


def test_dirichlet_smoothing_counts_never_used_commands_against_the_identity() -> None:
    from misuse.detectors.naive_bayes import NaiveBayesDetector

    me, other = ["ls", "cd", "vi"] * 100, ["make", "gcc"] * 150
    additive = NaiveBayesDetector().learn_many("me", me).learn_many("other", other)
    dirichlet = NaiveBayesDetector(smoothing="dirichlet", mu=4.0).learn_many("me", me).learn_many("other", other)
    novel = ["zzz-tool"] * 10  # nobody ever ran it
    # additive smoothing: the small profile spreads more mass on the unseen, so it looks like "me"
    assert additive.score_block("me", novel) <= 0.0
    # dirichlet: costs log((N + mu) / mu) nats per action, whoever else used it or not
    assert dirichlet.score_block("me", novel) == pytest.approx(np.log((300 + 4.0) / 4.0))
    assert dirichlet.score_block("me", ["gcc"] * 10) == pytest.approx(np.log((300 + 4.0) / 4.0))
    assert dirichlet.score_block("me", ["ls", "vi"] * 5) < 0.0


def test_burst_discount_weighs_k_repeats_as_log_1_plus_k() -> None:
    from misuse.detectors.naive_bayes import NaiveBayesDetector

    det = NaiveBayesDetector(burst="log").learn_many("me", ["ls", "cd"] * 50).learn_many("you", ["gcc"] * 100)
    plain = NaiveBayesDetector().learn_many("me", ["ls", "cd"] * 50).learn_many("you", ["gcc"] * 100)
    per_action = plain.action_scores("me", ["gcc", "ls"])
    block = ["gcc"] * 9 + ["ls"]
    expected = (per_action[0] * np.log(10) + per_action[1] * np.log(2)) / 10
    assert det.score_block("me", block) == pytest.approx(expected)
    assert det.block_scores("me", np.array([block], dtype=object))[0] == pytest.approx(expected)
    with pytest.raises(InvalidParameterError, match="burst"):
        NaiveBayesDetector(burst="sqrt")
