"""Exfiltration scenarios the site simulator does not make: slow drip and DNS tunnelling.

Both add events to frames in the event model (for example a :mod:`misuse.simulate` site's
``flows``), labelled ``exfiltration``, so the detectors can be evaluated on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError
from misuse.events import normalize_frame

_B32 = np.array(list("abcdefghijklmnopqrstuvwxyz234567"))


def slow_drip(
    entity: str,
    peer: str,
    start: pd.Timestamp,
    hours: float = 24.0,
    total_bytes: float = 30e6,
    uploads: int = 48,
    seed: int = 0,
) -> pd.DataFrame:
    """Flows of a slow exfiltration: ``uploads`` small HTTPS uploads to one outside ``peer``.

    Examples
    --------
    >>> f = slow_drip("192.168.1.60", "203.0.113.9", pd.Timestamp("2026-03-04", tz="UTC"), uploads=10)
    >>> len(f), f["label"].unique().tolist(), round(f["num.orig_bytes"].sum() / 1e6)
    (10, ['exfiltration'], 30)
    """
    if hours <= 0 or uploads < 1 or total_bytes <= 0:
        raise InvalidParameterError(
            f"slow_drip: hours, uploads and total_bytes must be positive; got {hours}, {uploads}, {total_bytes}"
        )
    rng = np.random.default_rng(seed)
    offs = np.sort(rng.uniform(0, hours * 3600, uploads))
    sizes = rng.dirichlet(np.full(uploads, 20.0)) * total_bytes
    ts = pd.Timestamp(start) + pd.to_timedelta(offs, unit="s")
    return normalize_frame(
        pd.DataFrame(
            {
                "event_id": [f"drip-{seed}-{i}" for i in range(uploads)],
                "ts": ts,
                "entity": entity,
                "peer": peer,
                "kind": "flow",
                "action": "ssl",
                "label": MisuseType.EXFILTRATION.value,
                "source": "exfil.slow_drip",
                "num.orig_bytes": sizes.round(),
                "num.resp_bytes": rng.lognormal(np.log(4000), 0.3, uploads).round(),
                "num.dst_port": 443.0,
                "num.duration": rng.lognormal(np.log(5), 0.4, uploads),
                "cat.proto": "tcp",
                "cat.service": "ssl",
            }
        )
    )


def dns_queries(
    entity: str,
    start: pd.Timestamp,
    hours: float,
    resolver: str = "192.168.1.1",
    domains: tuple[str, ...] = ("time.vendor-cloud.com", "api.vendor-cloud.com", "fw.vendor-cloud.com"),
    per_hour: float = 30.0,
    tunnel_domain: str | None = None,
    tunnel_per_hour: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """DNS query events of a device: its usual names, plus base32 tunnel names when ``tunnel_domain`` is set.

    Tunnel queries are labelled ``exfiltration``, the others ``benign``.

    Examples
    --------
    >>> f = dns_queries("cam", pd.Timestamp("2026-03-04", tz="UTC"), 1, tunnel_domain="t.evil.example",
    ...                 tunnel_per_hour=50, seed=1)
    >>> sorted(f["label"].unique().tolist())
    ['benign', 'exfiltration']
    """
    rng = np.random.default_rng(seed)
    span = hours * 3600
    n = rng.poisson(per_hour * hours)
    names = list(rng.choice(list(domains), n)) if n else []
    offs = list(rng.uniform(0, span, n))
    labels = ["benign"] * n
    if tunnel_domain:
        m = rng.poisson(tunnel_per_hour * hours)
        for _ in range(m):
            chunk = "".join(rng.choice(_B32, int(rng.integers(40, 60))))
            names.append(f"{chunk[:30]}.{chunk[30:]}.{tunnel_domain}")
        offs += list(rng.uniform(0, span, m))
        labels += [MisuseType.EXFILTRATION.value] * m
    order = np.argsort(offs, kind="stable")
    names_a, offs_a, labels_a = np.array(names, dtype=object)[order], np.array(offs)[order], np.array(labels)[order]
    return normalize_frame(
        pd.DataFrame(
            {
                "event_id": [f"dns-{entity}-{seed}-{i}" for i in range(len(order))],
                "ts": pd.Timestamp(start) + pd.to_timedelta(offs_a, unit="s"),
                "entity": entity,
                "peer": resolver,
                "kind": "dns",
                "action": "A",
                "label": labels_a,
                "source": "exfil.dns_queries",
                "num.query_len": [float(len(x)) for x in names_a],
                "cat.query": names_a,
            }
        )
    )
