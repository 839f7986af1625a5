"""GRU/LSTM next-action model (torch, CPU). Imported only on the deep path.

One small recurrent network serves every entity: the input at each step is the action embedding
concatenated with an entity embedding. Slot 0 of the entity table is the *population*: every
training window is also learned under it, so ``contrast`` compares log P(action | population) with
log P(action | entity), as the counting models do. Weights are saved as npz arrays, never pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from misuse.detectors.sequence import SequenceDetector


class _Net(nn.Module):
    def __init__(self, n_actions: int, n_entities: int, embed: int, hidden: int, cell: str) -> None:
        super().__init__()
        self.act = nn.Embedding(n_actions, embed)
        self.ent = nn.Embedding(n_entities, embed)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(2 * embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, n_actions)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.act(x), self.ent(e)[:, None, :].expand(-1, x.shape[1], -1)], dim=-1)
        y, _ = self.rnn(h)
        return torch.log_softmax(self.out(y), dim=-1)  # type: ignore[no-any-return]


class RecurrentDetector(SequenceDetector):
    """Next-action GRU (or LSTM) with an entity embedding; per-action surprise as the score.

    Parameters
    ----------
    cell:
        "gru" or "lstm".
    embed, hidden:
        Embedding and hidden sizes (small: the model must train on a CPU in seconds).
    epochs:
        Passes over each newly learned run of actions (mixed with an equal replay sample of history).
    window:
        Training window length (truncated back-propagation).
    lr:
        Adam learning rate.
    max_actions:
        Vocabulary capacity; actions beyond it share the "unseen" slot.
    max_entities:
        Entity capacity (plus the population slot).
    contrast, seed:
        See :class:`~misuse.detectors.sequence.SequenceDetector`.

    Examples
    --------
    >>> g = RecurrentDetector(epochs=3, hidden=8, embed=4, max_entities=4, max_actions=8)
    >>> _ = g.learn_many("alice", ["ls", "cd"] * 40)
    >>> _ = g.learn_many("bob", ["make", "gcc"] * 40)
    >>> g.score_block("alice", ["make", "gcc"] * 4) > g.score_block("alice", ["ls", "cd"] * 4)
    True
    """

    _params: ClassVar[dict[str, Any]] = {
        "cell": "gru",
        "embed": 16,
        "hidden": 32,
        "epochs": 2,
        "window": 32,
        "lr": 0.01,
        "max_actions": 1024,
        "max_entities": 256,
        "contrast": True,
        "seed": 0,
    }

    cell: str
    embed: int
    hidden: int
    epochs: int
    window: int
    lr: float
    max_actions: int
    max_entities: int

    def _validate_params(self) -> None:
        self._check("cell", self.cell in ("gru", "lstm"), '"gru" or "lstm"')
        for name in ("embed", "hidden", "epochs", "window", "max_actions", "max_entities"):
            self._check(name, isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "an int >= 1")
        self._check("lr", isinstance(self.lr, int | float) and self.lr > 0, "a number > 0")

    def _init_state(self) -> None:
        torch.manual_seed(self.seed)
        self.net_ = _Net(self.max_actions + 1, self.max_entities + 1, self.embed, self.hidden, self.cell)
        self.history_: list[np.ndarray] = []
        self._rng = np.random.default_rng(self.seed)

    def _add_entity(self) -> None:
        self.history_.append(np.zeros(0, dtype=np.int64))

    def _clip(self, ids: np.ndarray) -> np.ndarray:
        return np.where(ids <= self.max_actions, ids, 0)

    def _windows(self, ids: np.ndarray) -> np.ndarray:
        w = self.window + 1
        if ids.size < 2:
            return np.zeros((0, w), dtype=np.int64)
        if ids.size < w:
            ids = np.r_[np.zeros(w - ids.size, dtype=np.int64), ids]
        starts = np.arange(0, ids.size - w + 1, self.window)
        return np.stack([ids[s : s + w] for s in starts])

    def _learn(self, e: int, ids: np.ndarray) -> None:
        slot = min(e + 1, self.max_entities)
        ids = self._clip(ids)
        prev = self.history_[e]
        self.history_[e] = np.r_[prev[-self.window :], ids][-50_000:]
        new = self._windows(np.r_[prev[-1:], ids] if prev.size else ids)
        if not len(new):
            return
        older = [(k, h) for k, h in enumerate(self.history_) if h.size > self.window and k != e]
        replay, replay_ent = [], []
        for _ in range(min(len(new), 64) if older else 0):
            k, h = older[int(self._rng.integers(len(older)))]
            s = int(self._rng.integers(h.size - self.window))
            replay.append(h[s : s + self.window + 1])
            replay_ent.append(min(k + 1, self.max_entities))
        X = np.vstack([new, new, *([np.stack(replay)] if replay else [])])
        E = np.r_[np.full(len(new), slot), np.zeros(len(new), dtype=np.int64), np.asarray(replay_ent, dtype=np.int64)]
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        xt, et = torch.as_tensor(X), torch.as_tensor(E)
        gen = torch.Generator().manual_seed(self.seed + int(e))
        self.net_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(xt), generator=gen)
            for b in range(0, len(xt), 64):
                idx = order[b : b + 64]
                logp = self.net_(xt[idx, :-1], et[idx])
                loss = -logp.gather(-1, xt[idx, 1:, None]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net_.eval()

    def _logprobs(self, e: int, ids: np.ndarray, own: bool) -> np.ndarray:
        slot = min(e + 1, self.max_entities) if own else 0
        ids = self._clip(ids)
        x = torch.as_tensor(np.r_[0, ids][None, :-1])
        with torch.no_grad():
            logp = self.net_(x, torch.as_tensor([slot]))[0]
        return logp.gather(-1, torch.as_tensor(ids)[:, None])[:, 0].numpy().astype("float64")

    def share(self, entity: str, action: str) -> float:
        """Share of ``action`` in ``entity``'s kept history."""
        self._require(entity)
        h = self.history_[self.entities_[entity]]
        i = self.vocab_.get(action, 0)
        return float((h == i).mean()) if h.size and i else 0.0

    def _state(self) -> dict[str, np.ndarray]:
        arrays = {f"net.{k}": v.detach().numpy() for k, v in self.net_.state_dict().items()}
        for e, h in enumerate(self.history_):
            arrays[f"history.{e}"] = h
        return arrays

    def _set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._init_state()
        self.net_.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("net.")})
        self.net_.eval()
        self.history_ = [np.asarray(arrays[f"history.{e}"]) for e in range(len(self.entities_))]
