"""Adaptive response on held-out streams: the learned policy vs a static threshold and a rulebook.

Streams (data under ``$MISUSE_DATA_DIR``, default ``shared/data`` beside the repository, whatever
the current directory):

* simulator: train seeds 1-4, held-out seeds 11-13 (3 days, scale 0.3, 300 s windows; the window
  model learns the clean days, the replay is the attack day).
* IoT-23 34-1 (60 s windows): the window model learns honeypots 4-1, 5-1 and 34-1 before its
  first malicious flow; the flows from the infection on are split at their middle in time:
  first half trains, second half is held out.
* MQTTset (10 s windows): the window model learns ``benign-5mb-train``; the ``-train`` captures
  (benign, then each attack) train, the ``-test`` captures are held out.

One policy is trained on all training streams for a fixed number of epochs (no selection on
the held-out streams; their cost per epoch is plotted only). Figures per held-out stream:
total cost (stated costs of :class:`misuse.response.env.Costs`), attack windows contained /
alerted / missed, false alarms and benign windows disrupted, for the bandit (mean and range over
the exploration seeds), the static threshold policy (alert at fused risk 0.5), the same policy
with its threshold and action (alert, rate-limit or quarantine) tuned for lowest cost on the
training streams, and the rulebook (alert at every alert, rate-limit and quarantine at the P90
and P99 of the training alerts' fused risk, ``RulebookPolicy.from_replays``). Every policy
decides at the same points: the windows that raised an alert (``ResponseEnv``).

The rulebook's rung levels are printed beside three other level sets on the training streams
(the choice was made there, never on the held-out streams).

Last, ``apply`` is run on stored alerts: the held-out simulator day of seed 11 is stored with
the same window model its replay uses, the model's alerts on it are stored, and the first
bandit's observations of them are compared with the replay's observations of the same windows:
as ``apply`` computes them for alerts of a stored window model (over every window), and as its
fallback for other alerts does (history over the alerted windows, window features from the
alert's contributions); and the decision points of ``apply`` (dry run) are compared with the
replay's.

Usage::

    python benchmarks/response.py [--epochs 8] [--seeds 0,1,2] [--png PATH]   # PNG default: out/ of the repo
    python benchmarks/response.py --quick    # 2 epochs, one exploration seed (under a minute)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.response.baselines import RULEBOOK_LEVELS, RulebookPolicy, StaticThresholdPolicy
from misuse.response.env import ACTIONS, OBS_FEATURES, QUARANTINE, RATE_LIMIT, Costs, ResponseEnv
from misuse.response.policy import BanditPolicy, evaluate_policy
from misuse.response.replay import SOURCES, Replay, streams

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MISUSE_DATA_DIR", REPO.parent / "shared" / "data"))


def _total(outs: list[Any]) -> float:
    return float(sum(o.total_cost for o in outs))


def main() -> None:
    """Build the replays, train, evaluate, print, plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, help="passes over the training streams (default 8, 2 with --quick)")
    ap.add_argument("--seeds", help="exploration seeds of the bandit (default 0,1,2; 0 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a short run: 2 epochs, one exploration seed")
    ap.add_argument("--png", type=Path, default=REPO / "out" / "response_learning.png", help="(out/ is gitignored)")
    ap.add_argument("--sources", default=",".join(SOURCES))
    args = ap.parse_args()
    args.epochs = args.epochs or (2 if args.quick else 8)
    args.seeds = args.seeds or ("0" if args.quick else "0,1,2")
    root = DATA
    if any(s != "sim" for s in args.sources.split(",")) and not root.is_dir():
        raise SystemExit(f"benchmarks/response.py: data folder {root} not found (set MISUSE_DATA_DIR)")
    print(f"data: {root}; epochs {args.epochs}; exploration seeds {args.seeds}{' (--quick)' if args.quick else ''}")
    t0 = time.time()
    train: list[Replay] = []
    held: list[Replay] = []
    for s in args.sources.split(","):
        train += streams(s, "train", root)
        held += streams(s, "held-out", root)
    print(f"costs: {Costs()}")
    for label, rs in (("train", train), ("held-out", held)):
        for r in rs:
            print(
                f"{label:9s} {r.name:26s} windows {len(r.frame):5d}  entities {r.frame['entity'].nunique():3d}  "
                f"attack windows {r.attack_windows:4d}  alerted windows (decision points) {r.alerts:4d}, "
                f"of them attack {int((r.frame['alerted'] & r.frame['malicious']).sum()):4d}"
            )
    print(f"replays built in {time.time() - t0:.0f}s")

    curves: dict[int, list[dict[str, Any]]] = {}
    policies: dict[int, BanditPolicy] = {}
    train_cost: dict[str, float] = {}
    final: dict[str, list[list[Any]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        t1 = time.time()
        pol = BanditPolicy(seed=seed).fit(
            ResponseEnv(train),
            epochs=args.epochs,
            evaluate=lambda p, _e: {
                "train_cost": _total(evaluate_policy(p.act, train)),
                "held_out_cost": _total(evaluate_policy(p.act, held)),
            },
        )
        curves[seed] = pol.history_
        policies[seed] = pol
        final.setdefault("bandit", []).append(evaluate_policy(pol.act, held))
        print(f"seed {seed}: trained in {time.time() - t1:.0f}s; decisions learned per action {pol.n_.tolist()}")
    t1 = time.time()
    tuned = StaticThresholdPolicy.tuned(train)
    book = RulebookPolicy.from_replays(train)
    print(f"static threshold tuned on the training streams in {time.time() - t1:.0f}s: {tuned.describe()}")
    print(f"rulebook on the training streams: {book.describe()}")
    for levels in ((0.25, 0.75), (0.5, 0.9), (0.75, 0.95), (0.9, 0.99)):
        other = RulebookPolicy.from_replays(train, levels)
        cost, held_cost = _total(evaluate_policy(other.act, train)), _total(evaluate_policy(other.act, held))
        print(
            f"  rulebook at quantiles {levels} of training alerts' risk: training cost {cost:,.0f} "
            f"(held-out {held_cost:,.0f}, shown, not used to choose){'  <- used' if levels == RULEBOOK_LEVELS else ''}"
        )
    baselines: dict[str, StaticThresholdPolicy | RulebookPolicy] = {
        "static-threshold": StaticThresholdPolicy(),
        "static-tuned": tuned,
        "rulebook": book,
    }
    for name, base in baselines.items():
        final[name] = [evaluate_policy(base.act, held)]
        train_cost[name] = _total(evaluate_policy(base.act, train))

    print("\nheld-out streams (bandit: mean [min, max] over seeds)")
    head = f"{'stream':26s} {'policy':17s} {'total cost':>22s} {'contained':>16s} {'alerted':>8s} {'missed':>7s}"
    print(head + f" {'false alarms':>12s} {'disrupted':>9s}")
    for k, r in enumerate(held):
        for name, runs in final.items():
            outs = [run[k] for run in runs]
            cost = np.array([o.total_cost for o in outs])
            cont = np.array([o.contained for o in outs])
            spread = f" [{cost.min():.0f}, {cost.max():.0f}]" if len(outs) > 1 else ""
            print(
                f"{r.name:26s} {name:17s} {cost.mean():>10.1f}{spread:>12s} "
                f"{cont.mean():>7.1f}/{r.attack_windows:<8d} {np.mean([o.detected for o in outs]):>8.1f} "
                f"{np.mean([o.missed for o in outs]):>7.1f} {np.mean([o.false_alarms for o in outs]):>12.1f} "
                f"{np.mean([o.disrupted for o in outs]):>9.1f}"
            )
    print("\ntotal over held-out streams")
    for name, runs in final.items():
        totals = [_total(run) for run in runs]
        contained = [sum(o.contained for o in run) for run in runs]
        print(
            f"{name:17s} cost {np.mean(totals):9.1f} (per seed {[round(x) for x in totals]})  "
            f"attack windows contained {np.mean(contained):.1f}/{sum(r.attack_windows for r in held)}"
        )
    print("\ntotal over training streams (bandit: after the last epoch)")
    for seed, hist in curves.items():
        print(f"bandit seed {seed:<5d} cost {hist[-1]['train_cost']:9.1f}")
    for name, level in train_cost.items():
        print(f"{name:17s} cost {level:9.1f}")
    _plot(curves, final, train_cost, args.png)
    print(f"\nlearning curves: {args.png}")
    if "sim" in args.sources.split(","):
        seed = min(policies)
        apply_history(policies[seed], seed)
    print(f"\ntotal {time.time() - t0:.0f}s")


def apply_history(pol: BanditPolicy, pol_seed: int, sim_seed: int = 11) -> None:
    """Observations of stored alerts at apply time against the replay's of the same windows."""
    from misuse.pipeline import detect, train
    from misuse.response.actions import apply, contained_entities
    from misuse.response.observe import HISTORY, observe
    from misuse.response.replay import replay_from_events
    from misuse.simulate import simulate_site
    from misuse.store.duck import Store

    site = simulate_site(seed=sim_seed, days=3, scale=0.3)  # as simulated_replay builds sim-11
    events = site.events()
    lo, _hi = site.day_bounds(site.params.attack_day)
    model = train(events[events["ts"] < lo], window=300.0, seed=sim_seed, benign_only=True)
    day = events[events["ts"] >= lo]
    replay = replay_from_events(f"sim-{sim_seed}", model, day)
    env = ResponseEnv([replay])
    where = {(e, int(t)): i for i, (e, t) in enumerate(zip(replay.frame["entity"], replay.frame["t"], strict=True))}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / ".misuse")
        store.write_events("attack-day", [day], sources=["simulator"])
        model.save(store.model_dir("wm"))
        store.register_model("wm", "window", model.info)
        found, _ = detect(model, day, detector_name="window-iforest")
        store.add_alerts(found, dataset="attack-day", model="wm")
        alerts = store.alerts()
        held = contained_entities(store)
        by_windows, sources = observe(store, alerts, 300.0, held)
        by_alerts, _ = observe(store, alerts.drop(columns=["model"]), 300.0, held)
        skipped: list[dict[str, Any]] = []
        applied = apply(store, pol, "bandit", window=300.0, dry_run=True, skipped=skipped)
        store.close()
    starts = (alerts["window_start"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    rows = [where[(e, int(s // 300))] for e, s in zip(alerts["entity"], starts, strict=True)]
    trained = np.array([env.observation(i) for i in rows])
    attack = replay.frame["malicious"].to_numpy(bool)[rows]
    cols = [OBS_FEATURES.index(h) for h in HISTORY]
    print(
        f"\napply on stored alerts: sim-{sim_seed} attack day, {len(alerts)} alerts of its window model on "
        f"{alerts['entity'].nunique()} entities ({attack.sum()} in attack windows); bandit seed {pol_seed}; "
        f"observed over every window for {sources.count('windows')} of them"
    )
    print(f"{'feature (mean)':16s} {'replay (training)':>18s} {'apply: windows':>15s} {'apply: alerts only':>19s}")
    for h, c in zip(HISTORY, cols, strict=True):
        print(f"{h:16s} {trained[:, c].mean():>18.3f} {by_windows[:, c].mean():>15.3f} {by_alerts[:, c].mean():>19.3f}")
    for label, obs in (("windows", by_windows), ("alerts only", by_alerts)):
        history = np.isclose(obs[:, cols], trained[:, cols]).all(axis=1).sum()
        whole = np.isclose(obs, trained, equal_nan=True).all(axis=1).sum()
        decided = [pol.explain(x) for x in obs]
        counts = {ACTIONS[a]: n for a in range(len(ACTIONS)) if (n := sum(d[0] == a for d in decided))}
        contained = sum(d[0] in (RATE_LIMIT, QUARANTINE) for d, m in zip(decided, attack, strict=True) if m)
        cite = sum(any(c.feature in ("risk_ema", "streak") for c in because) for _a, because in decided)
        print(
            f"apply ({label}): history equal to the replay's for {history}, whole observation for {whole}; "
            f"actions {counts}; attack alerts contained {contained}/{attack.sum()}; "
            f"risk_ema or streak among the stated reasons for {cite}"
        )
    # the decision points of the replay and of apply: the same (entity, window)s, with the same actions
    seen = []
    obs, _ = env.reset(options={"replay": 0})
    done = env.current_row is None
    while not done:
        row = env.current_row
        a = pol.act(obs)
        seen.append((str(env._ent[row]), int(env._t[row]), ACTIONS[a], bool(env._mal[row])))
        obs, _r, done, _t, _i = env.step(a)
    by_id = dict(zip(alerts["alert_id"], starts, strict=True))
    at_apply = [(d["entity"], int(by_id[d["alert_id"]] // 300), d["action"]) for d in applied]
    same_points = [s[:2] for s in seen] == [a[:2] for a in at_apply]
    same_actions = sum(s[2] == a[2] for s, a in zip(seen, at_apply, strict=False))
    counts = {ACTIONS[a]: sum(s[2] == ACTIONS[a] for s in seen) for a in range(len(ACTIONS))}
    print(
        f"replay sim-{sim_seed}: {len(seen)} decision points (alerted windows not held or muted), "
        f"actions {counts}; apply (dry run) decides {len(applied)} alerts, skips {len(skipped)} held or muted; "
        f"same (entity, window)s as the replay: {same_points}; same action at {same_actions} "
        f"(verdicts arrive at once in the replay and not in the store, so fp_rate / tp_rate may differ)"
    )
    contained = sum(s[2] in ("rate_limit", "quarantine") for s in seen if s[3])
    print(
        f"replay sim-{sim_seed}: attack windows among decision points {sum(s[3] for s in seen)}, contained {contained}"
    )


def _plot(
    curves: dict[int, list[dict[str, Any]]],
    final: dict[str, list[list[Any]]],
    train_cost: dict[str, float],
    png: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((axes[0], "train_cost", "training streams"), (axes[1], "held_out_cost", "held-out streams")):
        for seed, hist in curves.items():
            ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], marker="o", label=f"bandit seed {seed}")
        for name, style in (("static-threshold", "--"), ("static-tuned", ":"), ("rulebook", "-.")):
            level = train_cost[name] if key == "train_cost" else _total(final[name][0])
            ax.axhline(level, linestyle=style, color="grey", label=name)
        ax.set_title(f"total cost, {title}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("total cost")
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
