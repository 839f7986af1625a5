"""Ensemble of sequence detectors: the mean of the members' per-entity normalised scores.

Each member's score for an entity is put on a common scale with that entity's *calibration* — the
centre (median) and scale (max - median) of member scores on held-out clean blocks, set by
:meth:`SequenceEnsemble.calibrate` — and the ensemble score is their weighted mean. Without
calibration a member's raw score is used (centre 0, scale 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from misuse.detectors.base import Contribution
from misuse.detectors.sequence import SequenceDetector, make_sequence_detector


class SequenceEnsemble(SequenceDetector):
    """Combine registered sequence detectors.

    Parameters
    ----------
    members:
        Registered names (``naive_bayes``, ``markov``, ``gru``).
    weights:
        One non-negative weight per member (None = equal).
    contrast, seed:
        Passed to every member.

    Examples
    --------
    >>> ens = SequenceEnsemble(members=["naive_bayes", "markov"])
    >>> _ = ens.learn_many("alice", ["ls", "cd", "vi"] * 30)
    >>> _ = ens.learn_many("bob", ["make", "gcc", "ld"] * 30)
    >>> ens.score_block("alice", ["make", "gcc"] * 5) > ens.score_block("alice", ["ls", "cd"] * 5)
    True
    """

    _params: ClassVar[dict[str, Any]] = {
        "members": ["naive_bayes", "markov"],
        "weights": None,
        "contrast": True,
        "seed": 0,
    }

    members: list[str]
    weights: list[float] | None

    def _validate_params(self) -> None:
        ok = isinstance(self.members, list | tuple) and len(self.members) >= 1 and "ensemble" not in self.members
        self._check("members", ok, "a non-empty list of registered sequence detector names")
        self.members = list(self.members)
        if self.weights is not None:
            w = self.weights
            good = isinstance(w, list | tuple) and len(w) == len(self.members) and all(float(x) >= 0 for x in w)
            self._check("weights", good, f"None or {len(self.members)} non-negative numbers")
            self.weights = [float(x) for x in w]
        for m in self.members:
            make_sequence_detector(m)  # fails loudly on an unknown name

    def _init_state(self) -> None:
        self.models_ = [make_sequence_detector(m, contrast=self.contrast, seed=self.seed) for m in self.members]
        self.calibration_ = np.zeros((0, len(self.members), 2))

    def _add_entity(self) -> None:
        row = np.zeros((1, len(self.members), 2))
        row[..., 1] = 1.0
        self.calibration_ = np.vstack([self.calibration_, row])

    def _learn(self, e: int, ids: np.ndarray) -> None:
        names = {i: a for a, i in self.vocab_.items()}
        entity = next(k for k, v in self.entities_.items() if v == e)
        actions = [names[i] for i in ids.tolist()]
        for m in self.models_:
            m.learn_many(entity, actions)

    def _logprobs(self, e: int, ids: np.ndarray, own: bool) -> np.ndarray:
        per = [m._logprobs(e, ids, own) for m in self.models_]
        return self._w() @ np.stack(per)  # type: ignore[no-any-return]

    def _w(self) -> np.ndarray:
        w = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, dtype="float64")
        return w / (w.sum() or 1.0)

    def member_scores(self, entity: str, actions: Sequence[str]) -> np.ndarray:
        """Each member's normalised block score."""
        self._require(entity)
        cal = self.calibration_[self.entities_[entity]]
        raw = np.array([m.score_block(entity, actions) for m in self.models_])
        return (raw - cal[:, 0]) / cal[:, 1]  # type: ignore[no-any-return]

    def score_block(self, entity: str, actions: Sequence[str]) -> float:
        """Weighted mean of the members' normalised scores (higher = more anomalous)."""
        return float(self.member_scores(entity, actions) @ self._w())

    def action_scores(self, entity: str, actions: Sequence[str]) -> np.ndarray:
        """Weighted mean of the members' per-action scores, each divided by its entity scale."""
        self._require(entity)
        cal = self.calibration_[self.entities_[entity]]
        per = np.stack([m.action_scores(entity, actions) / cal[i, 1] for i, m in enumerate(self.models_)])
        return self._w() @ per  # type: ignore[no-any-return]

    def loglik(self, entity: str, actions: Sequence[str]) -> float:
        """Weighted mean of the members' log-likelihoods."""
        return float(self._w() @ np.array([m.loglik(entity, actions) for m in self.models_]))

    def calibrate(self, entity: str, heldout_blocks: Sequence[Sequence[str]]) -> None:
        """Set ``entity``'s per-member centre and scale from scores of held-out clean blocks."""
        self._require(entity)
        e = self.entities_[entity]
        for i, m in enumerate(self.models_):
            s = m.score_blocks(entity, heldout_blocks)
            centre = float(np.median(s))
            spread = float(s.max() - centre)
            self.calibration_[e, i] = (centre, spread if spread > 1e-9 else 1.0)

    def explain_block(self, entity: str, actions: Sequence[str], top: int = 5) -> list[Contribution]:
        """The actions behind the ensemble score (from the combined per-action scores)."""
        return super().explain_block(entity, actions, top)

    def share(self, entity: str, action: str) -> float:
        """The first member's share of ``action`` in ``entity``'s history."""
        return self.models_[0].share(entity, action)

    def _state(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"calibration": self.calibration_}
        for i, m in enumerate(self.models_):
            for k, v in m._state().items():
                arrays[f"m{i}.{k}"] = v
            names = sorted(m.vocab_, key=m.vocab_.__getitem__)
            arrays[f"m{i}._vocab_order"] = np.asarray(names, dtype=str)
        return arrays

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._init_state()
        self.calibration_ = np.asarray(arrays["calibration"], dtype="float64").copy()
        for i, m in enumerate(self.models_):
            m._ensure()
            m.vocab_ = {str(a): j + 1 for j, a in enumerate(arrays[f"m{i}._vocab_order"].tolist())}
            m.entities_ = dict(self.entities_)
            m._set_state({k[len(f"m{i}.") :]: v for k, v in arrays.items() if k.startswith(f"m{i}.")})
