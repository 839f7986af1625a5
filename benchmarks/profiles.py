"""Scoring throughput of the sequence models and profile memory per entity.

Throughput: actions scored per second, one core, on blocks of 100 actions drawn from 50 synthetic
users with 200-action vocabularies (SEA-like), after training on 5,000 actions each. Naive Bayes is
timed on its vectorised ``block_scores`` path and on ``score_block``; Markov and the GRU on
``score_block``. Profile memory: EntityProfile objects (footprint + temporal + one numeric sketch)
for 10k and 100k entities with 200 events each (20 actions, 3 peers), measured with tracemalloc,
plus their JSON size.

Run: .venv/bin/python benchmarks/profiles.py [--skip-gru] [--entities 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc

import numpy as np

from misuse.detectors.sequence import SequenceDetector, make_sequence_detector
from misuse.profiles.distribution import QuantileSketch
from misuse.profiles.profile import EntityProfile


def _users(rng: np.random.Generator, n: int = 50, length: int = 5000) -> dict[str, np.ndarray]:
    vocab = np.array([f"cmd{i}" for i in range(200)], dtype=object)
    out = {}
    for u in range(n):
        p = rng.dirichlet(np.full(200, 0.1))
        out[f"user{u}"] = rng.choice(vocab, length, p=p)
    return out


def throughput(name: str, params: dict[str, object], blocks: int = 500) -> list[tuple[str, float]]:
    """Actions per second of scoring after training, per path."""
    rng = np.random.default_rng(0)
    users = _users(rng)
    det: SequenceDetector = make_sequence_detector(name, **params)
    t0 = time.perf_counter()
    for user, seq in users.items():
        det.learn_many(user, list(seq))
    learn_rate = sum(len(s) for s in users.values()) / (time.perf_counter() - t0)
    names = list(users)
    test = {
        u: users[names[(i + 1) % len(names)]][: blocks * 100 // len(names)].reshape(-1, 100)
        for i, u in enumerate(names)
    }
    rows = [(f"{name} learn_many", learn_rate)]
    t0 = time.perf_counter()
    n = 0
    for user, bl in test.items():
        for b in bl:
            det.score_block(user, list(b))
            n += len(b)
    rows.append((f"{name} score_block", n / (time.perf_counter() - t0)))
    fast = getattr(det, "block_scores", None)
    if fast is not None:
        t0 = time.perf_counter()
        n = 0
        for user, bl in test.items():
            fast(user, bl)
            n += bl.size
        rows.append((f"{name} block_scores (vectorised)", n / (time.perf_counter() - t0)))
    return rows


def memory(n_entities: int, events: int = 200) -> tuple[float, float, float]:
    """(bytes per entity in memory, bytes per entity as JSON, seconds to build)."""
    rng = np.random.default_rng(1)
    actions = [f"act{i}" for i in range(20)]
    peers = ["10.0.0.1", "10.0.0.2", "broker"]
    ts = np.sort(rng.uniform(0, 7 * 86400, events))
    acts = list(rng.choice(actions, events))
    prs = list(rng.choice(peers, events))
    vals = rng.lognormal(5, 1, events)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    profiles = []
    for i in range(n_entities):
        p = EntityProfile(f"e{i}")
        p.footprint.update(acts, prs)
        p.temporal.update(ts)
        sk = p.numeric.setdefault("bytes", QuantileSketch())
        sk.update(vals)
        p.events = events
        profiles.append(p)
    elapsed = time.perf_counter() - t0
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    js = np.mean([len(json.dumps(p.to_dict())) for p in profiles[:200]])
    return used / n_entities, float(js), elapsed


def main() -> int:
    """Print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-gru", action="store_true")
    ap.add_argument("--entities", default="10000,100000")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        args.skip_gru = True
    print("== scoring throughput (actions/s, one core; 50 synthetic users, 5,000 training actions each) ==")
    models: list[tuple[str, dict[str, object]]] = [
        ("naive_bayes", {}),
        ("naive_bayes", {"smoothing": "dirichlet", "mu": 4.0, "burst": "log"}),
        ("markov", {"order": 2}),
        ("markov", {"order": 3}),
    ]
    if not args.skip_gru:
        models.append(("gru", {"epochs": 1, "hidden": 32, "embed": 16}))
    for name, params in models:
        for label, rate in throughput(name, params):
            print(f"  {label:38s} {params!s:56s} {rate:>12,.0f}")
    print("== profile memory per entity (200 events each: 20 actions, 3 peers, 1 numeric attribute) ==")
    for n in (int(x) for x in args.entities.split(",")):
        per, js, secs = memory(n)
        print(f"  {n:>7,} entities: {per:,.0f} B in memory, {js:,.0f} B as JSON per entity; built in {secs:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
