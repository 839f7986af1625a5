"""What a site does in a round, without Flower: train from the global parameters, protect, report.

:class:`SiteTrainer` is wrapped by the Flower client (:mod:`misuse.federated.flower`) and driven
directly by ``benchmarks/federated.py``, so the deployment and the evaluation run the same code.
It returns only arrays of the model's fixed shapes, an example count and scalar metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from misuse.errors import InvalidParameterError
from misuse.federated.aggregate import clip_and_noise
from misuse.federated.models import ActionNB, FedAutoencoder

#: the model kinds a federation can train
KINDS = ("autoencoder", "actions")

Model = FedAutoencoder | ActionNB
#: what a site may report besides parameters: these scalar metrics, nothing else
METRIC_KEYS = frozenset({"train_loss", "update_norm"})


def make_model(kind: str, n_features: int = 20, hidden: int = 8, buckets: int = 4096, seed: int = 0) -> Model:
    """A fresh model of ``kind``; every site and the server build it from the same arguments."""
    if kind == "autoencoder":
        return FedAutoencoder(n_features, hidden=hidden, seed=seed)
    if kind == "actions":
        return ActionNB(buckets=buckets)
    raise InvalidParameterError(f"unknown federated model kind {kind!r}; choose one of {', '.join(KINDS)}")


@dataclass
class SiteTrainer:
    """A site's model and its local data.

    Parameters
    ----------
    model:
        A :class:`FedAutoencoder` (``train``/``valid`` are matrices) or an :class:`ActionNB`
        (``train``/``valid`` map users to their actions).
    train, valid:
        The local training and validation data; they never leave this object.
    poison_scale:
        For robustness evaluations only: the site sends ``global + poison_scale * (update)``
        (e.g. -10: a boosted sign-flip attack). None for an honest site.
    noise_seed:
        Seed of the privacy noise, for reproducible evaluations only. It is the site's own and is
        never taken from the server's configuration (a server that knew the seed could subtract the
        noise). None, the deployment default, draws fresh entropy every round.
    """

    model: Model
    train: Any
    valid: Any
    poison_scale: float | None = None
    noise_seed: int | None = None

    def fit(
        self, arrays: Sequence[np.ndarray], config: Mapping[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        """One round of local training from the global ``arrays``; returns (arrays, examples, metrics).

        ``config`` may hold ``epochs``, ``lr``, ``seed``, ``round``, and the privacy parameters
        ``clip_norm`` (> 0 enables clipping) and ``noise_multiplier``.
        """
        old = [np.asarray(a, dtype="float64") for a in arrays]
        self.model.set_arrays(old)
        if isinstance(self.model, FedAutoencoder):
            seed = int(config.get("seed", 0)) * 1000 + int(config.get("round", 0))
            n = self.model.fit_local(
                self.train, epochs=int(config.get("epochs", 2)), lr=float(config.get("lr", 1e-2)), seed=seed
            )
            loss = self.model.evaluate_local(self.train)
        else:
            n = self.model.fit_local(self.train)
            loss = self.model.evaluate_local(self.train)
        new = self.model.get_arrays()
        clip = float(config.get("clip_norm", 0.0) or 0.0)
        noise = float(config.get("noise_multiplier", 0.0) or 0.0)
        norm = float(np.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(new, old, strict=True))))
        if clip > 0:
            rnd = int(config.get("round", 0))
            noise_seed = None if self.noise_seed is None else self.noise_seed * 100_003 + rnd
            new = clip_and_noise(new, old, clip, noise, seed=noise_seed)
        if self.poison_scale is not None:
            new = [b + self.poison_scale * (a - b) for a, b in zip(new, old, strict=True)]
        return new, int(n), {"train_loss": float(loss), "update_norm": norm}

    def evaluate(self, arrays: Sequence[np.ndarray]) -> tuple[float, int]:
        """Loss of the global ``arrays`` on the local validation data, and its size."""
        self.model.set_arrays([np.asarray(a, dtype="float64") for a in arrays])
        size = len(self.valid) if isinstance(self.model, FedAutoencoder) else sum(len(v) for v in self.valid.values())
        return float(self.model.evaluate_local(self.valid)), int(size)
