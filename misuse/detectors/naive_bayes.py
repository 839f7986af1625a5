"""Naive Bayes bag-of-actions model with updating (Maxion & Townsend, DSN 2002).

Each entity's profile is the count of every action in its history. A block's score is the mean over
its actions of log P(action | population without the entity) - log P(action | entity); order inside
the block is ignored. Updating (folding a block that was not flagged back into the profile, as
Maxion & Townsend do) is ``learn_many`` after scoring: the evaluation decides when.

Two ways to estimate P(action | entity) for actions the entity rarely or never used:

- ``smoothing="additive"`` (Maxion & Townsend): add ``alpha`` to every count of the vocabulary plus
  one "unseen" slot. An action *nobody* has used then looks like the entity's own, because the small
  entity profile spreads relatively more mass on unseen actions than the large population does.
- ``smoothing="dirichlet"``: the entity's counts are shrunk toward the population's distribution with
  concentration ``mu`` (a Dirichlet prior, as in language-model smoothing); the population itself
  escapes to unseen actions by Witten-Bell (mass = its number of distinct actions). An action the
  entity never used costs log((N + mu) / mu) nats whether or not others used it: behaviour new to an
  identity is evidence against it, which is what an outsider masquerading brings.

``burst="log"`` discounts repeats inside a block (an action seen k times weighs log(1 + k) instead
of k; Rennie et al., ICML 2003), so one command run 40 times does not outvote the rest.
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
        Additive smoothing of the action probabilities, > 0 (Maxion & Townsend use 0.01); used by
        ``smoothing="additive"`` and for the population.
    smoothing:
        "additive" or "dirichlet" (shrink the entity toward the population, concentration ``mu``).
    mu:
        Concentration of the Dirichlet prior, > 0 (pseudo-counts of population behaviour).
    burst:
        "none" (every occurrence counts) or "log" (k repeats in a block weigh log(1 + k)).
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

    _params: ClassVar[dict[str, Any]] = {
        "alpha": 0.01,
        "contrast": True,
        "population": "pooled",
        "smoothing": "additive",
        "mu": 4.0,
        "burst": "none",
        "seed": 0,
    }
    alpha: float
    population: str
    smoothing: str
    mu: float
    burst: str

    def _validate_params(self) -> None:
        self._check("alpha", isinstance(self.alpha, int | float) and self.alpha > 0, "a number > 0")
        self._check("population", self.population in ("pooled", "mixture"), "'pooled' or 'mixture'")
        self._check("smoothing", self.smoothing in ("additive", "dirichlet"), "'additive' or 'dirichlet'")
        self._check("mu", isinstance(self.mu, int | float) and self.mu > 0, "a number > 0")
        self._check("burst", self.burst in ("none", "log"), "'none' or 'log'")

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

    def _population(self, e: int) -> np.ndarray:
        """P(action | everyone but entity ``e``) over the vocabulary plus the unseen slot."""
        v = len(self.vocab_) + 1
        if self.population == "mixture":
            rows = self.counts_[: len(self.entities_), :v]
            keep = rows.sum(axis=1) > 0
            keep[e] = False
            if keep.any():
                c = rows[keep]
                return ((c + self.alpha) / (c.sum(axis=1, keepdims=True) + self.alpha * v)).mean(axis=0)  # type: ignore[no-any-return]
        c = self.pop_[:v] - self.counts_[e, :v]
        if self.smoothing == "dirichlet":
            # Witten-Bell: the population keeps mass (distinct actions) / (events + distinct) for the unseen
            distinct = float((c > 0).sum())
            if c.sum() <= 0:
                return np.full(v, 1.0 / v)
            return (c + distinct / v) / (c.sum() + distinct)  # type: ignore[no-any-return]
        return (c + self.alpha) / (c.sum() + self.alpha * v)  # type: ignore[no-any-return]

    def _weights(self, e: int, own: bool, pop: np.ndarray | None = None) -> np.ndarray:
        """Log-probabilities of entity ``e``'s model (own) or the population's; ``pop``: the latter's
        probabilities when the caller already has them."""
        v = len(self.vocab_) + 1
        if own and self.smoothing == "additive":
            c = self.counts_[e, :v]
            return np.log((c + self.alpha) / (c.sum() + self.alpha * v))  # type: ignore[no-any-return]
        q = self._population(e) if pop is None else pop
        if not own:
            return np.log(q)  # type: ignore[no-any-return]
        c = self.counts_[e, :v]
        return np.log((c + self.mu * q) / (c.sum() + self.mu))  # type: ignore[no-any-return]

    def _logprobs(self, e: int, ids: np.ndarray, own: bool) -> np.ndarray:
        return self._weights(e, own)[ids]

    def block_scores(self, entity: str, blocks: np.ndarray) -> np.ndarray:
        """Vectorised scores of many blocks given as a (blocks, actions) array of action *names*."""
        self._require(entity)
        ids = self._encode(np.asarray(blocks).ravel()).reshape(np.shape(blocks))
        e = self.entities_[entity]
        contrast = self.contrast and len(self.entities_) > 1
        pop = self._population(e) if contrast or self.smoothing == "dirichlet" else None
        w = -self._weights(e, True, pop)
        if contrast:
            w = w + self._weights(e, False, pop)
        if self.burst == "none":
            return w[ids].mean(axis=1)  # type: ignore[no-any-return]
        return _discounted(w, np.atleast_2d(ids))

    def score_block(self, entity: str, actions: Sequence[str]) -> float:
        """Anomaly of a block: mean per-action score, repeats discounted when ``burst="log"``."""
        if self.burst == "none" or len(actions) == 0:
            return super().score_block(entity, actions)
        return float(self.block_scores(entity, np.asarray([list(actions)], dtype=object))[0])

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


def _discounted(w: np.ndarray, ids: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Scores of blocks (rows of ``ids``) with k repeats of an action weighing log(1 + k), per action."""
    v = w.size
    out = np.empty(ids.shape[0], dtype="float64")
    for lo in range(0, ids.shape[0], chunk):
        part = ids[lo : lo + chunk]
        rows = np.arange(part.shape[0])[:, None]
        counts = np.bincount((rows * v + part).ravel(), minlength=part.shape[0] * v).reshape(-1, v)
        out[lo : lo + chunk] = (np.log1p(counts) @ w) / part.shape[1]
    return out
