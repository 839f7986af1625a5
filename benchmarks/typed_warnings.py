"""Typed profile warnings on simulated sites the rules were not developed on.

For each seed: ``misuse.simulate.simulate_site(seed, days=4)``; the people's commands of the three
clean days train one profile per account (``ProfileBook``), the attack day's commands are assessed in
1 h windows (``misuse.profiles.check.profile_alerts``, default ``WarningRules``). Each site carries one
injected impersonation, insider misuse and inadvertent misuse (ground truth: the simulator's
truth table). Printed: per type, incidents detected (an alert on the victim overlapping the incident)
and detected with the right type (the first overlapping alert's type); alerts that overlap no
incident (false alarms) per attack day.

Seeds 31-50 by default. The rules' thresholds and decision order were settled on seeds 1-21 (seed 7
is the demo's); none of those is used here.

Run: .venv/bin/python benchmarks/typed_warnings.py [--seeds 31-50]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import pandas as pd

from misuse.profiles.check import profile_alerts
from misuse.profiles.profile import ProfileBook
from misuse.simulate import simulate_site

PEOPLE = ("impersonation", "insider_misuse", "inadvertent_misuse")


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def run(seed: int) -> tuple[Counter[str], Counter[str], int, int]:
    site = simulate_site(seed=seed, days=4)
    ev = site.commands
    split = pd.Timestamp(ev["ts"].min()).normalize() + pd.Timedelta(days=3)
    book = ProfileBook().learn(ev[ev["ts"] < split])
    test = ev[ev["ts"] >= split]
    alerts = profile_alerts(book, test)
    truth = site.truth[site.truth["type"].isin(PEOPLE)]
    detected: Counter[str] = Counter()
    typed: Counter[str] = Counter()
    on_incident = 0
    for a in alerts:
        on_incident += any(
            a.entity == t.victim and a.window_start <= pd.Timestamp(t.end) and pd.Timestamp(t.start) < a.window_end
            for t in truth.itertuples()
        )
    for t in truth.itertuples():
        hits = sorted(
            (a for a in alerts if a.entity == t.victim and a.window_start <= pd.Timestamp(t.end)
             and pd.Timestamp(t.start) < a.window_end),
            key=lambda a: a.window_start,
        )  # fmt: skip
        if hits:
            detected[t.type] += 1
            typed[t.type] += hits[0].misuse_type == t.type
    return detected, typed, len(alerts) - on_incident, len(test)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="31-50", help="seed range, e.g. 31-50")
    args = ap.parse_args()
    seeds = _seeds(args.seeds)
    t0 = time.time()
    detected: Counter[str] = Counter()
    typed: Counter[str] = Counter()
    false, events = 0, 0
    for s in seeds:
        d, t, f, n = run(s)
        detected.update(d)
        typed.update(t)
        false += f
        events += n
    n = len(seeds)
    print(f"typed profile warnings on {n} simulated sites (seeds {seeds[0]}-{seeds[-1]}), 1 h windows")
    print(f"{'incident type':22s} {'incidents':>9s} {'detected':>9s} {'right type':>11s}")
    for kind in PEOPLE:
        print(f"{kind:22s} {n:9d} {detected[kind]:9d} {typed[kind]:11d}")
    print(
        f"false alarms (alerts on no incident): {false} on {n} attack days "
        f"({false / n:.2f} per day; {events:,} commands assessed)"
    )
    print(f"total {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
