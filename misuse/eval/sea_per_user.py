"""SEA naive Bayes with one threshold per user, every choice made on training data.

Both models here are naive Bayes, self against the other 49 users, with one threshold per user;
the users share the false-alarm budget the Neyman-Pearson way (:func:`np_thresholds`). They differ
in how their settings are chosen, always inside the training data:

- ``nb_per_user`` (:func:`run_per_user`): additive smoothing (alpha), population, spread, inflation
  and budget chosen by the *pseudo-protocol* (:func:`select_pseudo`): the first 17 training blocks
  train, the other 33 are scored in order with updating; hits are stood in for by other users' blocks.
- ``nb_rehearsed`` (:func:`run_rehearsed`): smoothing (additive or Dirichlet toward the population),
  burst discount, inflation and budget chosen by a *rehearsal* (:func:`rehearse`): a third of the
  users play outsiders no model has seen, and their blocks are injected as masquerade runs into the
  others' later training blocks, which are scored in order with updating.

The test blocks and ``masquerade_summary.txt`` are not read until the decisions are final.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from misuse.detectors.sequence import SequenceDetector, make_sequence_detector
from misuse.errors import InvalidParameterError
from misuse.eval.sea import PER_USER, REHEARSED, SeaData, SeaResult, _scores, sea_metrics
from misuse.ingest.sea import SEA_BLOCK, SEA_TRAIN

#: naive Bayes variants the rehearsal chooses from: Maxion & Townsend's additive smoothing, and the
#: entity shrunk toward the population (an identity's never-used commands count against it)
MODELS: dict[str, dict[str, Any]] = {
    "additive": {"smoothing": "additive", "alpha": 0.01},
    "dirichlet": {"smoothing": "dirichlet", "mu": 4.0},
}
#: candidates of ``nb_per_user``; the pseudo-protocol chooses among them (training data only)
PER_USER_GRID: dict[str, tuple[Any, ...]] = {
    "alpha": (0.001, 0.01),
    "population": ("pooled", "mixture"),
    "spread": ("cv", "drift"),
    "inflate": (1.0, 1.25, 1.5),
    "target": (0.01, 0.005, 0.0025),
}
PSEUDO_TRAIN_BLOCKS = 17  # pseudo-protocol: train on the first 17 training blocks, test on the other 33
#: candidates of ``nb_rehearsed``; :func:`rehearse` chooses among them (training data only)
REHEARSAL_GRID: dict[str, tuple[Any, ...]] = {
    "model": ("additive", "dirichlet"),
    "burst": ("none", "log"),
    "inflate": (1.0, 1.25, 1.5, 1.75, 2.0, 2.5),
    "target": (0.01, 0.005),
}
MAX_FA = 0.013  # the false-alarm bound a candidate must meet in the pseudo-protocol or rehearsal


@dataclass(frozen=True)
class Rehearsal:
    """How the protocol is replayed inside the training data.

    The users are dealt into ``groups`` groups by index. In turn, one group plays the outsiders
    (masqueraders no model has seen, as SEA's come from 20 users outside the 50) and the others are
    protected: each protected user's first ``train_blocks`` training blocks train, the rest are scored
    in order with updating, ``reps`` times over with different injections. A masquerade run starts at
    a clean block with probability ``start`` and continues with probability ``stay`` (runs of
    consecutive blocks, as SEA's are); its blocks are consecutive training blocks of one outsider.
    """

    train_blocks: int = 25
    groups: int = 3
    reps: int = 3
    start: float = 0.03
    stay: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        n = SEA_TRAIN // SEA_BLOCK
        if not 10 <= self.train_blocks < n:
            raise InvalidParameterError(f"train_blocks must be in [10, {n - 1}]. Got {self.train_blocks} instead.")
        if self.groups < 2 or self.reps < 1:
            raise InvalidParameterError(f"groups must be >= 2 and reps >= 1. Got {self.groups}, {self.reps} instead.")
        if not (0 < self.start < 1 and 0 <= self.stay < 1):
            raise InvalidParameterError(f"start must be in (0, 1), stay in [0, 1). Got {self.start}, {self.stay}.")


@dataclass
class UserFit:
    """What the per-user thresholds are built from, all from training blocks.

    ``centre``/``spread_cv``: median and standard deviation of each user's cross-validated held-out
    block scores; ``spread_drift``: the standard deviation of *forward* scores (a model of the first
    half of the blocks scores the second half in order, folding each in: the drift updating leaves),
    floored by ``spread_cv``; ``outsiders[u]``: scores, under user u's model, of every other user's
    blocks with that user removed from the population (a masquerader u's model never saw).
    """

    det: SequenceDetector
    centre: np.ndarray
    spread_cv: np.ndarray
    spread_drift: np.ndarray
    outsiders: list[np.ndarray]

    def spread(self, kind: str) -> np.ndarray:
        """Per-user spread of clean scores: "cv" or "drift"."""
        if kind not in ("cv", "drift"):
            raise InvalidParameterError(f"spread must be 'cv' or 'drift'. Got {kind!r} instead.")
        return self.spread_cv if kind == "cv" else self.spread_drift


def detector_params(model: str, burst: str) -> dict[str, Any]:
    """Naive Bayes keyword arguments of a candidate."""
    if model not in MODELS:
        raise InvalidParameterError(f"model must be one of {sorted(MODELS)}. Got {model!r} instead.")
    return {**MODELS[model], "burst": burst}


def fit_per_user(data: SeaData, blocks: int, params: dict[str, Any], folds: int = 5) -> UserFit:
    """Naive Bayes on each user's first ``blocks`` training blocks plus the statistics of :class:`UserFit`."""
    if not 2 * folds <= blocks <= SEA_TRAIN // SEA_BLOCK:
        raise InvalidParameterError(f"blocks must be in [{2 * folds}, {SEA_TRAIN // SEA_BLOCK}]. Got {blocks} instead.")
    train = [data.train(u)[:blocks] for u in range(len(data.users))]
    det = make_sequence_detector("naive_bayes", **params)
    for user, tr in zip(data.users, train, strict=True):
        det.learn_many(user, list(tr.ravel()))
    unlearn = det.unlearn  # type: ignore[attr-defined]
    edges = np.linspace(0, blocks, folds + 1).astype(int)
    held = np.zeros((blocks, len(data.users)))
    for u, (user, tr) in enumerate(zip(data.users, train, strict=True)):
        for lo, hi in itertools.pairwise(edges):
            unlearn(user, list(tr[lo:hi].ravel()))
            held[lo:hi, u] = _scores(det, user, tr[lo:hi])
            det.learn_many(user, list(tr[lo:hi].ravel()))
    outsiders: list[list[np.ndarray]] = [[] for _ in data.users]
    for v, (other, tr) in enumerate(zip(data.users, train, strict=True)):
        unlearn(other, list(tr.ravel()))
        for u, user in enumerate(data.users):
            if u != v:
                outsiders[u].append(_scores(det, user, tr))
        det.learn_many(other, list(tr.ravel()))
    half = blocks // 2
    fwd_det = make_sequence_detector("naive_bayes", **params)
    for user, tr in zip(data.users, train, strict=True):
        fwd_det.learn_many(user, list(tr[:half].ravel()))
    forward = np.zeros((blocks - half, len(data.users)))
    for b in range(half, blocks):
        forward[b - half] = [
            _scores(fwd_det, user, tr[b : b + 1])[0] for user, tr in zip(data.users, train, strict=True)
        ]
        for user, tr in zip(data.users, train, strict=True):
            fwd_det.learn_many(user, list(tr[b]))
    spread_cv = np.maximum(held.std(axis=0), 1e-6)
    return UserFit(
        det,
        np.median(held, axis=0),
        spread_cv,
        np.maximum(spread_cv, forward.std(axis=0)),
        [np.concatenate(o) if o else np.zeros(0) for o in outsiders],
    )


def np_thresholds(centre: np.ndarray, spread: np.ndarray, outsiders: list[np.ndarray], target: float) -> np.ndarray:
    """Per-user thresholds that share a false-alarm budget ``target`` the Neyman-Pearson way.

    A user's clean scores are taken as normal(centre, spread); its outsider scores give the hit rate
    H_u(t). For a price ``lam`` per unit of false alarm, user u's threshold maximises
    H_u(t) - lam * FA_u(t); ``lam`` is raised until the mean FA_u over users is <= ``target``. Users whose
    masqueraders are easy to tell apart get low thresholds, users who vary a lot get high ones.
    """
    from scipy.stats import norm

    cands = centre[:, None] + spread[:, None] * np.linspace(0.0, 8.0, 401)[None, :]
    fa = norm.sf((cands - centre[:, None]) / spread[:, None])
    hit = np.stack(
        [
            (o[None, :] > c[:, None]).mean(axis=1) if o.size else np.zeros(c.size)
            for o, c in zip(outsiders, cands, strict=True)
        ]
    )

    def at(lam: float) -> tuple[np.ndarray, float]:
        i = np.argmax(hit - lam * fa, axis=1)
        rows = np.arange(len(centre))
        return cands[rows, i], float(fa[rows, i].mean())

    lo, hi = 1.0, 1e6
    for _ in range(60):
        mid = float(np.sqrt(lo * hi))
        if at(mid)[1] > target:
            lo = mid
        else:
            hi = mid
    return at(hi)[0]


def run_blocks(
    det: SequenceDetector, users: Sequence[str], blocks: Sequence[np.ndarray], thresholds: np.ndarray, update: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Score each user's blocks in time order (block index outer, users inner), updating when not flagged.

    Returns raw scores and alarms, shape (blocks, users). ``det`` is changed (that is the updating).
    """
    n = min(len(b) for b in blocks)
    scores = np.zeros((n, len(users)))
    for b in range(n):
        scores[b] = [_scores(det, user, bl[b : b + 1])[0] for user, bl in zip(users, blocks, strict=True)]
        if update:
            for u, (user, bl) in enumerate(zip(users, blocks, strict=True)):
                if scores[b, u] <= thresholds[u]:
                    det.learn_many(user, list(bl[b]))
    return scores, scores > thresholds[None, :]


def inject(
    clean: np.ndarray, outsiders: Sequence[np.ndarray], plan: Rehearsal, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``clean`` (blocks, 100) with masquerade runs of outsiders' consecutive blocks: (blocks, labels)."""
    stream, labels = clean.copy(), np.zeros(len(clean), dtype=bool)
    t = 0
    while t < len(stream):
        if rng.random() >= plan.start:
            t += 1
            continue
        source = outsiders[int(rng.integers(len(outsiders)))]
        pos = int(rng.integers(len(source)))
        while t < len(stream):
            stream[t], labels[t] = source[pos % len(source)], True
            pos, t = pos + 1, t + 1
            if rng.random() >= plan.stay:
                break
    return stream, labels


def _subset(data: SeaData, idx: np.ndarray) -> SeaData:
    """The users ``idx`` of ``data``, training commands only (no truth: the rehearsal needs none)."""
    return SeaData(
        [data.users[i] for i in idx],
        [data.commands[i][:SEA_TRAIN] for i in idx],
        np.zeros((0, len(idx)), dtype=np.int8),
    )


def rehearse(
    data: SeaData,
    grid: dict[str, tuple[Any, ...]] | None = None,
    plan: Rehearsal | None = None,
    tick: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Replay the protocol inside the training data for every candidate; choose one.

    For every rotation of :class:`Rehearsal` and candidate of ``grid`` (default :data:`REHEARSAL_GRID`),
    the protected users' models and per-user thresholds are built from their first
    ``train_blocks`` blocks exactly as the real run builds them from 50, then their remaining blocks,
    with injected masquerade runs, are scored in order with updating. A candidate's rehearsal false
    alarms and hits are pooled over rotations and repetitions. The winner has the most hits among
    candidates with at most :data:`MAX_FA` false alarms (if none, the fewest false alarms).
    """
    g = REHEARSAL_GRID if grid is None else grid
    plan = Rehearsal() if plan is None else plan
    n_users, k = len(data.users), plan.train_blocks
    if n_users < max(plan.groups, 3):
        raise InvalidParameterError(f"the rehearsal needs at least {max(plan.groups, 3)} users. Got {n_users}.")
    group = np.arange(n_users) % plan.groups
    totals: dict[tuple[Any, ...], np.ndarray] = {}  # candidate -> [clean, false alarms, injected, hits]
    for r in range(plan.groups):
        protected, outside = np.flatnonzero(group != r), np.flatnonzero(group == r)
        sub = _subset(data, protected)
        outsiders = [data.train(int(v)) for v in outside]
        rng = np.random.default_rng([plan.seed, r])
        streams = [
            [inject(sub.train(u)[k:], outsiders, plan, rng) for u in range(len(sub.users))] for _ in range(plan.reps)
        ]
        for model, burst in itertools.product(g["model"], g["burst"]):
            if tick:
                tick(f"{REHEARSED}: rehearsal {r + 1}/{plan.groups}, {model} smoothing, burst {burst}")
            fit = fit_per_user(sub, k, detector_params(model, burst))
            for inflate, target in itertools.product(g["inflate"], g["target"]):
                thr = np_thresholds(fit.centre, fit.spread_cv * inflate, fit.outsiders, target)
                acc = totals.setdefault((model, burst, inflate, target), np.zeros(4))
                for rep in streams:
                    _, alarms = run_blocks(copy.deepcopy(fit.det), sub.users, [s for s, _ in rep], thr, update=True)
                    truth = np.stack([lab for _, lab in rep], axis=1)
                    acc += [(~truth).sum(), (alarms & ~truth).sum(), truth.sum(), (alarms & truth).sum()]
    rows = [
        {
            "model": model,
            "burst": burst,
            "inflate": inflate,
            "target": target,
            "rehearsal_fa": float(t[1] / max(t[0], 1)),
            "rehearsal_hits": float(t[3] / max(t[2], 1)),
        }
        for (model, burst, inflate, target), t in totals.items()
    ]
    ok = [r for r in rows if r["rehearsal_fa"] <= MAX_FA]
    if ok:
        best = max(ok, key=lambda r: (r["rehearsal_hits"], -r["rehearsal_fa"]))
    else:
        best = min(rows, key=lambda r: r["rehearsal_fa"])
    t = next(iter(totals.values()))
    return {"chosen": best, "candidates": rows, "plan": plan.__dict__, "clean": int(t[0]), "injected": int(t[2])}


def select_pseudo(
    data: SeaData, grid: dict[str, tuple[Any, ...]] | None = None, tick: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Choose alpha, population, spread, inflation and budget on the *pseudo-protocol* (training data only).

    The pseudo-protocol repeats the real one inside the training data, with the same 1:2 ratio of
    training to test: each user's first :data:`PSEUDO_TRAIN_BLOCKS` blocks train, the remaining 33 are
    scored in order with updating. Its false-alarm rate shows what drift does to a threshold set on
    held-out blocks; its outsider hit rate (share of other users' blocks above the user's threshold)
    stands for hits. The candidate with the most outsider hits whose pseudo false-alarm rate is
    <= :data:`MAX_FA` wins (if none, the one with the fewest pseudo false alarms).
    """
    g = PER_USER_GRID if grid is None else grid
    rows: list[dict[str, Any]] = []
    k = PSEUDO_TRAIN_BLOCKS
    later = [data.train(u)[k:] for u in range(len(data.users))]
    for alpha, population in itertools.product(g["alpha"], g.get("population", ("pooled",))):
        if tick:
            tick(f"{PER_USER}: pseudo-protocol, alpha {alpha}, {population} population")
        fit = fit_per_user(data, k, {"alpha": alpha, "population": population})
        for spread, inflate, target in itertools.product(g["spread"], g["inflate"], g["target"]):
            thr = np_thresholds(fit.centre, fit.spread(spread) * inflate, fit.outsiders, target)
            _, alarms = run_blocks(copy.deepcopy(fit.det), data.users, later, thr, update=True)
            hits = float(np.mean([np.mean(o > t) for o, t in zip(fit.outsiders, thr, strict=True) if o.size]))
            rows.append(
                {
                    "alpha": alpha,
                    "population": population,
                    "spread": spread,
                    "inflate": inflate,
                    "target": target,
                    "pseudo_fa": float(alarms.mean()),
                    "proxy_hits": hits,
                }
            )
    ok = [r for r in rows if r["pseudo_fa"] <= MAX_FA]
    best = max(ok, key=lambda r: r["proxy_hits"]) if ok else min(rows, key=lambda r: r["pseudo_fa"])
    return {"chosen": best, "candidates": rows}


def _final(
    name: str,
    data: SeaData,
    params: dict[str, Any],
    choice: dict[str, Any],
    sel: dict[str, Any],
    update: bool,
    tick: Callable[[str], None] | None,
) -> SeaResult:
    """Fit all 50 training blocks with the chosen settings, then score the test blocks in order."""
    if tick:
        tick(f"{name}: fitting all training blocks with {choice}")
    fit = fit_per_user(data, SEA_TRAIN // SEA_BLOCK, params)
    spread = fit.spread(choice.get("spread", "cv"))
    thr = np_thresholds(fit.centre, spread * choice["inflate"], fit.outsiders, choice["target"])
    if tick:
        tick(f"{name}: scoring test blocks")
    raw, alarms = run_blocks(fit.det, data.users, [data.test(u) for u in range(len(data.users))], thr, update)
    margin = (raw - thr[None, :]) / spread[None, :]
    res = SeaResult(name, 0.0, margin, alarms)
    res.metrics = sea_metrics(data.truth, margin, alarms)
    res.metrics.update(threshold="per user", updating=update, selection={name: sel})
    return res


def run_per_user(
    data: SeaData,
    update: bool = True,
    grid: dict[str, tuple[Any, ...]] | None = None,
    tick: Callable[[str], None] | None = None,
) -> SeaResult:
    """``nb_per_user``: per-user thresholds with settings chosen by :func:`select_pseudo`."""
    sel = select_pseudo(data, grid, tick)
    ch = sel["chosen"]
    return _final(PER_USER, data, {"alpha": ch["alpha"], "population": ch["population"]}, ch, sel, update, tick)


def run_rehearsed(
    data: SeaData,
    update: bool = True,
    grid: dict[str, tuple[Any, ...]] | None = None,
    tick: Callable[[str], None] | None = None,
    plan: Rehearsal | None = None,
) -> SeaResult:
    """``nb_rehearsed``: per-user thresholds with settings chosen by :func:`rehearse`."""
    sel = rehearse(data, grid, plan, tick)
    ch = sel["chosen"]
    return _final(REHEARSED, data, detector_params(ch["model"], ch["burst"]), ch, sel, update, tick)
