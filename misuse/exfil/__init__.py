"""Exfiltration: outbound bursts to new or rare destinations, slow drip over long windows, DNS tunnelling.

* :class:`ExfilMonitor` keeps per-device peer history and volume baselines and checks new traffic.
* :func:`to_alerts` turns its findings into explained ``exfiltration`` alerts.
* :mod:`misuse.exfil.simulate` adds slow-drip flows and DNS-tunnel queries for evaluation.
"""

from misuse.exfil.monitor import ExfilMonitor, base_domain, char_entropy, to_alerts

__all__ = ["ExfilMonitor", "base_domain", "char_entropy", "to_alerts"]
