"""The learned response policy: a contextual bandit (the fixed baselines are in :mod:`.baselines`).

Why a contextual bandit and not PPO/DQN: :class:`~misuse.response.env.ResponseEnv` charges each
decision the whole cost it causes (a quarantine's effect over its hold is part of its reward),
so the best action depends on the observation alone and a one-step learner is enough. A
linear model per action (ridge regression of the reward on a fixed quadratic expansion of the
standardised observation) trains in seconds on a few replays, updates exactly from one
analyst verdict at a time (two sufficient statistics per action), explains every decision as
per-feature contributions, and saves as JSON + npz. Deep RL would need far more episodes than
there are labelled streams, and torch at run time.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from misuse.errors import InvalidParameterError, NotFittedError, SchemaError
from misuse.response.env import (
    ACTIONS,
    ALERT,
    IGNORE,
    OBS_FEATURES,
    QUARANTINE,
    RATE_LIMIT,
    Costs,
    Outcome,
    ResponseEnv,
    run_episode,
)


@dataclass
class Contribution:
    """How much one observed feature pushed the chosen action over the runner-up."""

    feature: str
    actual: float
    typical: float
    weight: float


class BanditPolicy:
    """A linear contextual bandit over :data:`~misuse.response.env.ACTIONS`.

    Parameters
    ----------
    ridge:
        L2 penalty of each action's reward regression. The default 100 was chosen by leaving one
        training stream out at a time (ridge 1, 10, 30, 100, 300, 1000); with a few hundred
        decisions per pass a weak penalty overfits the streams it saw.
    epsilon:
        Exploration rate at the start of training (decays to a tenth over the epochs).
    seed:
        Seed of the exploration.

    Examples
    --------
    >>> from misuse.response.replay import synthetic_replay
    >>> env = ResponseEnv([synthetic_replay("toy", seed=s) for s in range(2)])
    >>> pol = BanditPolicy(seed=0).fit(env, epochs=2)
    >>> pol.act(np.zeros(len(OBS_FEATURES))) in range(len(ACTIONS))
    True
    """

    name = "bandit"

    def __init__(self, ridge: float = 100.0, epsilon: float = 0.3, seed: int = 0) -> None:
        if ridge <= 0:
            raise InvalidParameterError(f"The 'ridge' parameter of BanditPolicy must be > 0. Got {ridge!r} instead.")
        if not 0.0 <= epsilon <= 1.0:
            raise InvalidParameterError(
                f"The 'epsilon' parameter of BanditPolicy must be in [0, 1]. Got {epsilon!r} instead."
            )
        self.ridge = ridge
        self.epsilon = epsilon
        self.seed = seed

    # ----- model ---------------------------------------------------------------------------
    def _phi(self, obs: np.ndarray) -> np.ndarray:
        z = np.clip((np.asarray(obs, float) - self.mean_) / self.scale_, -5.0, 5.0)
        z = np.nan_to_num(z)
        return np.concatenate([[1.0], z, z * z / 5.0])

    def _init(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean_ = mean
        self.scale_ = np.where(scale > 1e-9, scale, 1.0)
        d = 1 + 2 * len(OBS_FEATURES)
        self.A_ = np.stack([np.eye(d) * self.ridge for _ in ACTIONS])
        self.b_ = np.zeros((len(ACTIONS), d))
        self.n_ = np.zeros(len(ACTIONS), dtype=np.int64)
        self.weights_ = np.zeros((len(ACTIONS), d))
        self.history_: list[dict[str, Any]] = []

    def _refresh(self) -> None:
        self.weights_ = np.stack([np.linalg.solve(self.A_[a], self.b_[a]) for a in range(len(ACTIONS))])

    def _check(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("BanditPolicy: call fit (or load a trained policy) first")

    def values(self, obs: np.ndarray) -> np.ndarray:
        """Expected reward (minus cost) of each action for one observation."""
        self._check()
        return np.asarray(self.weights_ @ self._phi(obs))

    def act(self, obs: np.ndarray) -> int:
        """The action of highest expected reward."""
        return int(np.argmax(self.values(obs)))

    def update(self, obs: np.ndarray, action: int, reward: float, refresh: bool = True) -> None:
        """Learn from one (observation, action, reward): a rank-one update of that action's model."""
        self._check()
        if not 0 <= action < len(ACTIONS):
            raise InvalidParameterError(f"BanditPolicy.update: action must be in [0, {len(ACTIONS)}), got {action!r}")
        x = self._phi(obs)
        self.A_[action] += np.outer(x, x)
        self.b_[action] += reward * x
        self.n_[action] += 1
        if refresh:
            self.weights_[action] = np.linalg.solve(self.A_[action], self.b_[action])

    # ----- training ------------------------------------------------------------------------
    def fit(
        self,
        env: ResponseEnv,
        epochs: int = 8,
        evaluate: Callable[[BanditPolicy, int], dict[str, Any]] | None = None,
    ) -> BanditPolicy:
        """Train offline on the environment's replays, epsilon-greedy, ``epochs`` passes.

        ``evaluate(policy, epoch)`` is called after every epoch; what it returns is kept in
        ``history_`` (the learning curve).
        """
        if epochs < 1:
            raise InvalidParameterError(f"The 'epochs' parameter of BanditPolicy.fit must be >= 1. Got {epochs!r}.")
        obs_all = []
        for k in range(len(env.replays)):
            env.reset(options={"replay": k})
            obs_all += [env.observation(int(i)) for i in env._cand[:500]]
        sample = np.array(obs_all) if obs_all else np.zeros((1, len(OBS_FEATURES)))
        self._init(*_nan_mean_std(sample))
        self.setting_ = {"decisions": "alerts", "hold": env.hold, "costs": asdict(env.costs)}
        rng = np.random.default_rng(self.seed)
        for epoch in range(epochs):
            eps = self.epsilon * (0.1 ** (epoch / max(epochs - 1, 1)))
            for k in rng.permutation(len(env.replays)):
                obs, _ = env.reset(options={"replay": int(k)})
                done = env.current_row is None
                while not done:
                    a = int(rng.integers(len(ACTIONS))) if rng.random() < eps else self.act(obs)
                    nxt, reward, done, _t, _i = env.step(a)
                    self.update(obs, a, reward)
                    obs = nxt
            if evaluate is not None:
                self.history_.append({"epoch": epoch + 1, **evaluate(self, epoch + 1)})
        return self

    def explain(self, obs: np.ndarray, top: int = 3) -> tuple[int, list[Contribution]]:
        """The chosen action and the features that favoured it over the runner-up action."""
        v = self.values(obs)
        order = np.argsort(-v)
        best, second = int(order[0]), int(order[1])
        z = np.nan_to_num(np.clip((np.asarray(obs, float) - self.mean_) / self.scale_, -5.0, 5.0))
        d = len(OBS_FEATURES)
        diff = self.weights_[best] - self.weights_[second]
        per = diff[1 : 1 + d] * z + diff[1 + d :] * z * z / 5.0
        idx = np.argsort(-per)[:top]
        return best, [
            Contribution(
                OBS_FEATURES[i],
                float(obs[i]) if np.isfinite(obs[i]) else float(self.mean_[i]),
                float(self.mean_[i]),
                round(float(per[i]), 4),
            )
            for i in idx
            if per[i] > 0
        ]

    # ----- persistence ---------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Save as ``policy.json`` + ``policy.npz`` (no pickle)."""
        self._check()
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "policy.npz", A=self.A_, b=self.b_, n=self.n_, mean=self.mean_, scale=self.scale_)
        meta = {
            "kind": "bandit",
            "ridge": self.ridge,
            "epsilon": self.epsilon,
            "seed": self.seed,
            "actions": list(ACTIONS),
            "features": list(OBS_FEATURES),
            "history": self.history_,
            "setting": self.setting_,
            "info": getattr(self, "info_", {}),
        }
        (folder / "policy.json").write_text(json.dumps(meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> BanditPolicy:
        """Load what :meth:`save` wrote.

        Raises
        ------
        SchemaError
            When ``policy.json`` or ``policy.npz`` is missing, unreadable or not what
            :meth:`save` writes; the message names the file and the problem. Arrays are never
            unpickled.
        """
        meta_path = folder / "policy.json"
        if not meta_path.exists():
            raise SchemaError(f"{folder}: not a saved policy (policy.json missing)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SchemaError(f"{meta_path}: not a readable JSON policy description ({exc})") from None
        if not isinstance(meta, dict):
            raise SchemaError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
        if meta.get("features") != list(OBS_FEATURES) or meta.get("actions") != list(ACTIONS):
            raise SchemaError(f"{folder}: policy was saved with other features or actions than this misuse uses")
        try:
            pol = cls(ridge=float(meta["ridge"]), epsilon=float(meta["epsilon"]), seed=int(meta["seed"]))
            pol.history_ = list(meta.get("history", []))
            pol.setting_ = dict(meta.get("setting", {}))
            pol.info_ = dict(meta.get("info", {}))
            Costs(**pol.setting_.get("costs", {}))
            int(pol.setting_.get("hold", 10))
        except KeyError as exc:
            raise SchemaError(f"{meta_path}: field {exc} missing") from None
        except (TypeError, ValueError) as exc:  # InvalidParameterError is a ValueError
            raise SchemaError(f"{meta_path}: bad value ({exc})") from None
        arrays = _read_arrays(folder / "policy.npz")
        pol.A_, pol.b_, pol.n_ = arrays["A"], arrays["b"], arrays["n"].astype(np.int64)
        pol.mean_, pol.scale_ = arrays["mean"], arrays["scale"]
        try:
            pol._refresh()
        except np.linalg.LinAlgError:
            raise SchemaError(f"{folder / 'policy.npz'}: array 'A' is singular (a saved policy's never is)") from None
        return pol

    info_: dict[str, Any]
    #: The environment the policy was trained in: ``decisions`` (``alerts``), ``hold`` and the ``costs``.
    setting_: dict[str, Any]

    @property
    def costs(self) -> Costs:
        """The stated costs the policy was trained with."""
        self._check()
        return Costs(**self.setting_.get("costs", {}))

    @property
    def hold(self) -> int:
        """Windows a containing action lasted in training."""
        self._check()
        return int(self.setting_.get("hold", 10))


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved policy, checked for presence, kind, shape and finiteness (never unpickled)."""
    d, k = 1 + 2 * len(OBS_FEATURES), len(ACTIONS)
    shapes = {"A": (k, d, d), "b": (k, d), "n": (k,), "mean": (len(OBS_FEATURES),), "scale": (len(OBS_FEATURES),)}
    if not path.exists():
        raise SchemaError(f"{path}: missing (a saved policy is policy.json + policy.npz)")
    if not zipfile.is_zipfile(path):
        raise SchemaError(f"{path}: not an npz archive")
    out = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for name, shape in shapes.items():
                if name not in z.files:
                    raise SchemaError(f"{path}: array {name!r} missing")
                try:
                    a = np.asarray(z[name])
                except ValueError:  # object (pickled) data, or a damaged array header
                    raise SchemaError(f"{path}: array {name!r} is not plain numeric data") from None
                if not np.issubdtype(a.dtype, np.number) or a.shape != shape:
                    raise SchemaError(f"{path}: array {name!r} is {a.dtype} {a.shape}, expected numbers {shape}")
                if not np.isfinite(a).all():
                    raise SchemaError(f"{path}: array {name!r} holds non-finite values")
                out[name] = a.astype(float) if name != "n" else a
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SchemaError(f"{path}: damaged npz archive ({exc})") from None
    if (out["scale"] <= 0).any():
        raise SchemaError(f"{path}: array 'scale' holds values <= 0")
    return out


def _nan_mean_std(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation over the finite values (0 and 0 for a column with none)."""
    finite = np.isfinite(sample)
    n = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, sample, 0.0).sum(axis=0) / n
    var = (np.where(finite, sample - mean, 0.0) ** 2).sum(axis=0) / n
    return mean, np.sqrt(var)


def evaluate_policy(
    act: Callable[[np.ndarray], int], replays: Sequence[Any], costs: Costs | None = None, **env_kw: Any
) -> list[Outcome]:
    """Run ``act`` over each replay (greedy, no learning) and return the outcomes."""
    env = ResponseEnv(replays, costs, **env_kw)
    return [run_episode(env, act, k) for k in range(len(replays))]


def verdict_reward(action: int, true_positive: bool, costs: Costs | None = None, hold: int = 1) -> float:
    """The reward an analyst's verdict implies for one decided window, as the environment charges it.

    A rate limit or quarantine is charged over ``hold`` windows of the entity, all taken to be
    what the verdict says (the environment charges the windows the hold really covers; the store
    only knows the verdict on the decided one). Ignore and raise-threshold cost a missed attack
    on a true positive; alert costs the analyst's time plus a detected attack or a false alarm.
    """
    if hold < 1:
        raise InvalidParameterError(f"The 'hold' parameter of verdict_reward must be >= 1. Got {hold!r} instead.")
    c = costs or Costs()
    contain = action in (RATE_LIMIT, QUARANTINE)
    review = c.analyst if action in (ALERT, RATE_LIMIT, QUARANTINE) else 0.0
    window_action = action if action in (ALERT, RATE_LIMIT, QUARANTINE) else IGNORE
    return -(review + (hold if contain else 1) * c.window_cost(window_action, true_positive))
