"""The SEA masquerade protocol (Schonlau et al. 2001), thresholds from training data only.

Protocol: each of the 50 users' first 5,000 commands train that user's profile; the next 10,000 form
100 test blocks of 100 commands, scored in order; truth is ``masquerade_summary.txt`` (231 masquerade
blocks, 4,769 clean). Nothing here reads the truth before the scores and decisions are final.

How thresholds are set (no test label is used):

1. The 50 training blocks of every user are split into ``folds`` contiguous folds. For fold f a model is
   trained on all users' training data *without* their fold-f blocks and scores each user's fold-f
   blocks: every user gets 50 held-out "clean" scores.
2. A user's scores are normalised by its held-out scores, ``(s - centre) / scale``, so one number
   means the same distance from normal for every user. Which centre/scale (:data:`NORMALISERS`) is
   chosen by :func:`proxy_selection`, a training-only "outsider" proxy.
3. The alarm threshold is the pooled ``1 - target_fa`` quantile of the 2,500 normalised held-out scores
   (default target 1% false alarms).
4. Test blocks are scored in order; a block that is *not* flagged is folded into the user's profile
   (updating, as Maxion & Townsend 2002 do).

The ensemble averages its members' normalised scores; its threshold comes from the averaged held-out
scores the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from misuse.detectors.sequence import SequenceDetector, make_sequence_detector
from misuse.errors import InvalidParameterError, SchemaError
from misuse.eval.metrics import tpr_at_fpr
from misuse.ingest.sea import SEA_BLOCK, SEA_SHAPE, SEA_TRAIN, SeaReader, load_sea_truth

#: published operating points on the same data (hits, false alarms), for the printout
PUBLISHED: list[dict[str, Any]] = [
    {"method": "Naive Bayes (updating), Maxion & Townsend 2002", "hits": 0.615, "false_alarms": 0.013},
    {"method": "Uniqueness, Schonlau et al. 2001", "hits": 0.394, "false_alarms": 0.014},
    {"method": "Schonlau et al. 2001 methods (range)", "hits": "34.2%-69.3%", "false_alarms": "1.4%-6.7%"},
]
DEFAULT_MODELS: tuple[str, ...] = ("nb_per_user", "nb_rehearsed", "naive_bayes", "markov", "ensemble")
ENSEMBLE_MEMBERS: tuple[str, ...] = ("naive_bayes", "markov")
ENSEMBLE_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 0.75)  # naive Bayes' weight; Markov gets the rest
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "naive_bayes": {"alpha": 0.01},
    "markov": {"order": 2, "lam": 0.6, "alpha": 0.01},
    "gru": {"epochs": 2, "hidden": 32, "embed": 16},
}
#: candidates the outsider proxy chooses from (training data only)
GRID: dict[str, list[dict[str, Any]]] = {
    "naive_bayes": [{"alpha": a} for a in (0.001, 0.01, 0.1, 1.0)],
    "markov": [{"order": o, "lam": lam, "alpha": 0.01} for o in (2, 3) for lam in (0.3, 0.6, 0.9)],
}


@dataclass
class SeaData:
    """The 50 users' command sequences (as arrays of names) and the (100, 50) truth matrix."""

    users: list[str]
    commands: list[np.ndarray]
    truth: np.ndarray

    def train(self, u: int) -> np.ndarray:
        """The user's 50 training blocks, shape (50, 100)."""
        return self.commands[u][:SEA_TRAIN].reshape(-1, SEA_BLOCK)

    def test(self, u: int) -> np.ndarray:
        """The user's 100 test blocks, shape (100, 100)."""
        return self.commands[u][SEA_TRAIN:].reshape(-1, SEA_BLOCK)


def load_sea(root: str | Path, n_users: int | None = None) -> SeaData:
    """Read ``users/User1..User50`` and ``masquerade_summary.txt`` from a SEA folder."""
    root = Path(root)
    truth = load_sea_truth(root / "masquerade_summary.txt")
    n = SEA_SHAPE[1] if n_users is None else n_users
    if not 1 <= n <= SEA_SHAPE[1]:
        raise InvalidParameterError(f"n_users must be in [1, {SEA_SHAPE[1]}]. Got {n} instead.")
    names, commands = [], []
    for i in range(1, n + 1):
        path = root / "users" / f"User{i}"
        frame = SeaReader().read(path)
        if len(frame) != SEA_TRAIN + SEA_SHAPE[0] * SEA_BLOCK:
            raise SchemaError(f"{path}: expected 15000 commands, got {len(frame)}")
        names.append(f"User{i}")
        commands.append(frame["action"].to_numpy(dtype=object))
    return SeaData(names, commands, truth[:, :n])


@dataclass
class SeaResult:
    """Scores, decisions and figures of one model on the SEA test blocks."""

    model: str
    threshold: float
    scores: np.ndarray  # (100, users), normalised
    alarms: np.ndarray  # (100, users) bool
    metrics: dict[str, Any] = field(default_factory=dict)


def _fit(
    name: str, params: dict[str, Any], data: SeaData, keep: Callable[[int], list[np.ndarray]], seed: int
) -> SequenceDetector:
    det = make_sequence_detector(name, **params, seed=seed)
    for u, user in enumerate(data.users):
        for run in keep(u):
            det.learn_many(user, list(run))
    return det


def _scores(det: SequenceDetector, user: str, blocks: np.ndarray) -> np.ndarray:
    fast = getattr(det, "block_scores", None)
    if fast is not None:
        return np.asarray(fast(user, blocks))
    return det.score_blocks(user, [list(b) for b in blocks])


def heldout_scores(
    name: str, data: SeaData, folds: int = 5, seed: int = 0, params: dict[str, Any] | None = None
) -> np.ndarray:
    """Held-out scores of every user's training blocks, shape (50 blocks, users); training data only."""
    params = MODEL_PARAMS.get(name, {}) if params is None else params
    n_blocks = SEA_TRAIN // SEA_BLOCK
    edges = np.linspace(0, n_blocks, folds + 1).astype(int)
    out = np.zeros((n_blocks, len(data.users)))
    for f in range(folds):
        lo, hi = edges[f], edges[f + 1]

        def keep(u: int, lo: int = lo, hi: int = hi) -> list[np.ndarray]:
            tr = data.train(u)
            return [p for p in (tr[:lo].ravel(), tr[hi:].ravel()) if p.size]

        det = _fit(name, params, data, keep, seed)
        for u, user in enumerate(data.users):
            out[lo:hi, u] = _scores(det, user, data.train(u)[lo:hi])
    return out


NORMALISERS: tuple[str, ...] = ("none", "q90", "iqr", "std", "max")


def normaliser(heldout: np.ndarray, kind: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Per-user centre and scale of held-out scores.

    ``kind``: "none" (raw scores), "q90" (median, q90 - median), "iqr" (median, IQR), "std" (median,
    standard deviation) or "max" (median, max - median).
    """
    if kind not in NORMALISERS:
        raise InvalidParameterError(f"normaliser kind must be one of {NORMALISERS}. Got {kind!r} instead.")
    centre = np.median(heldout, axis=0)
    if kind == "none":
        return np.zeros_like(centre), np.ones_like(centre)
    if kind == "q90":
        scale = np.percentile(heldout, 90, axis=0) - centre
    elif kind == "iqr":
        scale = np.percentile(heldout, 75, axis=0) - np.percentile(heldout, 25, axis=0)
    elif kind == "std":
        scale = np.std(heldout, axis=0)
    else:
        scale = np.max(heldout, axis=0) - centre
    return centre, np.where(scale > 1e-9, scale, 1.0)


@dataclass
class Choice:
    """A model family's training-only choice: parameters, normaliser and its proxy figure."""

    name: str
    params: dict[str, Any]
    normaliser: str
    proxy_hits: float
    weights: list[float] | None = None  # ensembles: weight per member

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for the report."""
        return {
            "params": self.params,
            "normaliser": self.normaliser,
            "proxy_hits_at_1%_fa": self.proxy_hits,
            "weights": self.weights,
        }


def _proxy_runs(
    name: str, params: dict[str, Any], data: SeaData, folds: int, seed: int, per_user: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(held-out clean, outsider) score matrices for each half of the users."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(data.users))
    runs = []
    for half in (0, 1):
        inside, outside = idx[idx % 2 == half], idx[idx % 2 != half]
        sub = SeaData([data.users[i] for i in inside], [data.commands[i] for i in inside], data.truth[:, inside])
        heldout = heldout_scores(name, sub, folds, seed, params)
        det = _fit(name, params, sub, lambda u, sub=sub: [sub.train(u).ravel()], seed)  # type: ignore[misc, arg-type]
        n_train = SEA_TRAIN // SEA_BLOCK
        outsiders = np.array([data.train(v)[j] for v in outside for j in rng.choice(n_train, per_user, replace=False)])
        proxy = np.stack([_scores(det, user, outsiders) for user in sub.users], axis=1)
        runs.append((heldout, proxy))
    return runs


def _normed(runs: list[tuple[np.ndarray, np.ndarray]], kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for heldout, proxy in runs:
        c, s = normaliser(heldout, kind)
        out.append(((heldout - c) / s, (proxy - c) / s))
    return out


def _proxy_hits(normed: list[tuple[np.ndarray, np.ndarray]]) -> float:
    hits = []
    for heldout, proxy in normed:
        y = np.r_[np.zeros(heldout.size), np.ones(proxy.size)]
        hits.append(tpr_at_fpr(y, np.r_[heldout.ravel(), proxy.ravel()], 0.01))
    return float(np.mean(hits))


def select(
    data: SeaData,
    families: Sequence[str],
    folds: int = 5,
    seed: int = 0,
    per_user: int = 4,
    tick: Callable[[str], None] | None = None,
    grid: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Choice]:
    """Training-only choice of parameters and normaliser per model family: the "outsider" proxy.

    The users are split in two halves (odd/even). A model of one half scores that half's held-out
    training blocks (clean) and ``per_user`` random training blocks of every user of the other half
    (outsiders the model never saw, as SEA's masqueraders are outside the 50). A candidate's figure is
    the outsider hit rate at 1% false alarms on the held-out clean blocks, averaged over both halves;
    the best candidate of :data:`GRID` (and normaliser) wins. The ensemble's member weights are chosen
    the same way from the chosen members. No test block is touched.
    """
    choices: dict[str, Choice] = {}
    normed_best: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name in [f for f in families if f != "ensemble"]:
        best: tuple[float, dict[str, Any], str, list[tuple[np.ndarray, np.ndarray]]] | None = None
        for params in (GRID if grid is None else grid).get(name, [MODEL_PARAMS.get(name, {})]):
            if tick:
                tick(f"{name} {params}: outsider proxy")
            runs = _proxy_runs(name, params, data, folds, seed, per_user)
            for kind in NORMALISERS:
                normed = _normed(runs, kind)
                hits = _proxy_hits(normed)
                if best is None or hits > best[0]:
                    best = (hits, params, kind, normed)
        assert best is not None
        choices[name] = Choice(name, best[1], best[2], best[0])
        normed_best[name] = best[3]
    if "ensemble" in families:
        members = [m for m in ENSEMBLE_MEMBERS if m in normed_best]
        top: tuple[float, list[float]] | None = None
        for w in ENSEMBLE_WEIGHTS:
            weights = [w, 1 - w]
            combo = [
                (
                    np.sum([wi * normed_best[m][h][0] for wi, m in zip(weights, members, strict=True)], axis=0),
                    np.sum([wi * normed_best[m][h][1] for wi, m in zip(weights, members, strict=True)], axis=0),
                )
                for h in (0, 1)
            ]
            hits = _proxy_hits(combo)
            if top is None or hits > top[0]:
                top = (hits, weights)
        assert top is not None
        choices["ensemble"] = Choice("ensemble", {"members": members}, "members", top[0], top[1])
    return choices


def run_sea(
    data: SeaData,
    models: Sequence[str] = DEFAULT_MODELS,
    target_fa: float = 0.01,
    folds: int = 5,
    update: bool = True,
    seed: int = 0,
    tick: Callable[[str], None] | None = None,
    grid: dict[str, list[dict[str, Any]]] | None = None,
) -> list[SeaResult]:
    """Run the protocol for each model; returns one :class:`SeaResult` per model.

    ``grid`` replaces :data:`GRID`, the candidates the outsider proxy chooses from.
    """
    if not 0 < target_fa < 0.5:
        raise InvalidParameterError(f"target_fa must be in (0, 0.5). Got {target_fa} instead.")
    known = {*MODEL_PARAMS, "ensemble", PER_USER, REHEARSED}
    unknown = set(models) - known
    if unknown:
        raise InvalidParameterError(f"unknown SEA model(s) {sorted(unknown)}; known: {sorted(known)}")
    from misuse.eval import sea_per_user

    per_user = [
        (sea_per_user.run_per_user if m == PER_USER else sea_per_user.run_rehearsed)(data, update, tick=tick)
        for m in models
        if m in (PER_USER, REHEARSED)
    ]
    models = [m for m in models if m not in (PER_USER, REHEARSED)]
    if not models:
        return per_user
    families = list(models)
    if "ensemble" in models:
        families = list(dict.fromkeys([*ENSEMBLE_MEMBERS, *families]))
    choices = select(data, families, folds, seed, tick=tick, grid=grid)
    norm: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in [f for f in families if f != "ensemble"]:
        ch = choices[name]
        if tick:
            tick(f"{name}: held-out training scores, all users")
        ho = heldout_scores(name, data, folds, seed, ch.params)
        c, s = normaliser(ho, ch.normaliser)
        norm[name] = (c, s, (ho - c) / s)
    results = []
    for name in models:
        group = [name] if name != "ensemble" else list(ENSEMBLE_MEMBERS)
        weights = choices[name].weights if name == "ensemble" else [1.0]
        assert weights is not None
        pooled = sum(w * norm[m][2] for w, m in zip(weights, group, strict=True))
        thr = float(np.quantile(np.asarray(pooled).ravel(), 1 - target_fa))
        if tick:
            tick(f"{name}: scoring test blocks")
        dets = [_fit(m, choices[m].params, data, lambda u: [data.train(u).ravel()], seed) for m in group]
        scores = np.zeros((SEA_SHAPE[0], len(data.users)))
        alarms = np.zeros_like(scores, dtype=bool)
        for u, user in enumerate(data.users):
            for b, block in enumerate(data.test(u)):
                score = sum(
                    w * (_scores(d, user, block[None, :])[0] - norm[m][0][u]) / norm[m][1][u]
                    for w, d, m in zip(weights, dets, group, strict=True)
                )
                scores[b, u] = score
                alarms[b, u] = score > thr
                if update and not alarms[b, u]:
                    for d in dets:
                        d.learn_many(user, list(block))
        results.append(SeaResult(name, thr, scores, alarms))
    for r in results:
        r.metrics = sea_metrics(data.truth, r.scores, r.alarms)
        r.metrics.update(threshold=r.threshold, target_fa=target_fa, folds=folds, updating=update)
        r.metrics["selection"] = {m: choices[m].to_dict() for m in choices if m == r.model or r.model == "ensemble"}
    return per_user + results


def sea_metrics(truth: np.ndarray, scores: np.ndarray, alarms: np.ndarray) -> dict[str, Any]:
    """Operating point of ``alarms`` plus pooled ranking figures (ROC-AUC, hits at 1%/1.3%/3% FA)."""
    y = np.asarray(truth, dtype=int).ravel()
    s, a = np.asarray(scores).ravel(), np.asarray(alarms, dtype=bool).ravel()
    pos, neg = int(y.sum()), int((1 - y).sum())
    out: dict[str, Any] = {
        "masquerade_blocks": pos,
        "clean_blocks": neg,
        "hits": int((a & (y == 1)).sum()),
        "false_alarms": int((a & (y == 0)).sum()),
    }
    out["hit_rate"] = out["hits"] / pos if pos else None
    out["false_alarm_rate"] = out["false_alarms"] / neg if neg else None
    if pos and neg:
        out["roc_auc"] = float(roc_auc_score(y, s))
        for fa in (0.01, 0.013, 0.03):
            out[f"hits_at_{fa:g}_fa"] = tpr_at_fpr(y, s, fa)
        f, t, _ = roc_curve(y, s)
        grid = [0.0, 0.005, 0.01, 0.013, 0.02, 0.03, 0.05, 0.1, 0.2]
        out["roc_points"] = [[g, float(t[f <= g].max())] for g in grid]
    return out


#: model names of the per-user-threshold naive Bayes (:mod:`misuse.eval.sea_per_user`) in :func:`run_sea`
PER_USER = "nb_per_user"
REHEARSED = "nb_rehearsed"
