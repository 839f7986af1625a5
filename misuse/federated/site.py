"""What a site does in a round, without Flower: train from the global parameters, protect, report.

:class:`SiteTrainer` is wrapped by the Flower client (:mod:`misuse.federated.flower`) and driven
directly by ``benchmarks/federated.py``, so the deployment and the evaluation run the same code.
It returns only arrays of the model's fixed shapes, an example count and scalar metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from misuse.errors import InvalidParameterError
from misuse.federated.aggregate import clip_and_noise, gaussian_epsilon
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
    clip_norm, noise_multiplier:
        The site's own privacy floor: the update is always clipped to at most ``clip_norm`` (None:
        no floor) and noised with at least ``noise_multiplier``, whatever the server's
        configuration asks (:meth:`protection`), so a server cannot switch the protection off.
    """

    model: Model
    train: Any
    valid: Any
    poison_scale: float | None = None
    noise_seed: int | None = None
    clip_norm: float | None = None
    noise_multiplier: float = 0.0
    #: (round, clip norm, noise multiplier) of every update this site sent
    sent_: list[tuple[int, float, float]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.clip_norm is not None and not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise InvalidParameterError(
                f"SiteTrainer clip_norm must be a finite number > 0 or None; got {self.clip_norm!r}"
            )
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise InvalidParameterError(
                f"SiteTrainer noise_multiplier must be a finite number >= 0; got {self.noise_multiplier!r}"
            )
        if self.noise_multiplier > 0 and self.clip_norm is None:
            raise InvalidParameterError(
                f"SiteTrainer noise_multiplier {self.noise_multiplier} needs a clip_norm (the update's sensitivity)"
            )

    def protection(self, config: Mapping[str, Any]) -> tuple[float, float]:
        """The (clip norm, noise multiplier) applied this round: the stronger of the site's and the server's.

        The smaller clip norm (0 = no clipping) and the larger noise multiplier win. Noise asked by
        the server without a clip norm, and without one at the site, is refused.

        Examples
        --------
        >>> t = SiteTrainer(ActionNB(buckets=8), {}, {}, clip_norm=1.0, noise_multiplier=2.0)
        >>> t.protection({"clip_norm": 0.0, "noise_multiplier": 0.0})  # a server asking for none
        (1.0, 2.0)
        >>> t.protection({"clip_norm": 0.5, "noise_multiplier": 3.0})
        (0.5, 3.0)
        """
        server_clip = float(config.get("clip_norm", 0.0) or 0.0)
        server_noise = float(config.get("noise_multiplier", 0.0) or 0.0)
        for name, value in (("clip_norm", server_clip), ("noise_multiplier", server_noise)):
            if not (math.isfinite(value) and value >= 0):  # NaN would compare as "no noise"
                raise InvalidParameterError(f"the server sent {name} {value!r}; expected a finite number >= 0")
        clips = [c for c in (server_clip, self.clip_norm or 0.0) if c > 0]
        clip = min(clips) if clips else 0.0
        noise = max(server_noise, self.noise_multiplier, 0.0)
        if noise > 0 and clip <= 0:
            raise InvalidParameterError(
                f"the server asked for noise_multiplier {server_noise} without a clip_norm, "
                "and this site has no --clip-norm of its own: refusing to send an update of unknown sensitivity"
            )
        return clip, noise

    def fit(
        self, arrays: Sequence[np.ndarray], config: Mapping[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        """One round of local training from the global ``arrays``; returns (arrays, examples, metrics).

        ``config`` may hold ``epochs``, ``lr``, ``seed``, ``round``, and the privacy parameters
        ``clip_norm`` (> 0 enables clipping) and ``noise_multiplier``, which the site's own floor
        can only strengthen (:meth:`protection`).
        """
        clip, noise = self.protection(config)
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
        norm = float(np.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(new, old, strict=True))))
        if clip > 0:
            rnd = int(config.get("round", 0))
            noise_seed = None if self.noise_seed is None else self.noise_seed * 100_003 + rnd
            new = clip_and_noise(new, old, clip, noise, seed=noise_seed)
        if self.poison_scale is not None:
            new = [b + self.poison_scale * (a - b) for a, b in zip(new, old, strict=True)]
        self.sent_.append((int(config.get("round", 0)), clip, noise))
        return new, int(n), {"train_loss": float(loss), "update_norm": norm}

    def epsilon(self, delta: float = 1e-5) -> float | None:
        """The epsilon of everything this site has sent so far (None before the first round).

        Computed from the protection the site applied itself, not from the server's statement:
        rounds with different noise multipliers ``z_r`` compose like ``rounds`` rounds at
        ``z = sqrt(rounds / sum(1 / z_r^2))`` (Rényi DP adds up). Infinite if any round went
        out without clipping or noise.
        """
        if not self.sent_:
            return None
        if any(clip <= 0 or noise <= 0 for _, clip, noise in self.sent_):
            return math.inf
        rounds = len(self.sent_)
        z = math.sqrt(rounds / sum(1.0 / noise**2 for _, _, noise in self.sent_))
        return gaussian_epsilon(z, rounds, delta)

    def evaluate(self, arrays: Sequence[np.ndarray]) -> tuple[float, int]:
        """Loss of the global ``arrays`` on the local validation data, and its size."""
        self.model.set_arrays([np.asarray(a, dtype="float64") for a in arrays])
        size = len(self.valid) if isinstance(self.model, FedAutoencoder) else sum(len(v) for v in self.valid.values())
        return float(self.model.evaluate_local(self.valid)), int(size)
