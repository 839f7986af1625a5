"""Federated vs local-only vs centralised detectors on real data split into sites.

Run: ``.venv/bin/python benchmarks/federated.py [--data ../shared/data] [--seeds 0 1 2]``
(under a minute: 49 s wall, 26 s of CPU, with the default three seeds on 2 cores shared with other
work; no Flower needed: the sites' rounds run in-process through the same
:class:`misuse.federated.site.SiteTrainer` and :func:`misuse.federated.aggregate.aggregate` that
the Flower apps use; ``tests/federated/test_flower_e2e.py`` covers the real multi-process deployment).

1. IoT-23 scenarios as sites (Zeek conn.log -> 60 s window features -> :class:`FedAutoencoder`):
   Philips Hue (4-1), Amazon Echo (5-1), Mirai-infected Raspberry Pi (34-1). Each site's windows are
   split by time: the first half is the training period (models train on its benign-labelled windows
   only, the N-BaIoT protocol), the second half of every site is pooled into one test set (attacks
   come from 34-1). Learning rates and the federated schedule (rounds x local epochs, 80 passes in
   all, like the centralised model's 80 epochs) are chosen on a validation third of the training
   period, never on the test half. ROC-AUC of each site's local-only model, of the federated model
   (FedAvg) and of a centralised model (same code, pooled training windows); then with one site
   sending poisoned updates (``global - 10 x update``), FedAvg vs coordinate median; then with update
   clipping and Gaussian noise (epsilon stated for sensitivity 2 x clip norm: one site's data replaced).
2. SEA users grouped into sites (5 sites x 10 users; :class:`ActionNB`): each user's profile is
   local; the population model is local-only (the site's 10 users), federated (FedAvg of the sites'
   frequencies) or centralised (all 50 users). Standard SEA protocol: first 5,000 commands train,
   100 blocks of 100 are scored; ROC-AUC over all 5,000 test blocks. Poisoned site as above, FedAvg vs
   median vs trimmed mean (one of five cut at each end).
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
HIDDEN = 8
#: training budget: 80 passes over the data, centralised in one go, federated as rounds x local epochs
EPOCHS_TOTAL = 80
#: what the validation step chooses from (on the training period only; the test half is never read)
LRS = (3e-3, 1e-2, 3e-2, 1e-1)
SCHEDULES = ((20, 4), (40, 2), (80, 1))  # (rounds, local epochs), the same 80 passes
#: validation ROC-AUC differences below this are ties, resolved towards fewer rounds
TIE = 0.005
#: the poisoned site's update is ``global + POISON x honest update`` (a boosted sign flip)
POISON = -10.0


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


def _ae(d: int, seed: int) -> FedAutoencoder:
    return FedAutoencoder(d, HIDDEN, seed=seed)


def _trained(d: int, seed: int, X: np.ndarray, lr: float) -> FedAutoencoder:
    m = _ae(d, seed)
    m.fit_local(X, epochs=EPOCHS_TOTAL, lr=lr, seed=seed)
    return m


def _federated(
    d: int,
    seed: int,
    trains: list[np.ndarray],
    rule: str,
    rounds: int,
    config: dict[str, Any],
    poison_first: bool = False,
) -> tuple[FedAutoencoder, list[int]]:
    trainers = [SiteTrainer(_ae(d, seed), t, t, noise_seed=seed * 10 + k) for k, t in enumerate(trains)]
    if poison_first:
        trainers[0].poison_scale = POISON  # the first site (Philips Hue) is the attacker
    arrays, sent = _federate(trainers, _ae(d, seed).get_arrays(), rule, rounds, {**config, "seed": seed})
    model = _ae(d, seed)
    model.set_arrays(arrays)
    return model, sent


def _select(
    periods: dict[str, tuple[np.ndarray, np.ndarray]], seeds: list[int]
) -> tuple[float, float, tuple[int, int, float], tuple[int, int, float]]:
    """Learning rates (local-only, centralised) and the federated (rounds, epochs, lr), on validation data.

    Within each site's training period, a random third of the windows (all labels) validates and
    the benign windows of the other two thirds train; the choice maximises the mean validation
    ROC-AUC over the seeds. Also returned: the federated schedule with the fewest rounds within
    :data:`TIE` of the best (rounds cost bytes and privacy budget). The test half is not read here.
    """
    trains, Xv, yv = [], [], []
    for X, y in periods.values():
        idx = np.random.default_rng(123).permutation(len(X))
        tr, va = np.sort(idx[: 2 * len(X) // 3]), np.sort(idx[2 * len(X) // 3 :])
        trains.append(X[tr][~y[tr]])
        Xv.append(X[va])
        yv.append(y[va])
    Xval, yval = np.vstack(Xv), np.concatenate(yv)
    d = Xval.shape[1]
    print(
        f"  validation (training period only): {len(Xval):,} windows, {int(yval.sum()):,} attack; "
        f"training {sum(len(t) for t in trains):,} benign windows"
    )

    def mean_auc(fn: Any) -> float:
        return float(np.mean([_auc(yval, fn(seed).score(Xval)) for seed in seeds]))

    local, central, fed = {}, {}, {}
    for lr in LRS:
        local[lr] = float(np.mean([mean_auc(lambda s, t=t, a=lr: _trained(d, s, t, a)) for t in trains]))
        central[lr] = mean_auc(lambda s, a=lr: _trained(d, s, np.vstack(trains), a))
        for rounds, ep in SCHEDULES:
            cfg = {"epochs": ep, "lr": lr}
            fed[(rounds, ep, lr)] = mean_auc(lambda s, r=rounds, c=cfg: _federated(d, s, trains, "fedavg", r, c)[0])
    for lr in LRS:
        line = ", ".join(f"{r}x{e} {fed[(r, e, lr)]:.4f}" for r, e in SCHEDULES)
        print(f"    lr {lr:g}: local-only {local[lr]:.4f}, centralised {central[lr]:.4f}, fedavg {line}")
    best_local, best_central = max(local, key=local.__getitem__), max(central, key=central.__getitem__)
    best_fed = max(fed, key=fed.__getitem__)
    # also the fewest rounds (bytes sent, privacy budget) among the schedules within TIE of the best
    cheap = min((k for k, v in fed.items() if v >= fed[best_fed] - TIE), key=lambda k: (k[0], -fed[k]))
    print(
        f"  chosen: local-only lr {best_local:g}, centralised lr {best_central:g}, "
        f"federated {best_fed[0]} rounds x {best_fed[1]} epochs, lr {best_fed[2]:g}; "
        f"fewest rounds within {TIE} of it: {cheap[0]} x {cheap[1]}, lr {cheap[2]:g}"
    )
    return best_local, best_central, best_fed, cheap


def iot23(root: Path, seeds: list[int]) -> None:
    """Autoencoder across IoT-23 scenarios."""
    periods: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    raw: dict[str, int] = {}
    X_test, y_test = [], []
    for name, rel in IOT23_SITES.items():
        path = root / "iot23" / rel
        X, y = window_matrix(read_events([path]), 60.0)  # windows in time order
        half = len(X) // 2
        periods[name] = (X[:half], y[:half])
        X_test.append(X[half:])
        y_test.append(y[half:])
        raw[name] = path.stat().st_size
        print(
            f"  site {name}: {len(X):,} windows, {int((~y[:half]).sum()):,} benign training windows, "
            f"test {len(X) - half:,} windows ({int(y[half:].sum()):,} attack)"
        )
    Xt, yt = np.vstack(X_test), np.concatenate(y_test)
    print(f"  pooled test: {len(Xt):,} windows, {int(yt.sum()):,} attack windows; features: {len(WINDOW_FEATURES)}")
    lr_local, lr_central, (rounds, epochs, lr_fed), (c_rounds, c_epochs, c_lr) = _select(periods, seeds)
    trains = [X[~y] for X, y in periods.values()]
    d = len(WINDOW_FEATURES)
    res: dict[str, list[float]] = {}

    def add(key: str, v: float) -> None:
        res.setdefault(key, []).append(v)

    bytes_round = 0
    cfg = {"epochs": epochs, "lr": lr_fed}
    cheap = {"epochs": c_epochs, "lr": c_lr}
    for seed in seeds:
        for name, train in zip(periods, trains, strict=True):
            add(f"local-only {name}", _auc(yt, _trained(d, seed, train, lr_local).score(Xt)))
        add("centralised", _auc(yt, _trained(d, seed, np.vstack(trains), lr_central).score(Xt)))
        for rule in ("fedavg", "fedmedian"):
            for poison in (False, True):
                model, sent = _federated(d, seed, trains, rule, rounds, cfg, poison_first=poison)
                add(f"federated {rule}{' + poisoned site' if poison else ''}", _auc(yt, model.score(Xt)))
                bytes_round = sent[0]
        if (c_rounds, c_epochs, c_lr) != (rounds, epochs, lr_fed):
            model, _ = _federated(d, seed, trains, "fedavg", c_rounds, cheap)
            add(f"federated fedavg, {c_rounds} x {c_epochs}, lr {c_lr:g}", _auc(yt, model.score(Xt)))
        for clip, z in ((5.0, 0.0), (5.0, 1.0), (5.0, 2.0)):
            dp = {**cheap, "clip_norm": clip, "noise_multiplier": z}
            model, _ = _federated(d, seed, trains, "fedavg", c_rounds, dp)
            eps = f"eps={gaussian_epsilon(z, c_rounds, 1e-5):.1f}, delta=1e-5" if z else "no DP"
            add(f"federated fedavg {c_rounds} rounds, clip {clip} noise x{z} ({eps})", _auc(yt, model.score(Xt)))
    _print(res, seeds)
    gap = np.mean(res["centralised"]) - np.mean(res["federated fedavg"])
    print(f"  centralised - federated fedavg: {gap:+.4f} ROC-AUC (target: within 0.02)")
    print(
        f"  bytes a site sends per round: {bytes_round:,} (the same received), {rounds} rounds; raw conn.log sizes: "
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
        for rule in ("fedavg", "fedmedian", "trimmed"):
            for poison in (False, True):
                pairs = [(m.get_arrays(), n) for m, n in results]
                if poison:
                    start = ActionNB().get_arrays()[0]
                    pairs[0] = ([start + POISON * (pairs[0][0][0] - start)], pairs[0][1])
                merged = ActionNB()
                merged.set_arrays(aggregate(rule, pairs, beta=0.2))  # trimmed: 1 of 5 cut at each end
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
