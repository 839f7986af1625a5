"""Profiles of devices and homes, evaluated by realistic injection into held-out days.

Datasets (read-only, ../shared/data or MISUSE_DATA_DIR):
- kasteren-smarthome: entity = home (houseA..E), action = the sensor that fired, time = its start.
- iot-on-demand/labels: entity = device, action = its logged event (lock, unlock, motion...), time =
  the local wall-clock stamp as written (timezone unknown; only hours relative to the same clock matter).

Split per entity, by calendar day: first 50% of its days train the profiles (ProfileBook + naive Bayes
over all entities), next 30% calibrate (a view alarms when its score exceeds the median of the clean calibration
days by more than MARGIN times their max - median, per entity and view), last 20% are held out.
Each held-out day is scored clean (false alarms per day)
and with three injections (detection rate):
  shift         the same day's events moved by +12 h (activity at unusual hours)
  impersonation another entity's held-out day presented as this entity's (another home's routine, or a
                device of another model)
  bulk          the day's events repeated 5x within the same hours (bulk activity)
Views scored per day: functional (naive Bayes, this entity vs the rest), temporal (mean surprise of
the events' hours under the profile) and volume (log of the day's event count). A day is flagged when
any view exceeds its threshold; the
warning type comes from misuse.profiles.warnings.WarningRules.

Run: .venv/bin/python benchmarks/devices.py
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.detectors.naive_bayes import NaiveBayesDetector
from misuse.profiles.profile import EntityProfile, ProfileBook
from misuse.profiles.warnings import WarningRules

DATA = Path(os.environ.get("MISUSE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def kasteren() -> pd.DataFrame:
    """All five homes' sensor firings as events."""
    root = DATA / "kasteren-smarthome"
    frames = []
    for house in "ABCDE":
        names = pd.DataFrame(
            [
                line.split("\t", 1)
                for line in (root / f"house{house}.sensor_names").read_text().splitlines()
                if "\t" in line
            ],
            columns=["id", "name"],
        )
        names["id"] = names["id"].astype(int)
        names["name"] = names["name"].str.strip()
        s = pd.read_csv(root / f"house{house}.sensors", sep="\t", header=None, names=["start", "dur", "id"])
        s = s.merge(names, on="id", how="left")
        frames.append(
            pd.DataFrame(
                {
                    "ts": s["start"].astype("float64"),
                    "entity": f"house{house}",
                    "action": s["name"].fillna(s["id"].astype(str)).str.lower(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def iot_on_demand() -> pd.DataFrame:
    """Device events of the iot-on-demand label files (devices with at least 40 events)."""
    root = DATA / "iot-on-demand" / "labels"
    frames = []
    for f in sorted(root.glob("*.csv")):
        df = pd.read_csv(f, header=None, names=["when", "entity", "action"])
        t = pd.to_datetime(df["when"], format="%B %d, %Y at %I:%M:%S%p", errors="coerce")
        t = t.fillna(pd.to_datetime(df["when"], format="%B %d, %Y at %I:%M%p", errors="coerce"))
        frames.append(
            pd.DataFrame(
                {"ts": (t - pd.Timestamp(0)).dt.total_seconds(), "entity": df["entity"], "action": df["action"]}
            )
        )
    out = pd.concat(frames, ignore_index=True).dropna()
    counts = out["entity"].value_counts()
    return out[out["entity"].isin(counts[counts >= 40].index)].reset_index(drop=True)


#: a view alarms when its score lies this many calibration spreads (max - median) above the median
MARGIN = 1.5


def _hour_surprise(p: EntityProfile, ts: np.ndarray) -> float:
    hours = (np.floor(ts / 3600).astype(np.int64)) % 24
    counts = p.temporal.grid.sum(axis=0)
    prob = (counts + 0.5) / (counts.sum() + 12.0)
    return float(-np.log(prob[hours]).mean())


def evaluate(events: pd.DataFrame, name: str) -> None:
    """Train/calibrate/test per entity by day; print detection and false alarms per day."""
    events = events.sort_values("ts").reset_index(drop=True)
    events["day"] = np.floor(events["ts"] / 86400).astype(int)
    split: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for entity, part in events.groupby("entity"):
        days = sorted(part["day"].unique())
        if len(days) < 5:
            continue
        a, b = max(int(len(days) * 0.5), 1), max(int(len(days) * 0.8), 2)
        split[str(entity)] = (days[:a], days[a:b], days[b:])
    train = events[[e in split and d in split[e][0] for e, d in zip(events["entity"], events["day"], strict=True)]]
    book = ProfileBook().learn(train)
    nb = NaiveBayesDetector()
    for entity, part in train.groupby("entity"):
        nb.learn_many(str(entity), part["action"].tolist())
    rules = WarningRules()

    def views(entity: str, day: pd.DataFrame) -> np.ndarray:
        return np.array(
            [
                nb.score_block(entity, day["action"].tolist()),
                _hour_surprise(book[entity], day["ts"].to_numpy()),
                np.log(len(day)),
            ]
        )

    days_of = {k: dict(tuple(v.groupby("day"))) for k, v in events.groupby("entity")}
    centre, scale = {}, {}
    for entity, (_, cal, _) in split.items():
        cal_scores = np.array([views(entity, days_of[entity][d]) for d in cal])
        centre[entity] = np.median(cal_scores, axis=0)
        spread = cal_scores.max(axis=0) - centre[entity]
        scale[entity] = np.where(spread > 1e-9, spread, np.maximum(np.abs(centre[entity]) * 0.1, 1e-3))
    tally: dict[str, list[int]] = {k: [0, 0] for k in ("clean", "shift", "impersonation", "bulk")}
    types: dict[str, Counter[str]] = {k: Counter() for k in tally}
    rng = np.random.default_rng(0)
    entities = sorted(split)
    for entity, (_, _, test) in split.items():
        for d in test:
            day = days_of[entity][d]
            other = rng.choice([e for e in entities if e != entity])
            od = days_of[other][split[other][2][int(rng.integers(len(split[other][2])))]].copy()
            od["ts"] = od["ts"] - od["day"] * 86400 + d * 86400
            od["entity"] = entity
            shifted = day.assign(ts=day["ts"] + 12 * 3600)
            bulk = pd.concat([day.assign(ts=day["ts"] + k) for k in range(5)])
            for kind, window in (("clean", day), ("shift", shifted), ("impersonation", od), ("bulk", bulk)):
                flagged = bool(((views(entity, window) - centre[entity]) / scale[entity] > MARGIN).any())
                tally[kind][0] += int(flagged)
                tally[kind][1] += 1
                if flagged:
                    w = rules.assess(book, entity, window)
                    types[kind][str(w.misuse_type) if w else "anomaly (untyped)"] += 1
    print(f"\n== {name}: {len(split)} entities, {sum(len(s[2]) for s in split.values())} held-out entity-days ==")
    print(
        "split per entity by day: 50% train / 30% calibration / 20% test; a view alarms above median + "
        f"{MARGIN} x (max - median) of its clean calibration days"
    )
    for kind, (hit, n) in tally.items():
        label = "false alarms per day" if kind == "clean" else "detection rate"
        print(f"  {kind:14s} {label:22s} {hit / max(n, 1):6.1%}  ({hit}/{n})  types: {dict(types[kind])}")


def main() -> int:
    """Run both datasets."""
    if not DATA.is_dir():
        print(f"real data not found at {DATA} (set MISUSE_DATA_DIR)")
        return 1
    evaluate(kasteren(), "kasteren-smarthome (homes)")
    evaluate(iot_on_demand(), "iot-on-demand (device event logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
