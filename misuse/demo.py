"""The demo runs behind ``make demo`` and ``misuse demo``: simulate (or read IoT-23) -> ingest -> train ->
detect -> evaluate against ground truth -> HTML report. Everything takes explicit arguments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.errors import ParseError
from misuse.eval.metrics import binary_metrics, incident_metrics
from misuse.events import is_malicious_label
from misuse.pipeline import detect, train
from misuse.profiles.check import profile_alerts, refine_types
from misuse.profiles.profile import ProfileBook
from misuse.report.html import write_report
from misuse.store.duck import Store
from misuse.workflows import Tick, ingest_files

IOT23_MALWARE = "CTU-IoT-Malware-Capture-34-1/bro/conn.log.labeled"
IOT23_BENIGN = (
    "CTU-Honeypot-Capture-4-1/bro/conn.log.labeled",
    "CTU-Honeypot-Capture-5-1/bro/conn.log.labeled",
)


@dataclass
class DemoResult:
    """What a demo run produced."""

    title: str
    alerts: list[Alert]
    metrics: dict[str, Any]
    report: Path
    project: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (alerts by type, metrics, paths)."""
        by_type: dict[str, int] = {}
        for a in self.alerts:
            by_type[a.misuse_type] = by_type.get(a.misuse_type, 0) + 1
        return {
            "title": self.title,
            "alerts": len(self.alerts),
            "alerts_by_type": by_type,
            "metrics": self.metrics,
            "report": str(self.report),
            "project": str(self.project),
        }


def _window_eval(scored: pd.DataFrame) -> dict[str, Any]:
    lab = scored[scored["label"].notna()]
    if lab.empty:
        return {}
    y = lab["label"].map(is_malicious_label).to_numpy(dtype=int)
    return binary_metrics(y, lab["score"].to_numpy(), lab["alarm"].to_numpy(dtype=bool))


def run_synthetic(
    out: Path,
    *,
    seed: int = 7,
    days: int = 4,
    window: float = 300.0,
    target_fpr: float = 0.01,
    detector: str = "iforest",
    tick: Tick | None = None,
) -> DemoResult:
    """Simulate a site, learn its clean days, detect on the attack day, score against the truth.

    Two detectors run on the attack day: the per-entity window model over every event (its alerts
    are typed from what drove them), and the people's profiles over their commands
    (:func:`~misuse.profiles.check.profile_alerts`), which say *who* acts: their warnings are alerts
    of their own and give their type to the window alerts they overlap.
    """
    from misuse.simulate import simulate_site, write_site

    out.mkdir(parents=True, exist_ok=True)
    site = simulate_site(seed=seed, days=days)
    files = write_site(site, out / "site")
    store = Store(out / "project")
    try:
        # syslog lines carry no year: tell the auth-log reader the simulated one
        year = int(str(site.params.start)[:4])
        formats = {"conn": ("zeek", {}), "auth": ("authlog", {"year": year}), "app": ("events-jsonl", {})}
        for i, (key, (fmt, opts)) in enumerate(formats.items()):
            ingest_files(store, [files[key]], "site", fmt=fmt, options=opts, append=i > 0, tick=tick)
        events = store.events("site")
        truth = pd.read_csv(files["truth"])
        split = pd.Timestamp(events["ts"].min()).normalize() + pd.Timedelta(days=days - 1)
        model = train(events[events["ts"] < split], window=window, target_fpr=target_fpr, seed=seed, detector=detector)
        model.save(store.model_dir("demo"))
        store.register_model("demo", "window", model.info)
        alerts, scored = detect(model, events[events["ts"] >= split], detector_name=f"window-{detector}")
        # who acts: the people's commands against their own profiles (impersonation, insider, inadvertent)
        commands = events[events["kind"] == "command"]
        book = ProfileBook().learn(commands[commands["ts"] < split])
        book.save(store, "site")
        warnings = profile_alerts(book, commands[commands["ts"] >= split], kinds=("command",))
        alerts = refine_types(alerts, warnings) + warnings
        store.clear_alerts("site", "demo")
        store.add_alerts(alerts, dataset="site", model="demo")
        adf = pd.DataFrame([a.to_dict() for a in alerts])
        metrics = {
            "incidents": incident_metrics(adf, truth),
            "windows": _window_eval(scored),
            "train_until": str(split),
            "seed": seed,
            "window_s": window,
            "target_fpr": target_fpr,
        }
        report = write_report(out / "report.html", "misuse demo: simulated IoT site", alerts, metrics)
        (out / "summary.json").write_text(json.dumps(metrics, indent=2, default=str))
        return DemoResult("simulated IoT site", alerts, metrics, report, store.root)
    finally:
        store.close()


def run_iot23(
    data: Path,
    out: Path,
    *,
    window: float = 60.0,
    target_fpr: float = 0.01,
    seed: int = 0,
    detector: str = "iforest",
    tick: Tick | None = None,
) -> DemoResult:
    """IoT-23 Mirai scenario 34-1: learn benign honeypot flows and 34-1 before infection; detect on the rest.

    The infection time is the first flow labelled malicious (the dataset's protocol: train on benign
    time before infection). Flow-level recall counts malicious flows inside alerted windows.
    """
    malware = data / IOT23_MALWARE
    if not malware.exists():
        raise ParseError(f"not an IoT-23 folder: {IOT23_MALWARE} is missing", source=str(data))
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "project")
    try:
        ingest_files(store, [malware], "iot23-34-1", tick=tick)
        benign = [data / p for p in IOT23_BENIGN if (data / p).exists()]
        if benign:
            ingest_files(store, benign, "iot23-honeypots", tick=tick)
        ev = store.events("iot23-34-1")
        mal = ev["label"].map(is_malicious_label)
        infection = ev.loc[mal, "ts"].min()
        train_ev = pd.concat(
            [store.events("iot23-honeypots"), ev[ev["ts"] < infection]] if benign else [ev[ev["ts"] < infection]],
            ignore_index=True,
        )
        model = train(train_ev, window=window, target_fpr=target_fpr, seed=seed, benign_only=True, detector=detector)
        model.save(store.model_dir("iot23"))
        store.register_model("iot23", "window", model.info)
        test = ev[ev["ts"] >= infection]
        alerts, scored = detect(model, test, detector_name=f"window-{detector}")
        store.clear_alerts("iot23-34-1", "iot23")
        store.add_alerts(alerts, dataset="iot23-34-1", model="iot23")
        metrics: dict[str, Any] = {
            "windows": _window_eval(scored),
            "flows": _flow_eval(test, scored),
            "infection": str(infection),
        }
        first = min((a.window_start for a in alerts if _is_infected(a, test)), default=None)
        # a window may start before the first malicious flow it holds: the delay is then 0
        metrics["first_alert_delay_s"] = (
            max(0.0, (pd.Timestamp(first) - infection).total_seconds()) if first is not None else None
        )
        report = write_report(out / "report.html", "misuse demo: IoT-23 Mirai 34-1", alerts, metrics)
        (out / "summary.json").write_text(json.dumps(metrics, indent=2, default=str))
        return DemoResult("IoT-23 34-1", alerts, metrics, report, store.root)
    finally:
        store.close()


def _is_infected(a: Alert, test: pd.DataFrame) -> bool:
    rows = test[(test["entity"] == a.entity)]
    return bool(rows["label"].map(is_malicious_label).any())


def _flow_eval(test: pd.DataFrame, scored: pd.DataFrame) -> dict[str, Any]:
    """Flow-level recall and false-positive rate: a flow is flagged when its window alarmed."""
    if scored.empty:
        return {}
    w = scored["window_end"].iloc[0] - scored["window_start"].iloc[0]
    secs = w.total_seconds()
    ts = test["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    key = pd.DataFrame({"entity": test["entity"].to_numpy(), "w": np.floor(ts / secs) * secs})
    alarmed = scored.loc[scored["alarm"], ["entity", "window_start"]].copy()
    alarmed["w"] = alarmed["window_start"].astype("int64") / 1e9
    flagged = key.merge(alarmed[["entity", "w"]].assign(hit=True), on=["entity", "w"], how="left")["hit"]
    flagged = flagged.fillna(False).to_numpy(dtype=bool)
    y = test["label"].map(is_malicious_label).to_numpy(dtype=bool)
    return {
        "malicious_flows": int(y.sum()),
        "benign_flows": int((~y).sum()),
        "recall": float(flagged[y].mean()) if y.any() else None,
        "fpr": float(flagged[~y].mean()) if (~y).any() else None,
    }
