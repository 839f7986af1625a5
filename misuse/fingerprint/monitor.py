"""Spoofing and takeover: alert when a device's traffic stops matching its fingerprint.

A device is *enrolled* with its device type (and the service ports its type-typical traffic used).
Each new window of its traffic is then compared with the fingerprint:

===========  ===================  ==================================================================
finding      misuse type          when
===========  ===================  ==================================================================
spoofing     impersonation        another type wins the classification, the window lies within
                                  ``max_distance`` radii of that type, and the enrolled type's
                                  probability is under ``min_probability``: another device
                                  behind this address (or a clone of its identity)
takeover     unauthorized_access  the window is more than ``max_distance`` radii from every
                                  training window of the enrolled type *and* uses service ports
                                  the device never used (new protocols after compromise)
drift        anomaly              far from the fingerprint, but no new port and no other type
===========  ===================  ==================================================================

Alerts explain themselves: the features farthest from the type's typical values (typical vs
actual), the probabilities, the new ports, and the window's first packets/flows as evidence.

:meth:`FingerprintMonitor.check` raises one alert per *run*: consecutive windows of one device
with the same finding (the device's next window starting at most one window length after the
previous one ended; a window without that finding ends the run) make one alert spanning them,
with the number of windows, their span and the figures of its strongest window in the summary, a
``consecutive_windows`` contribution and the first packets/flows of the windows as evidence. A
spoofed device seen for a week is one alert, not 176. Runs are grouped within one call (a run
that continues into the next call starts a new alert there). :meth:`FingerprintMonitor.window_alerts`
gives the alerts of the single windows.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType, Severity
from misuse.errors import InvalidParameterError
from misuse.fingerprint.classifier import DeviceClassifier

DETECTOR = "fingerprint"
_DYNAMIC = 49152
_MAX_EVIDENCE = 50  # event ids kept in an alert over several windows


class FingerprintMonitor:
    """Compare each window of an enrolled device with its type's fingerprint.

    Parameters
    ----------
    classifier:
        A fitted :class:`~misuse.fingerprint.classifier.DeviceClassifier`.
    min_probability:
        Spoofing needs the enrolled type's probability below this (and another type on top).
    max_distance:
        Takeover/drift need the window farther than this many radii from the enrolled type.
    max_devices, max_ports:
        Bounds on the state: enrolled devices (least recently seen evicted) and remembered
        service ports per device.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"f.a": np.r_[rng.normal(0, 1, 30), rng.normal(8, 1, 30)]})
    >>> clf = DeviceClassifier(k=3).fit(X, ["cam"] * 30 + ["lock"] * 30)
    >>> mon = FingerprintMonitor(clf)
    >>> mon.enroll("10.0.0.5", "cam")
    >>> w = pd.DataFrame({"device": ["10.0.0.5"], "window_start": [0.0], "units": [50], "f.a": [8.1]})
    >>> [a.misuse_type for a in mon.check(w)]
    ['impersonation']

    Consecutive windows with the same finding are one alert:

    >>> week = pd.DataFrame({"device": "10.0.0.5", "window_start": np.arange(168) * 3600.0, "units": 50, "f.a": 8.0})
    >>> alerts = mon.check(week)
    >>> len(mon.window_alerts(week)), len(alerts), alerts[0].contributions[-1]["actual"]
    (168, 1, 168)
    """

    def __init__(
        self,
        classifier: DeviceClassifier,
        *,
        min_probability: float = 0.2,
        max_distance: float = 3.0,
        max_devices: int = 100_000,
        max_ports: int = 256,
    ) -> None:
        if not 0.0 < min_probability < 1.0:
            raise InvalidParameterError(
                f"The 'min_probability' parameter of FingerprintMonitor must be in (0, 1). Got {min_probability}."
            )
        if not max_distance > 0:
            raise InvalidParameterError(
                f"The 'max_distance' parameter of FingerprintMonitor must be > 0. Got {max_distance}."
            )
        if max_devices < 1 or max_ports < 1:
            raise InvalidParameterError(
                f"FingerprintMonitor bounds must be >= 1. Got max_devices={max_devices}, max_ports={max_ports}."
            )
        classifier._check()
        self.classifier = classifier
        self.min_probability = min_probability
        self.max_distance = max_distance
        self.max_devices = max_devices
        self.max_ports = max_ports
        self._enrolled: OrderedDict[str, tuple[str, set[int]]] = OrderedDict()

    def enroll(self, device: str, device_type: str, windows: pd.DataFrame | None = None) -> None:
        """Record that ``device`` is of ``device_type``.

        Its usual service ports are those its type used in training plus those of its own
        ``windows`` (when given).
        """
        if device_type not in self.classifier.classes_:
            raise InvalidParameterError(
                f"cannot enroll {device!r}: type {device_type!r} is not one the classifier knows "
                f"({self.classifier.classes_})"
            )
        ports: set[int] = set(getattr(self.classifier, "ports_", {}).get(device_type, []))
        if windows is not None and "ports" in windows.columns:
            for p in windows["ports"]:
                ports.update(int(x) for x in p if int(x) < _DYNAMIC)
        self._enrolled[device] = (device_type, set(sorted(ports)[: self.max_ports]))
        self._enrolled.move_to_end(device)
        while len(self._enrolled) > self.max_devices:
            self._enrolled.popitem(last=False)

    def enroll_many(self, windows: pd.DataFrame, types: pd.Series | dict[str, str]) -> None:
        """Enroll every device of a window frame with its type (``{device: type}`` or a per-row Series)."""
        per_row = types if isinstance(types, pd.Series) else windows["device"].map(types)
        for device, sub in windows.groupby("device", sort=True):
            kinds = per_row.loc[sub.index].dropna().unique()
            if len(kinds):
                self.enroll(str(device), str(kinds[0]), sub)

    @property
    def enrolled(self) -> dict[str, str]:
        """``{device: enrolled type}``."""
        return {d: t for d, (t, _) in self._enrolled.items()}

    def scores(self, windows: pd.DataFrame) -> pd.DataFrame:
        """Per window of an enrolled device: claimed and best type, their probabilities and distances, new ports."""
        known = windows[windows["device"].isin(self._enrolled.keys())]
        cols = [
            "device",
            "window_start",
            "claimed",
            "best",
            "p_claimed",
            "p_best",
            "distance",
            "distance_best",
            "new_ports",
        ]
        if known.empty:
            return pd.DataFrame(columns=cols)
        proba = self.classifier.predict_proba(known)
        claimed = known["device"].map(lambda d: self._enrolled[d][0])
        dist = np.full(len(known), np.nan)
        for t in claimed.unique():
            sel = (claimed == t).to_numpy()
            dist[sel] = self.classifier.distance_to(known[sel], str(t))
        pm = proba.to_numpy()
        best = proba.columns.to_numpy()[pm.argmax(axis=1)]
        dist_best = np.full(len(known), np.nan)
        for t in np.unique(best):
            sel = best == t
            dist_best[sel] = self.classifier.distance_to(known[sel], str(t))
        idx = [self.classifier.classes_.index(t) for t in claimed]
        new_ports = [
            frozenset(int(x) for x in p if int(x) < _DYNAMIC) - self._enrolled[d][1]
            for d, p in zip(
                known["device"], known["ports"] if "ports" in known.columns else [frozenset()] * len(known), strict=True
            )
        ]
        return pd.DataFrame(
            {
                "device": known["device"].to_numpy(),
                "window_start": known["window_start"].to_numpy(),
                "claimed": claimed.to_numpy(),
                "best": best,
                "p_claimed": pm[np.arange(len(idx)), idx],
                "p_best": pm.max(axis=1),
                "distance": dist,
                "distance_best": dist_best,
                "new_ports": new_ports,
            },
            index=known.index,
        )

    def window_alerts(self, windows: pd.DataFrame, window: float | None = None) -> list[Alert]:
        """One alert per window of an enrolled device that raises a finding (unknown devices are skipped).

        Parameters
        ----------
        windows:
            Window features (:func:`~misuse.fingerprint.features.window_features`).
        window:
            The window length in seconds, for the alerts' end time (default: one hour).
        """
        return [a for _, _, a in self._per_window(windows, window or 3600.0) if a is not None]

    def check(self, windows: pd.DataFrame, window: float | None = None) -> list[Alert]:
        """Alerts for the windows of enrolled devices, one per run of consecutive windows with the
        same finding (see the module docstring); unknown devices are skipped.

        Parameters
        ----------
        windows:
            Window features (:func:`~misuse.fingerprint.features.window_features`).
        window:
            The window length in seconds: the alerts' end time, and how much silence a run bridges
            (default: one hour).
        """
        length = window or 3600.0
        out: list[Alert] = []
        run: list[Alert] = []
        last: tuple[str, float] | None = None
        for device, start, alert in sorted(self._per_window(windows, length), key=lambda r: (r[0], r[1])):
            follows = last is not None and last[0] == device and start - last[1] <= 2 * length
            if run and not (alert is not None and follows and alert.detector == run[-1].detector):
                out.append(_merge(run))
                run = []
            if alert is not None:
                run.append(alert)
            last = (device, start)
        if run:
            out.append(_merge(run))
        return sorted(out, key=lambda a: (a.window_start, a.entity))

    def _per_window(self, windows: pd.DataFrame, length: float) -> list[tuple[str, float, Alert | None]]:
        """(device, window start, alert or None) for every window of an enrolled device, in order."""
        s = self.scores(windows)
        out: list[tuple[str, float, Alert | None]] = []
        for i, r in s.iterrows():
            row = windows.loc[[i]]
            self._enrolled.move_to_end(str(r["device"]))
            out.append((str(r["device"]), float(r["window_start"]), self._finding(r, row, length)))
        return out

    def _finding(self, r: pd.Series, row: pd.DataFrame, length: float) -> Alert | None:
        claimed, best = str(r["claimed"]), str(r["best"])
        dist = float(r["distance"])
        new = sorted(r["new_ports"])
        units = int(row["units"].iloc[0]) if "units" in row.columns else 0
        contrib: list[dict[str, Any]] = self.classifier.deviations(row, claimed)
        looks_like_other = best != claimed and float(r["distance_best"]) <= self.max_distance
        if looks_like_other and r["p_claimed"] < self.min_probability:
            mt, finding, sev = MisuseType.IMPERSONATION, "spoofing", Severity.HIGH
            score, threshold = 1.0 - float(r["p_claimed"]), 1.0 - self.min_probability
            summary = (
                f"{r['device']} is enrolled as {claimed} but its traffic looks like {best} "
                f"(p={r['p_best']:.2f} vs {r['p_claimed']:.2f} for {claimed}; {units} units): "
                "another device behind its address?"
            )
            contrib = [
                {
                    "feature": "p_enrolled_type",
                    "typical": 1.0,
                    "actual": round(float(r["p_claimed"]), 3),
                    "weight": 1.0,
                },
                *contrib,
            ]
        elif dist > self.max_distance and new:
            mt, finding, sev = MisuseType.UNAUTHORIZED_ACCESS, "takeover", Severity.HIGH
            score, threshold = dist, self.max_distance
            summary = (
                f"{r['device']} ({claimed}) left its fingerprint ({dist:.1f} radii away) and used new service "
                f"ports {new[:8]}: a takeover?"
            )
            contrib = [
                {"feature": "new_service_ports", "typical": "[]", "actual": str(new[:8]), "weight": 1.0},
                *contrib,
            ]
        elif dist > self.max_distance:
            mt, finding, sev = MisuseType.ANOMALY, "drift", Severity.LOW
            score, threshold = dist, self.max_distance
            summary = (
                f"{r['device']} ({claimed}) traffic is {dist:.1f} radii from its fingerprint "
                "(no new ports, no other type)"
            )
        else:
            return None
        start = datetime.fromtimestamp(float(r["window_start"]), tz=UTC)
        end = datetime.fromtimestamp(float(r["window_start"]) + length, tz=UTC)
        return Alert(
            entity=str(r["device"]),
            window_start=start,
            window_end=end,
            score=float(score),
            threshold=float(threshold),
            severity=sev.value,
            misuse_type=mt.value,
            detector=f"{DETECTOR}.{finding}",
            summary=summary,
            contributions=contrib,
            evidence=list(row["evidence"].iloc[0]) if "evidence" in row.columns else [],
        )


def _merge(run: list[Alert]) -> Alert:
    """One alert for a run of window alerts of one device and finding (in time order)."""
    if len(run) == 1:
        return run[0]
    top = max(run, key=lambda a: a.score)
    start, end = run[0].window_start, run[-1].window_end
    evidence = list(top.evidence)
    for a in run:
        if len(evidence) >= _MAX_EVIDENCE:
            break
        evidence += [e for e in a.evidence[:1] if e not in evidence]
    summary = (
        f"{len(run)} consecutive windows from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC; "
        f"the strongest: {top.summary}"
    )
    return Alert(
        entity=top.entity,
        window_start=start,
        window_end=end,
        score=top.score,
        threshold=top.threshold,
        severity=top.severity,
        misuse_type=top.misuse_type,
        detector=top.detector,
        summary=summary,
        contributions=[
            *top.contributions,
            {"feature": "consecutive_windows", "typical": 1, "actual": len(run), "weight": 0.0},
        ],
        evidence=evidence[:_MAX_EVIDENCE],
    )
