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
    {"method": "Schonlau et al. 2001 methods (range)", "hits": "0.342-0.693", "false_alarms": "0.014-0.067"},
]
DEFAULT_MODELS: tuple[str, ...] = ("naive_bayes", "markov", "ensemble")
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "naive_bayes": {"alpha": 0.01},
    "markov": {"order": 2, "lam": 0.6, "alpha": 0.01},
    "gru": {"epochs": 2, "hidden": 32, "embed": 16},
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


def _fit(name: str, data: SeaData, keep: Callable[[int], list[np.ndarray]], seed: int) -> SequenceDetector:
    det = make_sequence_detector(name, **MODEL_PARAMS.get(name, {}), seed=seed)
    for u, user in enumerate(data.users):
        for run in keep(u):
            det.learn_many(user, list(run))
    return det


def _scores(det: SequenceDetector, user: str, blocks: np.ndarray) -> np.ndarray:
    fast = getattr(det, "block_scores", None)
    if fast is not None:
        return np.asarray(fast(user, blocks))
    return det.score_blocks(user, [list(b) for b in blocks])


def heldout_scores(name: str, data: SeaData, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Held-out scores of every user's training blocks, shape (50 blocks, users); training data only."""
    n_blocks = SEA_TRAIN // SEA_BLOCK
    edges = np.linspace(0, n_blocks, folds + 1).astype(int)
    out = np.zeros((n_blocks, len(data.users)))
    for f in range(folds):
        lo, hi = edges[f], edges[f + 1]

        def keep(u: int, lo: int = lo, hi: int = hi) -> list[np.ndarray]:
            tr = data.train(u)
            return [p for p in (tr[:lo].ravel(), tr[hi:].ravel()) if p.size]

        det = _fit(name, data, keep, seed)
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


def proxy_selection(name: str, data: SeaData, folds: int = 5, seed: int = 0, per_user: int = 4) -> dict[str, float]:
    """Training-only choice of the normaliser: the "outsider" proxy.

    The users are split in two halves (odd/even). A model of one half scores that half's held-out
    training blocks (clean) and ``per_user`` random training blocks of every user of the other half
    (outsiders the model never saw, as SEA's masqueraders are outside the 50). For each normaliser the
    figure is the outsider hit rate at 1% false alarms on the held-out clean blocks, averaged over
    both halves. No test block is touched.
    """
    rng = np.random.default_rng(seed)
    result: dict[str, list[float]] = {k: [] for k in NORMALISERS}
    idx = np.arange(len(data.users))
    for half in (0, 1):
        inside, outside = idx[idx % 2 == half], idx[idx % 2 != half]
        sub = SeaData([data.users[i] for i in inside], [data.commands[i] for i in inside], data.truth[:, inside])
        heldout = heldout_scores(name, sub, folds, seed)
        det = _fit(name, sub, lambda u, sub=sub: [sub.train(u).ravel()], seed)  # type: ignore[misc, arg-type]
        n_train = SEA_TRAIN // SEA_BLOCK
        outsiders = np.array([data.train(v)[j] for v in outside for j in rng.choice(n_train, per_user, replace=False)])
        proxy = np.stack([_scores(det, user, outsiders) for user in sub.users], axis=1)
        y = np.r_[np.zeros(heldout.size), np.ones(proxy.size)]
        for kind in NORMALISERS:
            c, s = normaliser(heldout, kind)
            both = np.r_[((heldout - c) / s).ravel(), ((proxy - c) / s).ravel()]
            result[kind].append(tpr_at_fpr(y, both, 0.01))
    return {k: float(np.mean(v)) for k, v in result.items()}


def run_sea(
    data: SeaData,
    models: Sequence[str] = DEFAULT_MODELS,
    target_fa: float = 0.01,
    folds: int = 5,
    update: bool = True,
    seed: int = 0,
    tick: Callable[[str], None] | None = None,
) -> list[SeaResult]:
    """Run the protocol for each model; returns one :class:`SeaResult` per model."""
    if not 0 < target_fa < 0.5:
        raise InvalidParameterError(f"target_fa must be in (0, 0.5). Got {target_fa} instead.")
    members = [m for m in models if m != "ensemble"]
    if "ensemble" in models:
        members = list(dict.fromkeys([*members, "naive_bayes", "markov"]))
    norm: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for name in members:
        if tick:
            tick(f"{name}: choosing the normaliser on the outsider proxy")
        proxy = proxy_selection(name, data, folds, seed)
        kind = max(NORMALISERS, key=lambda k: proxy[k])
        chosen[name] = {"normaliser": kind, "proxy_hits_at_1%_fa": proxy}
        if tick:
            tick(f"{name}: held-out training scores (normaliser {kind})")
        ho = heldout_scores(name, data, folds, seed)
        c, s = normaliser(ho, kind)
        norm[name] = (c, s, (ho - c) / s)
    results = []
    for name in models:
        group = [name] if name != "ensemble" else [m for m in members if m in ("naive_bayes", "markov")]
        pooled = np.mean([norm[m][2] for m in group], axis=0)
        thr = float(np.quantile(pooled.ravel(), 1 - target_fa))
        if tick:
            tick(f"{name}: scoring test blocks")
        dets = [_fit(m, data, lambda u: [data.train(u).ravel()], seed) for m in group]
        scores = np.zeros((SEA_SHAPE[0], len(data.users)))
        alarms = np.zeros_like(scores, dtype=bool)
        for u, user in enumerate(data.users):
            for b, block in enumerate(data.test(u)):
                parts = [
                    (_scores(d, user, block[None, :])[0] - norm[m][0][u]) / norm[m][1][u]
                    for d, m in zip(dets, group, strict=True)
                ]
                score = float(np.mean(parts))
                scores[b, u] = score
                alarms[b, u] = score > thr
                if update and not alarms[b, u]:
                    for d in dets:
                        d.learn_many(user, list(block))
        results.append(SeaResult(name, thr, scores, alarms))
    for r in results:
        r.metrics = sea_metrics(data.truth, r.scores, r.alarms)
        r.metrics.update(threshold=r.threshold, target_fa=target_fa, folds=folds, updating=update)
        r.metrics["selection"] = {m: chosen[m] for m in chosen if m == r.model or r.model == "ensemble"}
    return results


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
