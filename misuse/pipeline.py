"""The first detection path end to end: events -> window features -> detector -> threshold -> alerts.

:class:`WindowModel` bundles what was learned (per-entity baselines, the detector, the threshold
calibrated on held-out training windows) so that ``detect`` applies exactly what ``train`` fitted.
Everything takes explicit arguments; only the CLI and the service read configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.classify import classify_window
from misuse.alerts.model import Alert
from misuse.detectors.base import Detector
from misuse.detectors.registry import load_detector, make_detector
from misuse.detectors.threshold import FPRThreshold, Threshold
from misuse.errors import InvalidParameterError, SchemaError
from misuse.events import is_malicious_label
from misuse.features.windows import (
    EntityBaseline,
    KnownSets,
    display_value,
    evidence_mask,
    feature_columns,
    window_features,
)

MAX_EVIDENCE = 50
#: progress callback: called with how many more units are done (not a running total)
Progress = Callable[[int], None]


@dataclass
class WindowModel:
    """A trained window-feature model: baselines + detector + threshold + settings."""

    detector: Detector
    threshold: Threshold
    baseline: EntityBaseline
    known: KnownSets
    window: float
    info: dict[str, Any]

    def features(self, events: pd.DataFrame) -> pd.DataFrame:
        """Window features of ``events`` with novelty and per-entity deviations."""
        return self.baseline.transform(window_features(events, self.window, self.known))

    def save(self, folder: Path) -> Path:
        """Save to a folder (JSON + npz, no pickle)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.detector.save(folder / "detector")
        self.baseline.to_json(folder / "baseline.json")
        (folder / "known.json").write_text(json.dumps(self.known.to_dict()))
        meta = {"window": self.window, "threshold": self.threshold.to_dict(), "info": self.info}
        (folder / "model.json").write_text(json.dumps(meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path) -> WindowModel:
        """Load what :meth:`save` wrote."""
        if not (folder / "model.json").exists():
            raise SchemaError(f"{folder}: not a saved model (model.json missing)")
        meta = json.loads((folder / "model.json").read_text())
        return cls(
            detector=load_detector(folder / "detector"),
            threshold=Threshold.from_dict(meta["threshold"]),
            baseline=EntityBaseline.from_json(folder / "baseline.json"),
            known=KnownSets.from_dict(json.loads((folder / "known.json").read_text())),
            window=float(meta["window"]),
            info=meta["info"],
        )


def train(
    events: pd.DataFrame,
    *,
    window: float = 60.0,
    target_fpr: float = 0.01,
    detector: str = "iforest",
    seed: int = 0,
    benign_only: bool = False,
    calibration_fraction: float = 0.3,
) -> WindowModel:
    """Learn a window model from historic events.

    Parameters
    ----------
    events:
        Training events (the columnar event form). Assumed normal unless ``benign_only``.
    window:
        Window length in seconds.
    target_fpr:
        False-positive rate the threshold aims at, measured on held-out training windows.
    detector:
        Registered detector name (see :func:`misuse.detectors.registry.available`).
    seed:
        Seed for the detector and the fit/calibration split.
    benign_only:
        Drop windows whose events carry an attack label (for labelled training data).
    calibration_fraction:
        Share of training windows held out to set the threshold.
    """
    if not 0.0 < calibration_fraction < 1.0:
        raise InvalidParameterError(
            f"The 'calibration_fraction' parameter must be in (0, 1). Got {calibration_fraction!r} instead."
        )
    if benign_only:
        events = events[~events["label"].map(is_malicious_label)]
    known = KnownSets.learn(events)
    wins = window_features(events, window, known)
    if len(wins) < 20:
        raise SchemaError(f"training needs at least 20 windows of {window:g}s, got {len(wins)}")
    baseline = EntityBaseline().fit(wins)
    feats = baseline.transform(wins)
    cols = feature_columns(feats)
    rng = np.random.default_rng(seed)
    calib = rng.random(len(feats)) < calibration_fraction
    det = make_detector(detector, seed=seed)
    det.learn_many(feats.loc[~calib, cols])
    thr = FPRThreshold(target_fpr).fit(det.score_many(feats.loc[calib, cols]))
    info = {
        "detector": detector,
        "seed": seed,
        "target_fpr": target_fpr,
        "train_windows": int((~calib).sum()),
        "calibration_windows": int(calib.sum()),
        "entities": int(wins["entity"].nunique()),
        "train_start": str(events["ts"].min()),
        "train_end": str(events["ts"].max()),
        "features": cols,
    }
    return WindowModel(det, thr, baseline, known, window, info)


def score_windows(model: WindowModel, events: pd.DataFrame) -> pd.DataFrame:
    """Window features of ``events`` with ``score`` and ``alarm`` columns."""
    feats = model.features(events)
    if len(feats) == 0:
        return feats.assign(score=[], alarm=[])
    scores = model.detector.score_many(feats[feature_columns(feats)])
    return feats.assign(score=scores, alarm=model.threshold.is_alarm(scores))


def detect(
    model: WindowModel,
    events: pd.DataFrame,
    *,
    detector_name: str = "window-iforest",
    progress: Progress | None = None,
) -> tuple[list[Alert], pd.DataFrame]:
    """Score ``events`` and turn windows above the threshold into explained alerts.

    Returns the alerts and the scored windows (for evaluation).
    """
    scored = score_windows(model, events)
    alarms = scored[scored["alarm"]] if len(scored) else scored
    cols = feature_columns(model.features(events.iloc[:0])) if len(scored) == 0 else model.detector.features_
    alerts: list[Alert] = []
    by_entity = {e: g for e, g in events.groupby("entity", sort=False)} if len(alarms) else {}
    for _, row in alarms.iterrows():
        alerts.append(_alert(model, row, by_entity[row["entity"]], cols, detector_name))
        if progress is not None:
            progress(1)
    return alerts, scored


def _alert(model: WindowModel, row: pd.Series, entity_events: pd.DataFrame, cols: list[str], name: str) -> Alert:
    x = {c: row[c] for c in cols if c in row.index}
    contribs = model.detector.explain_one(x, top=5)
    mask = evidence_mask(entity_events, row["entity"], row["window_start"], row["window_end"])
    window_events = entity_events[mask]
    own = model.baseline.medians_.get(str(row["entity"]), {})
    population = dict(zip(model.detector.features_, model.detector.median_, strict=True))
    readable: list[dict[str, Any]] = []
    for c in contribs:
        base = c.feature[4:] if c.feature.startswith("dev:") else c.feature
        actual = float(row.get(base, c.actual))
        if base in own:
            typical, basis = own[base], "this entity"
        elif base in population:
            typical, basis = population[base], "all entities"
        else:
            typical, basis = c.typical, "all entities"
        readable.append(
            {
                "feature": base,
                "typical": display_value(base, float(typical)),
                "actual": display_value(base, actual),
                "weight": round(c.weight, 4),
                "baseline": basis,
            }
        )
    mtype, reason = classify_window(
        window_events, [c.feature for c in contribs], own, model.known.peers.get(str(row["entity"]), set())
    )
    score = float(row["score"])
    drivers = ", ".join(
        f"{r['feature']} {r['actual']:.3g} vs typical {r['typical']:.3g}"
        for r in readable[:3]
        if np.isfinite(r["typical"])
    )
    summary = f"{row['entity']}: {reason}" + (f"; drivers: {drivers}" if drivers else "")
    return Alert(
        entity=str(row["entity"]),
        window_start=row["window_start"].to_pydatetime(),
        window_end=row["window_end"].to_pydatetime(),
        score=score,
        threshold=model.threshold.threshold_,
        severity=model.threshold.severity(score),
        misuse_type=mtype.value,
        detector=name,
        summary=summary,
        contributions=readable,
        evidence=window_events["event_id"].astype(str).head(MAX_EVIDENCE).tolist(),
    )
