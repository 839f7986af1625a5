"""Federated vs local-only vs centralised detectors on real data split into sites.

Run: ``.venv/bin/python benchmarks/federated.py [--data ../shared/data] [--seeds 0 1 2] [--quick]``
(no Flower needed: the sites' rounds run in-process through the same
:class:`misuse.federated.site.SiteTrainer` and :func:`misuse.federated.aggregate.aggregate` that the
Flower apps use; ``tests/federated/test_flower_e2e.py`` covers the real multi-process deployment).

1. IoT-23 scenarios as sites (Zeek conn.log -> 60 s window features -> :class:`FedAutoencoder`):
   Philips Hue (4-1), Amazon Echo (5-1), Mirai-infected Raspberry Pi (34-1). Each site's windows are
   split by time: the first half trains (benign-labelled windows only, the N-BaIoT protocol), the
   second half of every site is pooled into one test set (attacks come from 34-1). ROC-AUC of
   each site's local-only model, of the federated model (FedAvg, 20 rounds x 4 local epochs) and of a
   centralised model (same code, pooled training windows, 80 epochs); then with one site sending
   poisoned updates (``global - 10 x update``), FedAvg vs coordinate median vs trimmed mean; then
   with update clipping and Gaussian noise (epsilon stated).
2. SEA users grouped into sites (5 sites x 10 users; :class:`ActionNB`): each user's profile is
   local; the population model is local-only (the site's 10 users), federated (FedAvg of the sites'
   frequencies) or centralised (all 50 users). Standard SEA protocol: first 5,000 commands train,
   100 blocks of 100 are scored; ROC-AUC over all 5,000 test blocks. Poisoned site as above.
3. Bytes a site sends per round vs the size of its raw data files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from misuse.federated.aggregate import aggregate, gaussian_epsilon
from misuse.federated.data import WINDOW_FEATURES, read_events, window_matrix
from misuse.federated.models import ActionNB, FedAutoencoder
from misuse.federated.params import payload_bytes
from misuse.federated.site import SiteTrainer
from misuse.ingest.sea import SEA_BLOCK, SEA_TRAIN, SeaReader, load_sea_truth

IOT23_SITES = {
    "hue-4-1": "CTU-Honeypot-Capture-4-1/bro/conn.log.labeled",
    "echo-5-1": "CTU-Honeypot-Capture-5-1/bro/conn.log.labeled",
    "mirai-34-1": "CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled",
}
ROUNDS, EPOCHS, HIDDEN, LR = 20, 4, 8, 1e-2


def _federate(
    trainers: list[SiteTrainer], start: list[np.ndarray], rule: str, rounds: int, config: dict[str, Any]
) -> tuple[list[np.ndarray], list[int]]:
    arrays, sent = start, []
    for r in range(1, rounds + 1):
        results = []
        for t in trainers:
            new, n, _ = t.fit(arrays, {**config, "round": r})
            results.append((new, n))
            sent.append(payload_bytes(new))
        arrays = aggregate(rule, results, beta=0.34)
    return arrays, sent


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def iot23(root: Path, seeds: list[int]) -> None:
    """Autoencoder across IoT-23 scenarios."""
    sites: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    raw: dict[str, int] = {}
    X_test, y_test = [], []
    for name, rel in IOT23_SITES.items():
        path = root / "iot23" / rel
        X, y = window_matrix(read_events([path]), 60.0)  # windows in time order
        half = len(X) // 2
        train = X[:half][~y[:half]]
        sites[name] = (train, X[:half])
        X_test.append(X[half:])
        y_test.append(y[half:])
        raw[name] = path.stat().st_size
        print(
            f"  site {name}: {len(X):,} windows, {len(train):,} benign training windows, "
            f"test attack windows {int(y[half:].sum()):,}"
        )
    Xt, yt = np.vstack(X_test), np.concatenate(y_test)
    print(f"  pooled test: {len(Xt):,} windows, {int(yt.sum()):,} attack windows; features: {len(WINDOW_FEATURES)}")
    d = len(WINDOW_FEATURES)
    res: dict[str, list[float]] = {}

    def add(key: str, v: float) -> None:
        res.setdefault(key, []).append(v)

    bytes_round = 0
    for seed in seeds:
        cfg = {"epochs": EPOCHS, "lr": LR, "seed": seed}
        start = FedAutoencoder(d, HIDDEN, seed=seed).get_arrays()
        for name, (train, _) in sites.items():
            m = FedAutoencoder(d, HIDDEN, seed=seed)
            m.fit_local(train, epochs=ROUNDS * EPOCHS, lr=LR, seed=seed)
            add(f"local-only {name}", _auc(yt, m.score(Xt)))
        central = FedAutoencoder(d, HIDDEN, seed=seed)
        central.fit_local(np.vstack([t for t, _ in sites.values()]), epochs=ROUNDS * EPOCHS, lr=LR, seed=seed)
        add("centralised", _auc(yt, central.score(Xt)))
        for rule in ("fedavg", "fedmedian", "trimmed"):
            for poison in (None, -10.0):
                trainers = [SiteTrainer(FedAutoencoder(d, HIDDEN, seed=seed), t, t) for t, _ in sites.values()]
                if poison is not None:
                    trainers[0].poison_scale = poison  # the Hue site is the attacker
                arrays, sent = _federate(trainers, start, rule, ROUNDS, cfg)
                model = FedAutoencoder(d, HIDDEN, seed=seed)
                model.set_arrays(arrays)
                add(f"federated {rule}{' + poisoned site' if poison else ''}", _auc(yt, model.score(Xt)))
                bytes_round = sent[0]
        for clip, z in ((5.0, 0.0), (5.0, 1.0), (5.0, 2.0)):
            trainers = [SiteTrainer(FedAutoencoder(d, HIDDEN, seed=seed), t, t) for t, _ in sites.values()]
            arrays, _ = _federate(trainers, start, "fedavg", ROUNDS, {**cfg, "clip_norm": clip, "noise_multiplier": z})
            model = FedAutoencoder(d, HIDDEN, seed=seed)
            model.set_arrays(arrays)
            eps = f"eps={gaussian_epsilon(z, ROUNDS, 1e-5):.1f}, delta=1e-5" if z else "no DP"
            add(f"federated fedavg, clip {clip} noise x{z} ({eps})", _auc(yt, model.score(Xt)))
    _print(res, seeds)
    print(
        f"  bytes a site sends per round: {bytes_round:,} (the same received); raw conn.log sizes: "
        + ", ".join(f"{k} {v:,}" for k, v in raw.items())
    )


def sea(root: Path, seeds: list[int], n_sites: int = 5) -> None:
    """Naive-Bayes action model across SEA users grouped into sites."""
    folder = root / "sea-masquerade"
    truth = load_sea_truth(folder / "masquerade_summary.txt")
    users = sorted(
        (p.name for p in (folder / "users").iterdir() if p.name.startswith("User")), key=lambda u: int(u[4:])
    )
    train: dict[str, list[str]] = {}
    blocks: dict[str, list[list[str]]] = {}
    raw = 0
    for u in users:
        ev = SeaReader().read(folder / "users" / u)
        acts = [str(a) for a in ev["action"]]
        train[u] = acts[:SEA_TRAIN]
        blocks[u] = [acts[i : i + SEA_BLOCK] for i in range(SEA_TRAIN, len(acts), SEA_BLOCK)]
        raw += (folder / "users" / u).stat().st_size
    y = np.concatenate([truth[:, int(u[4:]) - 1] for u in users]).astype(bool)
    res: dict[str, list[float]] = {}
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(users))
        groups = [[users[i] for i in order[k::n_sites]] for k in range(n_sites)]
        site_models = [ActionNB() for _ in groups]
        results = [(m, m.fit_local({u: train[u] for u in g})) for m, g in zip(site_models, groups, strict=True)]
        site_of = {u: k for k, g in enumerate(groups) for u in g}

        def scores(
            pops: list[np.ndarray], models: list[ActionNB] = site_models, where: dict[str, int] = site_of
        ) -> np.ndarray:
            return _block_scores(users, blocks, models, where, pops)

        local = [m.population.copy() for m, _ in results]
        res.setdefault("local-only (site population)", []).append(_auc(y, scores(local)))
        central = ActionNB()
        central.fit_local(train)
        res.setdefault("centralised", []).append(_auc(y, scores([central.population] * n_sites)))
        for rule in ("fedavg", "fedmedian"):
            for poison in (None, -10.0):
                pairs = [(m.get_arrays(), n) for m, n in results]
                if poison is not None:
                    start = ActionNB().get_arrays()[0]
                    pairs[0] = ([start + poison * (pairs[0][0][0] - start)], pairs[0][1])
                merged = ActionNB()
                merged.set_arrays(aggregate(rule, pairs))
                key = f"federated {rule}{' + poisoned site' if poison else ''}"
                res.setdefault(key, []).append(_auc(y, scores([merged.population] * n_sites)))
    _print(res, seeds)
    up = payload_bytes(ActionNB().get_arrays())
    print(
        f"  bytes a site sends per round: {up:,}; raw command files: {raw:,} bytes over {n_sites} sites "
        f"(~{raw // n_sites:,} per site); users' profiles never leave their site"
    )


def _block_scores(
    users: list[str],
    blocks: dict[str, list[list[str]]],
    models: list[ActionNB],
    site_of: dict[str, int],
    pops: list[np.ndarray],
) -> np.ndarray:
    """Every user's test-block scores, with the population of the user's site set to ``pops[site]``."""
    out = []
    for u in users:
        m = models[site_of[u]]
        keep = m.population
        m.population = pops[site_of[u]]
        out.append(m.score_blocks(u, blocks[u]))
        m.population = keep
    return np.concatenate(out)


def _print(res: dict[str, list[float]], seeds: list[int]) -> None:
    for k, v in res.items():
        a = np.array(v)
        print(f"  {k:<70s} ROC-AUC {a.mean():.4f}  (min {a.min():.4f}, max {a.max():.4f}, seeds {seeds})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ.get("MISUSE_DATA_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"benchmarks/federated.py: data folder {args.data} not found (set MISUSE_DATA_DIR or --data)")
    print("== IoT-23 scenarios as sites: FedAutoencoder on 60 s window features ==")
    iot23(args.data, args.seeds)
    print("== SEA users grouped into 5 sites: naive-Bayes action model ==")
    sea(args.data, args.seeds)


if __name__ == "__main__":
    main()
