"""Naive Bayes bag-of-actions model with updating (Maxion & Townsend, DSN 2002).

Each entity's profile is the count of every action in its history. A block's score is the mean over
its actions of log P(action | population without the entity) - log P(action | entity), both with
additive smoothing ``alpha`` over the vocabulary plus one "unseen" slot; order inside the block is
ignored. Updating (folding a block that was not flagged back into the profile, as Maxion & Townsend
do) is ``learn_many`` after scoring: the evaluation decides when.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.sequence import SequenceDetector


class NaiveBayesDetector(SequenceDetector):
    """Multinomial naive Bayes over actions, self vs the rest of the population.

    Parameters
    ----------
    alpha:
        Additive smoothing of the action probabilities, > 0 (Maxion & Townsend use 0.01).
    contrast:
        Score against the population-minus-entity model (True) or the entity's model alone.
    population:
        How the "everyone else" model is made: "pooled" adds up the other entities' counts (heavy
        users dominate), "mixture" averages their smoothed distributions with equal weight (every
        other entity counts once; entities with no history are left out).
    seed:
        Unused (the model is deterministic); accepted for the common protocol.

    Examples
    --------
    >>> nb = NaiveBayesDetector().learn_many("alice", ["ls", "cd", "vi"] * 30)
    >>> _ = nb.learn_many("bob", ["make", "gcc", "ld"] * 30)
    >>> round(nb.score_block("alice", ["ls", "vi"]), 2) < 0 < nb.score_block("alice", ["gcc", "ld"])
    True
    """

    _params: ClassVar[dict[str, Any]] = {"alpha": 0.01, "contrast": True, "population": "pooled", "seed": 0}
    alpha: float
    population: str

    def _validate_params(self) -> None:
        self._check("alpha", isinstance(self.alpha, int | float) and self.alpha > 0, "a number > 0")
        self._check("population", self.population in ("pooled", "mixture"), "'pooled' or 'mixture'")

    def _init_state(self) -> None:
        self.counts_ = np.zeros((0, 16), dtype="float64")
        self.pop_ = np.zeros(16, dtype="float64")

    def _add_entity(self) -> None:
        n = len(self.entities_)
        if n > self.counts_.shape[0]:
            grown = np.zeros((max(2 * self.counts_.shape[0], n, 4), self.counts_.shape[1]))
            grown[: self.counts_.shape[0]] = self.counts_
            self.counts_ = grown

    def _grow(self, width: int) -> None:
        if width > self.counts_.shape[1]:
            cap = max(2 * self.counts_.shape[1], width)
            grown = np.zeros((self.counts_.shape[0], cap))
            grown[:, : self.counts_.shape[1]] = self.counts_
            self.counts_ = grown
            pop = np.zeros(cap)
            pop[: self.pop_.size] = self.pop_
            self.pop_ = pop

    def _learn(self, e: int, ids: np.ndarray) -> None:
        self._grow(int(ids.max()) + 1)
        add = np.bincount(ids, minlength=self.counts_.shape[1]).astype("float64")
        self.counts_[e] += add
        self.pop_ += add

    def _weights(self, e: int, own: bool) -> np.ndarray:
        v = len(self.vocab_) + 1
        if not own and self.population == "mixture":
            rows = self.counts_[: len(self.entities_), :v]
            keep = rows.sum(axis=1) > 0
            keep[e] = False
            if keep.any():
                c = rows[keep]
                p = (c + self.alpha) / (c.sum(axis=1, keepdims=True) + self.alpha * v)
                return np.log(p.mean(axis=0))  # type: ignore[no-any-return]
        c = self.counts_[e, :v] if own else self.pop_[:v] - self.counts_[e, :v]
        return np.log((c + self.alpha) / (c.sum() + self.alpha * v))  # type: ignore[no-any-return]

    def _logprobs(self, e: int, ids: np.ndarray, own: bool) -> np.ndarray:
        return self._weights(e, own)[ids]

    def block_scores(self, entity: str, blocks: np.ndarray) -> np.ndarray:
        """Vectorised scores of many blocks given as a (blocks, actions) array of action *names*."""
        self._require(entity)
        ids = self._encode(np.asarray(blocks).ravel()).reshape(np.shape(blocks))
        e = self.entities_[entity]
        w = -self._weights(e, True)
        if self.contrast and len(self.entities_) > 1:
            w = w + self._weights(e, False)
        return w[ids].mean(axis=1)  # type: ignore[no-any-return]

    def share(self, entity: str, action: str) -> float:
        """Share of ``action`` in ``entity``'s learned history."""
        self._require(entity)
        row = self.counts_[self.entities_[entity]]
        i = self.vocab_.get(action, 0)
        return float(row[i] / max(row.sum(), 1.0)) if i < row.size else 0.0

    def _state(self) -> dict[str, np.ndarray]:
        n, v = len(self.entities_), len(self.vocab_) + 1
        return {"counts": self.counts_[:n, :v].copy()}

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.counts_ = np.asarray(arrays["counts"], dtype="float64").copy()
        self.pop_ = self.counts_.sum(axis=0)

    def counts_of(self, entity: str) -> dict[str, float]:
        """The entity's action counts by name (for profiles and reports)."""
        self._require(entity)
        row = self.counts_[self.entities_[entity]]
        names = {i: a for a, i in self.vocab_.items()}
        return {names[int(i)]: float(row[i]) for i in np.flatnonzero(row) if int(i) in names}

    def unlearn(self, entity: str, actions: Sequence[str]) -> None:
        """Remove actions previously learned for ``entity`` (used for cross-validation folds)."""
        self._require(entity)
        ids = self._encode(actions)
        sub = np.bincount(ids, minlength=self.counts_.shape[1]).astype("float64")
        e = self.entities_[entity]
        self.counts_[e] -= sub
        self.pop_ -= sub
