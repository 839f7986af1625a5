"""Models whose parameters average: a numpy autoencoder and a hashed naive-Bayes action model.

Both expose the same small federated interface:

- ``get_arrays() -> list[np.ndarray]`` and ``set_arrays(arrays)``: the global parameters, in a fixed order
  and shape that depends only on the constructor arguments (so every site and the server agree);
- ``fit_local(data, ...) -> int``: train on the site's own data, starting from the current parameters,
  and return the number of examples (the FedAvg weight);
- ``evaluate_local(data) -> float``: a loss on the site's own data (lower is better).

Why not :mod:`misuse.detectors.autoencoder`? It trains with torch (not in the federated environment)
and standardises with each site's own median/IQR, which differ between sites, so its weights would
not mean the same thing at two sites. :class:`FedAutoencoder` standardises with *moments* that are
themselves parameters: a FedAvg of per-site first and second moments weighted by the number of rows is
exactly the pooled moments, so after one round every site standardises identically.

:class:`ActionNB` keeps the profile of each user at its site; what it shares is the site's action
*frequencies* over a hashed vocabulary (fixed size, so the arrays line up without agreeing a vocabulary).
A FedAvg of frequencies weighted by action counts is exactly the pooled frequency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from misuse.errors import InvalidParameterError, SchemaError


def _check(ok: bool, what: str, value: object) -> None:
    if not ok:
        raise InvalidParameterError(f"{what}; got {value!r}")


class FedAutoencoder:
    """A one-hidden-layer autoencoder in numpy (tanh code, linear output), trained with Adam.

    Inputs go through ``sign(x) log(1 + |x|)`` and are standardised with the (federated) moments.

    Score = mean squared reconstruction error of the standardised row (>= 0, higher = more anomalous).

    Parameters
    ----------
    n_features:
        Width of the input rows, >= 1.
    hidden:
        Code size, >= 1.
    seed:
        Seed of the initial weights (every site and the server build the same start).
    keep_optimizer:
        Keep Adam's state at the site from one round to the next (it is never sent); False
        restarts the optimiser every round.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(500, 6))
    >>> ae = FedAutoencoder(6, hidden=3)
    >>> n = ae.fit_local(X, epochs=5)
    >>> ae.score(X).shape
    (500,)
    """

    #: clip of standardised values, so that one absurd row cannot dominate a batch
    CLIP = 10.0
    #: smallest variance used to standardise (standard deviation 0.1 in sign-log units)
    VAR_FLOOR = 1e-2

    def __init__(self, n_features: int, hidden: int = 8, seed: int = 0, keep_optimizer: bool = True) -> None:
        _check(
            isinstance(n_features, int) and n_features >= 1, "FedAutoencoder n_features must be an int >= 1", n_features
        )
        _check(isinstance(hidden, int) and hidden >= 1, "FedAutoencoder hidden must be an int >= 1", hidden)
        self.n_features = n_features
        self.hidden = hidden
        self.seed = seed
        self.keep_optimizer = keep_optimizer
        # Adam's moment estimates and step count: local state, kept between rounds, never sent
        self._adam: tuple[list[np.ndarray], list[np.ndarray], int] | None = None
        rng = np.random.default_rng(seed)
        d, h = n_features, hidden
        self.mean = np.zeros(d)
        self.sq = np.ones(d)  # second moment E[x^2]; var = sq - mean^2
        self.W1 = rng.normal(scale=1.0 / np.sqrt(d), size=(d, h))
        self.b1 = np.zeros(h)
        self.W2 = rng.normal(scale=1.0 / np.sqrt(h), size=(h, d))
        self.b2 = np.zeros(d)

    # ----- parameters -------------------------------------------------------------------------
    NAMES = ("mean", "sq", "W1", "b1", "W2", "b2")

    def get_arrays(self) -> list[np.ndarray]:
        """The parameters in the fixed order :attr:`NAMES`."""
        return [np.asarray(getattr(self, n), dtype="float64").copy() for n in self.NAMES]

    def set_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Replace the parameters; shapes must match the constructor's."""
        if len(arrays) != len(self.NAMES):
            raise SchemaError(f"FedAutoencoder.set_arrays: expected {len(self.NAMES)} arrays, got {len(arrays)}")
        for name, arr in zip(self.NAMES, arrays, strict=True):
            old = getattr(self, name)
            a = np.asarray(arr, dtype="float64")
            if a.shape != old.shape:
                raise SchemaError(f"FedAutoencoder.set_arrays: {name} has shape {a.shape}, expected {old.shape}")
            setattr(self, name, a.copy())

    # ----- data -------------------------------------------------------------------------------
    def _checked(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype="float64")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise SchemaError(f"FedAutoencoder expects rows of {self.n_features} features, got shape {X.shape}")
        X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
        return np.sign(X) * np.log1p(np.abs(X))  # bounded moments: a clipped update keeps its meaning

    def _z(self, X: np.ndarray) -> np.ndarray:
        # variance floor (inputs are on a log scale): moments mixed from different sites by a
        # robust rule (median of mean, median of E[x^2]) can imply a variance near or below 0
        sd = np.sqrt(np.maximum(self.sq - self.mean**2, self.VAR_FLOOR))
        return np.asarray(np.clip((X - self.mean) / sd, -self.CLIP, self.CLIP))

    def _forward(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        H = np.tanh(Z @ self.W1 + self.b1)
        return H, H @ self.W2 + self.b2

    def score(self, X: np.ndarray) -> np.ndarray:
        """Reconstruction error per row (higher = more anomalous)."""
        Z = self._z(self._checked(X))
        _, R = self._forward(Z)
        return np.asarray(((R - Z) ** 2).mean(axis=1))

    def evaluate_local(self, X: np.ndarray) -> float:
        """Mean reconstruction error on ``X`` (the federated evaluation loss)."""
        return float(self.score(X).mean()) if len(X) else 0.0

    def fit_local(self, X: np.ndarray, epochs: int = 2, lr: float = 1e-2, batch_size: int = 64, seed: int = 0) -> int:
        """Set the moments to the site's own and train the weights for ``epochs`` passes.

        The weights are trained on rows standardised with the moments received from the server
        (the pooled ones after the first round); on the very first round (moments still at their
        initial values) the site's own moments are used.

        Returns
        -------
        int
            The number of rows, the weight of this site in FedAvg.
        """
        _check(isinstance(epochs, int) and epochs >= 0, "fit_local epochs must be an int >= 0", epochs)
        _check(lr > 0, "fit_local lr must be > 0", lr)
        X = self._checked(X)
        if len(X) == 0:
            raise SchemaError("FedAutoencoder.fit_local got no rows")
        local_mean, local_sq = X.mean(axis=0), (X**2).mean(axis=0)
        if np.all(self.mean == 0) and np.all(self.sq == 1):
            self.mean, self.sq = local_mean, local_sq
        Z = self._z(X)
        rng = np.random.default_rng(seed)
        params = [self.W1, self.b1, self.W2, self.b2]
        if self._adam is None or not self.keep_optimizer:
            self._adam = ([np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], 0)
        m, v, step = self._adam
        for _ in range(epochs):
            order = rng.permutation(len(Z))
            for start in range(0, len(Z), batch_size):
                B = Z[order[start : start + batch_size]]
                H, R = self._forward(B)
                dR = 2.0 * (R - B) / B.size
                dW2 = H.T @ dR
                db2 = dR.sum(axis=0)
                dH = (dR @ self.W2.T) * (1.0 - H**2)
                dW1 = B.T @ dH
                db1 = dH.sum(axis=0)
                step += 1
                for p, g, mi, vi in zip(params, (dW1, db1, dW2, db2), m, v, strict=True):
                    mi *= 0.9
                    mi += 0.1 * g
                    vi *= 0.999
                    vi += 0.001 * g * g
                    p -= lr * (mi / (1 - 0.9**step)) / (np.sqrt(vi / (1 - 0.999**step)) + 1e-8)
        self._adam = (m, v, step)
        self.mean, self.sq = local_mean, local_sq
        return len(X)


def hash_action(action: str, buckets: int) -> int:
    """Stable bucket of an action name (blake2b, so the same at every site and in every process)."""
    digest = hashlib.blake2b(action.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % buckets


class ActionNB:
    """Naive-Bayes action model: each user's profile vs the population, over hashed actions.

    A block's score is the mean over its actions of ``log P(a | population) - log P(a | user)``
    (Maxion & Townsend's contrast; higher = less like the user). User profiles never leave the site;
    the federated parameter is the population's action frequency vector.

    Parameters
    ----------
    buckets:
        Size of the hashed vocabulary, >= 2.
    alpha:
        Additive smoothing, > 0.

    Examples
    --------
    >>> nb = ActionNB(buckets=64)
    >>> n = nb.fit_local({"alice": ["ls", "cd", "vi"] * 20, "bob": ["gcc", "ld", "make"] * 20})
    >>> bool(nb.score_block("alice", ["gcc", "ld"]) > nb.score_block("alice", ["ls", "vi"]))
    True
    """

    def __init__(self, buckets: int = 4096, alpha: float = 0.01) -> None:
        _check(isinstance(buckets, int) and buckets >= 2, "ActionNB buckets must be an int >= 2", buckets)
        _check(alpha > 0, "ActionNB alpha must be > 0", alpha)
        self.buckets = buckets
        self.alpha = alpha
        self.population = np.full(buckets, 1.0 / buckets)
        self.users: dict[str, np.ndarray] = {}

    NAMES = ("population",)
    #: floor of a population frequency (an action no site has seen)
    POP_EPS = 1e-6

    def get_arrays(self) -> list[np.ndarray]:
        """The population frequency vector (the only thing shared)."""
        return [self.population.copy()]

    def set_arrays(self, arrays: Sequence[np.ndarray]) -> None:
        """Replace the population frequencies (renormalised; negative entries from noise are cut)."""
        if len(arrays) != 1 or np.shape(arrays[0]) != (self.buckets,):
            shapes = [np.shape(a) for a in arrays]
            raise SchemaError(f"ActionNB.set_arrays: expected one array of shape ({self.buckets},), got {shapes}")
        p = np.maximum(np.asarray(arrays[0], dtype="float64"), 0.0)
        self.population = p / p.sum() if p.sum() > 0 else np.full(self.buckets, 1.0 / self.buckets)

    def _ids(self, actions: Sequence[str]) -> np.ndarray:
        return np.fromiter((hash_action(str(a), self.buckets) for a in actions), dtype="int64", count=len(actions))

    def fit_local(self, users: Mapping[str, Sequence[str]]) -> int:
        """Learn each user's counts and set the population to this site's frequencies.

        Returns
        -------
        int
            The number of actions, the weight of this site in FedAvg.
        """
        total = np.zeros(self.buckets)
        for user, actions in users.items():
            counts = np.bincount(self._ids(actions), minlength=self.buckets).astype("float64")
            self.users[str(user)] = counts
            total += counts
        n = int(total.sum())
        if n == 0:
            raise SchemaError("ActionNB.fit_local got no actions")
        self.population = total / n
        return n

    def _logp_user(self, user: str) -> np.ndarray:
        if user not in self.users:
            raise SchemaError(f"ActionNB: unknown user {user!r} at this site; known: {sorted(self.users)[:5]}...")
        c = self.users[user]
        return np.asarray(np.log((c + self.alpha) / (c.sum() + self.alpha * self.buckets)))

    def _logp_pop(self) -> np.ndarray:
        eps = self.POP_EPS
        return np.asarray(np.log((self.population + eps) / (1.0 + eps * self.buckets)))

    def score_blocks(self, user: str, blocks: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores of blocks of actions by ``user`` (higher = less like the user, more like the crowd)."""
        w = self._logp_pop() - self._logp_user(user)
        return np.array([float(w[self._ids(b)].mean()) if len(b) else 0.0 for b in blocks])

    def score_block(self, user: str, actions: Sequence[str]) -> float:
        """Score of one block of actions by ``user``."""
        return float(self.score_blocks(user, [actions])[0])

    def evaluate_local(self, users: Mapping[str, Sequence[str]]) -> float:
        """Cross-entropy (nats per action) of the population model on the site's actions."""
        lp = self._logp_pop()
        ids = np.concatenate([self._ids(a) for a in users.values()]) if users else np.zeros(0, dtype="int64")
        return float(-lp[ids].mean()) if ids.size else 0.0
