"""Telemetry integrity: injected, replayed, frozen or physically impossible sensor values.

* :class:`IntegrityMonitor` learns per-device limits from normal telemetry and scores new readings
  with six checks (range, rate, frozen, replay, shift, pair).
* :func:`to_alerts` groups flagged readings into explained ``data_tampering`` alerts;
  :func:`reading_scores` gives one score per reading.
* :func:`inject_tampering` simulates tampering for evaluation.
"""

from misuse.integrity.alerts import reading_scores, to_alerts
from misuse.integrity.monitor import CHECKS, IntegrityMonitor
from misuse.integrity.tamper import KINDS, inject_tampering

__all__ = ["CHECKS", "KINDS", "IntegrityMonitor", "inject_tampering", "reading_scores", "to_alerts"]
