"""Adaptive response on held-out streams: the learned policy vs a static threshold and a rulebook.

Streams (data under ``$MISUSE_DATA_DIR``, default ``../shared/data``):

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
training streams, and the rulebook with its rungs at the P90 / P95 / P99 quantiles of the training
streams' fused risk (``RulebookPolicy.from_replays``).

Usage::

    python benchmarks/response.py [--epochs 8] [--seeds 0,1,2] [--png out/response_learning.png]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from misuse.response.baselines import RulebookPolicy, StaticThresholdPolicy
from misuse.response.env import Costs, ResponseEnv
from misuse.response.policy import BanditPolicy, evaluate_policy
from misuse.response.replay import SOURCES, Replay, streams


def _total(outs: list[Any]) -> float:
    return float(sum(o.total_cost for o in outs))


def main() -> None:
    """Build the replays, train, evaluate, print, plot."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2", help="exploration seeds of the bandit")
    ap.add_argument("--png", type=Path, default=Path("out/response_learning.png"), help="(out/ is gitignored)")
    ap.add_argument("--sources", default=",".join(SOURCES))
    args = ap.parse_args()
    root = Path(os.environ.get("MISUSE_DATA_DIR", "../shared/data"))
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
                f"attack windows {r.attack_windows:4d}"
            )
    print(f"replays built in {time.time() - t0:.0f}s")

    curves: dict[int, list[dict[str, Any]]] = {}
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
        final.setdefault("bandit", []).append(evaluate_policy(pol.act, held))
        print(f"seed {seed}: trained in {time.time() - t1:.0f}s; decisions learned per action {pol.n_.tolist()}")
    t1 = time.time()
    tuned = StaticThresholdPolicy.tuned(train)
    book = RulebookPolicy.from_replays(train)
    print(f"static threshold tuned on the training streams in {time.time() - t1:.0f}s: {tuned.describe()}")
    print(f"rulebook on the training streams: {book.describe()}")
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
    print(f"\nlearning curves: {args.png}  (total {time.time() - t0:.0f}s)")


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
