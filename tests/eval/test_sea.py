"""The SEA protocol: metrics on a hand-made truth, a tiny synthetic run, and a reduced real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from misuse.errors import InvalidParameterError
from misuse.eval.sea import SeaData, load_sea, normaliser, run_sea, sea_metrics
from misuse.ingest.sea import SEA_SHAPE


def test_metrics_count_hits_and_false_alarms_against_truth() -> None:
    truth = np.zeros((4, 2), dtype=int)
    truth[1, 0] = truth[2, 1] = 1
    scores = np.array([[0.1, 0.2], [0.9, 0.3], [0.2, 0.8], [0.7, 0.1]])
    m = sea_metrics(truth, scores, scores > 0.5)
    assert (m["hits"], m["false_alarms"], m["masquerade_blocks"], m["clean_blocks"]) == (2, 1, 2, 6)
    assert m["roc_auc"] == pytest.approx(1.0)


def test_normaliser_puts_each_users_heldout_max_at_one() -> None:
    heldout = np.random.default_rng(0).normal(size=(50, 3)) * [1, 10, 100]
    c, s = normaliser(heldout, "max")
    assert np.allclose(((heldout - c) / s).max(axis=0), 1.0)
    with pytest.raises(InvalidParameterError, match="bogus"):
        normaliser(heldout, "bogus")


def _synthetic(n_users: int = 4, seed: int = 0) -> SeaData:
    """Users with personal vocabularies; masquerade blocks are another vocabulary spliced in."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((SEA_SHAPE[0], n_users), dtype=np.int8)
    commands = []
    for u in range(n_users):
        own = [f"u{u}c{i}" for i in range(12)]
        seq = rng.choice(own, 15_000, p=np.r_[np.full(6, 0.14), np.full(6, 0.16 / 6)])
        for b in rng.choice(SEA_SHAPE[0], 5, replace=False):
            truth[b, u] = 1
            seq[5000 + b * 100 : 5100 + b * 100] = rng.choice([f"intruder{i}" for i in range(8)], 100)
        commands.append(seq.astype(object))
    return SeaData([f"User{u + 1}" for u in range(n_users)], commands, truth)


def test_synthetic_masquerades_are_caught_with_training_thresholds() -> None:
    data = _synthetic()
    grid = {"naive_bayes": [{"alpha": 0.01}], "markov": [{"order": 2, "lam": 0.6, "alpha": 0.01}]}
    (nb,) = run_sea(data, ["naive_bayes"], grid=grid)
    assert nb.metrics["hit_rate"] == 1.0
    assert nb.metrics["false_alarm_rate"] < 0.05
    assert nb.metrics["selection"]["naive_bayes"]["params"] == {"alpha": 0.01}


def test_unknown_model_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="nonsense"):
        run_sea(_synthetic(2), ["nonsense"])


@pytest.mark.realdata
def test_reduced_real_sea_run_beats_chance_with_training_thresholds(shared_data: Path) -> None:
    data = load_sea(shared_data / "sea-masquerade", n_users=10)
    (nb,) = run_sea(data, ["naive_bayes"], grid={"naive_bayes": [{"alpha": 0.01}]})
    m = nb.metrics
    assert m["masquerade_blocks"] + m["clean_blocks"] == 1000
    assert m["roc_auc"] > 0.8
    assert m["false_alarm_rate"] < 0.05
