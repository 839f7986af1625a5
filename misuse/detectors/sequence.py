"""Sequence detectors: models of the actions an entity performs, one after another.

The numeric :class:`~misuse.detectors.base.Detector` protocol takes feature dicts; user-interaction
models take *sequences of actions* (commands, device operations). They share its discipline:

- ``__init__`` only stores validated keyword arguments (``seed`` included, for randomness);
- ``learn_one(entity, action)`` / ``learn_many(entity, actions)`` add history to one entity's profile;
- ``score_block(entity, actions)`` returns a float, higher = more anomalous, and never changes state:
  the mean per-action log-likelihood ratio, in nats, of the population-minus-entity model against the
  entity's own model (``contrast=True``), or the mean negative log-likelihood under the entity's model;
- ``explain_block(entity, actions)`` names the actions that drove the score with typical (profile share)
  vs actual (block share) values;
- ``loglik(entity, actions)`` is the block's log-likelihood under one entity's model, used to say whom a
  behaviour resembles (:meth:`SequenceDetector.closest`);
- ``save``/``load`` write JSON + npz, never pickle.

:class:`MarkovDetector` is the smoothed n-gram model (Jelinek-Mercer interpolation down to an additive
unigram); naive Bayes lives in :mod:`misuse.detectors.naive_bayes`, the GRU/LSTM in
:mod:`misuse.detectors.lstm`.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.base import Contribution
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError

#: registered sequence detectors: name -> "module:Class" (read by :func:`sequence_detector_class`)
SEQUENCE_DETECTORS: Mapping[str, str] = {
    "markov": "misuse.detectors.sequence:MarkovDetector",
    "naive_bayes": "misuse.detectors.naive_bayes:NaiveBayesDetector",
    "gru": "misuse.detectors.lstm:RecurrentDetector",
    "ensemble": "misuse.detectors.ensemble:SequenceEnsemble",
}


class SequenceDetector(ABC):
    """Base class of per-entity action-sequence models.

    Subclasses declare ``_params`` and implement ``_learn``, ``_logprobs``, ``_state``/``_set_state``.
    Entities and the action vocabulary are kept here; unknown actions map to one shared "unseen" id.
    """

    _params: ClassVar[dict[str, Any]] = {"contrast": True, "seed": 0}
    contrast: bool
    seed: int

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self._params)
        if unknown:
            raise InvalidParameterError(
                f"{type(self).__name__} got unknown parameter(s) {sorted(unknown)}; valid: {sorted(self._params)}"
            )
        for name, default in self._params.items():
            setattr(self, name, params.get(name, default))
        self._check("seed", isinstance(self.seed, int), "an int")
        self._check("contrast", isinstance(self.contrast, bool), "a bool")
        self._validate_params()

    def _validate_params(self) -> None:  # noqa: B027 - optional hook
        """Raise InvalidParameterError for a parameter outside its constraints."""

    def _check(self, name: str, ok: bool, expected: str) -> None:
        if not ok:
            raise InvalidParameterError(
                f"The '{name}' parameter of {type(self).__name__} must be {expected}. "
                f"Got {getattr(self, name)!r} instead."
            )

    def get_params(self) -> dict[str, Any]:
        """The keyword arguments this detector was built with."""
        return {name: getattr(self, name) for name in self._params}

    def clone(self) -> SequenceDetector:
        """A new, unfitted detector with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----- vocabulary and entities ----------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        """True once some entity has learned at least one action."""
        return bool(getattr(self, "entities_", None))

    def _ensure(self) -> None:
        if not hasattr(self, "vocab_"):
            self.vocab_: dict[str, int] = {}
            self.entities_: dict[str, int] = {}
            self._init_state()

    def _encode_learn(self, actions: Iterable[str]) -> np.ndarray:
        ids = np.empty(0, dtype=np.int64)
        out: list[int] = []
        for a in actions:
            a = str(a)
            i = self.vocab_.get(a)
            if i is None:
                i = self.vocab_[a] = len(self.vocab_) + 1  # 0 = never seen
            out.append(i)
        if out:
            ids = np.asarray(out, dtype=np.int64)
        return ids

    def _encode(self, actions: Iterable[str]) -> np.ndarray:
        v = self.vocab_
        return np.fromiter((v.get(str(a), 0) for a in actions), dtype=np.int64)

    def _entity(self, entity: str) -> int:
        e = self.entities_.get(entity)
        if e is None:
            e = self.entities_[entity] = len(self.entities_)
            self._add_entity()
        return e

    def _require(self, entity: str | None = None) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} has not learned anything yet; call learn_many first")
        if entity is not None and entity not in self.entities_:
            raise SchemaError(
                f"{type(self).__name__}: no profile for entity {entity!r} "
                f"(known: {len(self.entities_)} entities, e.g. {sorted(self.entities_)[:5]})"
            )

    # ----- learning ---------------------------------------------------------------------------
    def learn_one(self, entity: str, action: str) -> None:
        """Add one action to ``entity``'s history (continuing its previous sequence)."""
        self.learn_many(entity, [action])

    def learn_many(self, entity: str, actions: Sequence[str]) -> SequenceDetector:
        """Add a run of actions to ``entity``'s history; returns self. Earlier history is kept."""
        self._ensure()
        ids = self._encode_learn(actions)
        e = self._entity(str(entity))
        if ids.size:
            self._learn(e, ids)
        return self

    # ----- scoring ---------------------------------------------------------------------------
    def loglik(self, entity: str, actions: Sequence[str]) -> float:
        """Log-likelihood (nats) of ``actions`` under ``entity``'s own model."""
        self._require(entity)
        return float(self._logprobs(self.entities_[entity], self._encode(actions), own=True).sum())

    def action_scores(self, entity: str, actions: Sequence[str]) -> np.ndarray:
        """Per-action anomaly (nats): log P(other) - log P(own), or -log P(own) without contrast."""
        self._require(entity)
        ids = self._encode(actions)
        e = self.entities_[entity]
        own = self._logprobs(e, ids, own=True)
        if self.contrast and len(self.entities_) > 1:
            return self._logprobs(e, ids, own=False) - own
        return -own

    def score_block(self, entity: str, actions: Sequence[str]) -> float:
        """Anomaly of a block of actions: the mean of :meth:`action_scores` (higher = more anomalous)."""
        if len(actions) == 0:
            raise SchemaError(f"{type(self).__name__}.score_block got an empty block for {entity!r}")
        return float(self.action_scores(entity, actions).mean())

    def score_blocks(self, entity: str, blocks: Sequence[Sequence[str]]) -> np.ndarray:
        """:meth:`score_block` of each block."""
        return np.array([self.score_block(entity, b) for b in blocks], dtype="float64")

    def score_one(self, entity: str, action: str, context: Sequence[str] = ()) -> float:
        """Anomaly of one action after ``context`` (the actions just before it)."""
        return float(self.action_scores(entity, [*context, action])[-1])

    def closest(self, actions: Sequence[str], top: int = 3) -> list[tuple[str, float]]:
        """Entities whose model explains ``actions`` best: (entity, mean log-likelihood per action)."""
        self._require()
        n = max(len(actions), 1)
        fits = [(name, self.loglik(name, actions) / n) for name in self.entities_]
        return sorted(fits, key=lambda t: -t[1])[:top]

    def explain_block(self, entity: str, actions: Sequence[str], top: int = 5) -> list[Contribution]:
        """The actions that drove the block's score, largest first.

        ``typical`` is the action's share of the entity's history, ``actual`` its share of the block,
        ``weight`` its share of the positive per-action anomaly.
        """
        per = self.action_scores(entity, actions)
        by: dict[str, float] = defaultdict(float)
        for a, s in zip(actions, per, strict=True):
            by[str(a)] += max(float(s), 0.0)
        total = sum(by.values()) or 1.0
        counts = Counter(str(a) for a in actions)
        ranked = sorted(by.items(), key=lambda kv: -kv[1])[:top]
        return [Contribution(a, self.share(entity, a), counts[a] / len(actions), w / total) for a, w in ranked if w > 0]

    explain_one = explain_block

    @abstractmethod
    def share(self, entity: str, action: str) -> float:
        """The share of ``action`` in ``entity``'s learned history (0 when never seen)."""

    # ----- model-specific ----------------------------------------------------------------------
    @abstractmethod
    def _init_state(self) -> None:
        """Create empty learned state."""

    @abstractmethod
    def _add_entity(self) -> None:
        """Make room for one more entity."""

    @abstractmethod
    def _learn(self, e: int, ids: np.ndarray) -> None:
        """Fold encoded actions into entity ``e``."""

    @abstractmethod
    def _logprobs(self, e: int, ids: np.ndarray, own: bool) -> np.ndarray:
        """Per-action log-probabilities under entity ``e`` (own) or the population without it."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save."""

    @abstractmethod
    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`_state` returned."""

    # ----- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to a folder as ``detector.json`` (class, parameters, vocabulary, entities) + ``state.npz``."""
        self._require()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "class": type(self).__name__,
            "kind": "sequence",
            "params": self.get_params(),
            "vocab": self.vocab_,
            "entities": self.entities_,
        }
        (folder / "detector.json").write_text(json.dumps(meta, indent=1))
        np.savez(folder / "state.npz", **self._state())  # type: ignore[arg-type]
        return folder

    @classmethod
    def load(cls, path: str | Path) -> SequenceDetector:
        """Load a detector saved with :meth:`save` (JSON + npz; never executes code)."""
        folder = Path(path)
        meta_path = folder / "detector.json"
        if not meta_path.exists():
            raise SchemaError(f"{folder}: not a saved sequence detector (detector.json missing)")
        meta = json.loads(meta_path.read_text())
        target = sequence_detector_class(str(meta.get("class", "")))
        if cls is not SequenceDetector and not issubclass(target, cls):
            raise SchemaError(f"{folder}: holds a {target.__name__}, not a {cls.__name__}")
        det = target(**meta["params"])
        det.vocab_ = {str(k): int(v) for k, v in meta["vocab"].items()}
        det.entities_ = {str(k): int(v) for k, v in meta["entities"].items()}
        with np.load(folder / "state.npz", allow_pickle=False) as npz:
            det._set_state({k: npz[k] for k in npz.files})
        return det


def sequence_detector_class(name: str) -> type[SequenceDetector]:
    """The sequence detector class registered under ``name`` or class name."""
    target = SEQUENCE_DETECTORS.get(name)
    if target is None:
        target = {v.rsplit(":", 1)[1]: v for v in SEQUENCE_DETECTORS.values()}.get(name)
    if target is None:
        raise InvalidParameterError(f"unknown sequence detector {name!r}; registered: {sorted(SEQUENCE_DETECTORS)}")
    module, cls = target.split(":")
    return getattr(import_module(module), cls)  # type: ignore[no-any-return]


def make_sequence_detector(name: str, **params: Any) -> SequenceDetector:
    """Build a registered sequence detector."""
    return sequence_detector_class(name)(**params)


class MarkovDetector(SequenceDetector):
    """Smoothed n-gram (Markov chain) model of each entity's actions.

    P(a | context) interpolates the maximum-likelihood estimates of every order from ``order`` down to
    a bigram with weight ``lam`` per level (Jelinek-Mercer), ending in an additive-``alpha`` unigram over
    the vocabulary plus one "unseen" slot. With ``contrast`` the score is log P(population without the
    entity) - log P(entity), so behaviour that another profile explains better scores high.

    Parameters
    ----------
    order:
        Longest n-gram (1 = unigram, 2 = first-order Markov chain, up to 4).
    lam:
        Weight of each higher order against the next lower one, in (0, 1).
    alpha:
        Additive smoothing of the unigram, > 0.
    contrast, seed:
        See :class:`SequenceDetector`.

    Examples
    --------
    >>> m = MarkovDetector(order=2).learn_many("alice", ["ls", "cd", "ls", "cd"] * 20)
    >>> _ = m.learn_many("bob", ["make", "gcc", "make", "gcc"] * 20)
    >>> m.score_block("alice", ["make", "gcc"] * 5) > m.score_block("alice", ["ls", "cd"] * 5)
    True
    """

    _params: ClassVar[dict[str, Any]] = {"order": 2, "lam": 0.6, "alpha": 0.01, "contrast": True, "seed": 0}
    order: int
    lam: float
    alpha: float

    def _validate_params(self) -> None:
        self._check("order", isinstance(self.order, int) and 1 <= self.order <= 4, "an int in [1, 4]")
        self._check("lam", isinstance(self.lam, int | float) and 0 < self.lam < 1, "a number in (0, 1)")
        self._check("alpha", isinstance(self.alpha, int | float) and self.alpha > 0, "a number > 0")

    def _init_state(self) -> None:
        self.unigram_: list[dict[int, float]] = []
        self.grams_: list[dict[tuple[int, ...], float]] = []  # context+action -> count (orders >= 2)
        self.contexts_: list[dict[tuple[int, ...], float]] = []  # context -> count of continuations
        self.tail_: list[deque[int]] = []
        self.pop_unigram_: dict[int, float] = defaultdict(float)
        self.pop_grams_: dict[tuple[int, ...], float] = defaultdict(float)
        self.pop_contexts_: dict[tuple[int, ...], float] = defaultdict(float)

    def _add_entity(self) -> None:
        self.unigram_.append(defaultdict(float))
        self.grams_.append(defaultdict(float))
        self.contexts_.append(defaultdict(float))
        self.tail_.append(deque(maxlen=max(self.order - 1, 1)))

    def _learn(self, e: int, ids: np.ndarray) -> None:
        tail = self.tail_[e]
        seq = [*tail, *ids.tolist()]
        start = len(tail)
        uni, grams, ctxs = self.unigram_[e], self.grams_[e], self.contexts_[e]
        pg, pc = self.pop_grams_, self.pop_contexts_
        for i in range(start, len(seq)):
            a = seq[i]
            uni[a] += 1
            self.pop_unigram_[a] += 1
            for k in range(1, min(self.order - 1, i) + 1):
                ctx = tuple(seq[i - k : i])
                g = (*ctx, a)
                grams[g] += 1.0
                ctxs[ctx] += 1.0
                pg[g] += 1.0
                pc[ctx] += 1.0
        if self.order > 1:
            tail.extend(seq[-(self.order - 1) :])

    def _logprobs(self, e: int, ids: np.ndarray, own: bool) -> np.ndarray:
        uni = self.unigram_[e]
        grams, ctxs = self.grams_[e], self.contexts_[e]
        pu, pg, pc = self.pop_unigram_, self.pop_grams_, self.pop_contexts_
        v = len(self.vocab_) + 1
        total_own = sum(uni.values())
        total = total_own if own else sum(pu.values()) - total_own
        alpha, lam = self.alpha, self.lam
        seq = ids.tolist()
        out = np.empty(len(seq), dtype="float64")
        for i, a in enumerate(seq):
            c = uni.get(a, 0) if own else pu.get(a, 0) - uni.get(a, 0)
            p = (c + alpha) / (total + alpha * v)
            for k in range(1, min(self.order - 1, i) + 1):
                ctx = tuple(seq[i - k : i])
                g = (*ctx, a)
                if own:
                    n_ctx, n_g = ctxs.get(ctx, 0.0), grams.get(g, 0.0)
                else:
                    n_ctx = pc.get(ctx, 0.0) - ctxs.get(ctx, 0.0)
                    n_g = pg.get(g, 0.0) - grams.get(g, 0.0)
                if n_ctx <= 0:
                    break
                p = lam * n_g / n_ctx + (1 - lam) * p
            out[i] = math.log(p)
        return out

    def share(self, entity: str, action: str) -> float:
        """Share of ``action`` in ``entity``'s learned history."""
        self._require(entity)
        uni = self.unigram_[self.entities_[entity]]
        return uni.get(self.vocab_.get(action, 0), 0) / max(sum(uni.values()), 1)

    def _state(self) -> dict[str, np.ndarray]:
        width = self.order
        rows: list[list[int]] = []
        counts: list[float] = []
        for e in range(len(self.entities_)):
            for a, c in self.unigram_[e].items():
                rows.append([e, a] + [-1] * (width - 1))
                counts.append(float(c))
            for g, c in self.grams_[e].items():
                rows.append([e, *g] + [-1] * (width - len(g)))
                counts.append(c)
        tails = np.full((len(self.entities_), max(width - 1, 1)), -1, dtype=np.int64)
        for e, t in enumerate(self.tail_):
            for j, a in enumerate(t):
                tails[e, j] = a
        return {
            "rows": np.asarray(rows, dtype=np.int64).reshape(-1, width + 1),
            "counts": np.asarray(counts, dtype="float64"),
            "tails": tails,
        }

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._init_state()
        for _ in range(len(self.entities_)):
            self._add_entity()
        for row, c in zip(arrays["rows"].tolist(), arrays["counts"].tolist(), strict=True):
            e, gram = row[0], tuple(x for x in row[1:] if x >= 0)
            if len(gram) == 1:
                self.unigram_[e][gram[0]] += c
                self.pop_unigram_[gram[0]] += c
            else:
                self.grams_[e][gram] += c
                self.contexts_[e][gram[:-1]] += c
                self.pop_grams_[gram] += c
                self.pop_contexts_[gram[:-1]] += c
        for e, t in enumerate(arrays["tails"].tolist()):
            self.tail_[e].extend(a for a in t if a >= 0)
