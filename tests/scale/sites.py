"""Small self-made sites for the scale tests: flows of several devices, optionally a telnet scan."""

from __future__ import annotations

import numpy as np

DAY = 86400.0


def site_rows(
    seed: int, entities: int = 12, per_entity: int = 300, scan_entity: str | None = None
) -> list[dict[str, object]]:
    """Flows of several devices over two days; optionally a telnet scan by one of them."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for e in range(entities):
        ts = np.sort(rng.uniform(0, 2 * DAY, per_entity))
        peers = rng.choice(["broker", "ntp", "cloud", f"peer{e}"], per_entity, p=[0.6, 0.1, 0.2, 0.1])
        for i, (t, p) in enumerate(zip(ts, peers, strict=True)):
            rows.append(
                {
                    "ts": float(t),
                    "entity": f"dev{e:02d}",
                    "peer": str(p),
                    "kind": "flow",
                    "action": "mqtt" if p == "broker" else "tcp",
                    "label": "benign",
                    "event_id": f"s{seed}e{e}i{i}",
                    "num.orig_bytes": float(rng.lognormal(5, 0.4)),
                    "num.dst_port": 1883.0 if p == "broker" else 443.0,
                    "cat.conn_state": "SF",
                }
            )
    if scan_entity is not None:
        for i in range(150):
            rows.append(
                {
                    "ts": DAY + 3600.0 + i * 0.4,
                    "entity": scan_entity,
                    "peer": f"203.0.113.{i % 200}",
                    "kind": "flow",
                    "action": "telnet",
                    "label": "botnet",
                    "event_id": f"scan{i}",
                    "num.orig_bytes": 0.0,
                    "num.dst_port": 23.0,
                    "cat.conn_state": "S0",
                }
            )
    return rows
