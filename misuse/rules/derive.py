"""Derived fields that heuristic rules test, computed per batch with bounded state.

:class:`Enricher` adds columns to an event frame; the state it carries between calls (what
was seen before) makes a stream of micro-batches give the same values as one batch. Every
table is capped at ``max_keys`` entries (the oldest forgotten first).

=====================  ==========================================================================
column                 meaning
=====================  ==========================================================================
num.dns_label_max      longest label of ``cat.query`` (DNS events)
num.dns_entropy        Shannon entropy (bits per character) of the query without its last two labels
num.peer_new           1 the first time this entity talks to this peer, else 0
num.peer_fanin         distinct entities seen talking to this peer so far (rare peers have 1-2)
num.bytes_ratio        ``orig_bytes`` over the entity's mean ``orig_bytes`` before this event
num.listen_new         1 when a device (the peer) accepts a connection on a port it was never seen
                       accepting on before (Zeek ``conn_state`` SF, S1, S2, S3, RSTO, RSTR)
num.listen_age         seconds since that device was first seen accepting connections
=====================  ==========================================================================
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict

import numpy as np
import pandas as pd

ACCEPTED = frozenset({"SF", "S1", "S2", "S3", "RSTO", "RSTR"})


def label_stats(query: str) -> tuple[float, float]:
    """Longest label and entropy of the subdomain part of a DNS name.

    >>> label_stats("www.example.com")
    (7.0, 0.0)
    """
    labels = [x for x in query.strip(".").split(".") if x]
    if not labels:
        return 0.0, 0.0
    sub = "".join(labels[:-2]) if len(labels) > 2 else ""
    longest = float(max(len(x) for x in labels))
    if not sub:
        return longest, 0.0
    counts = Counter(sub)
    n = len(sub)
    return longest, -sum(c / n * math.log2(c / n) for c in counts.values())


class _Capped(OrderedDict[str, object]):
    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def put(self, key: str, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.cap:
            self.popitem(last=False)


class Enricher:
    """Adds the derived columns to event frames, keeping bounded state across calls.

    Parameters
    ----------
    max_keys:
        Most entries in each state table.

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({"ts": [0.0, 1.0], "entity": ["a", "a"], "peer": ["x", "x"]})
    >>> Enricher().transform(f)["num.peer_new"].tolist()
    [1.0, 0.0]
    """

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self.pairs = _Capped(max_keys)
        self.fanin = _Capped(max_keys)
        self.means = _Capped(max_keys)
        self.listening = _Capped(max_keys)
        self.first_listen = _Capped(max_keys)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with the derived columns added (state updated)."""
        out = frame.copy()
        n = len(out)
        if n == 0:
            return out
        ent = out["entity"].astype(str).to_numpy()
        peer = out["peer"].astype(str).to_numpy() if "peer" in out.columns else np.full(n, "", object)
        ts = out["ts"]
        secs = (
            ts.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
            if pd.api.types.is_datetime64_any_dtype(ts)
            else ts.to_numpy(dtype="float64")
        )
        if "cat.query" in out.columns:
            q = out["cat.query"]
            codes, uniq = pd.factorize(q, use_na_sentinel=True)
            stats = np.array([label_stats(str(u)) for u in uniq] + [(np.nan, np.nan)], dtype=float)
            out["num.dns_label_max"] = stats[codes, 0]
            out["num.dns_entropy"] = stats[codes, 1]
        new = np.zeros(n)
        fanin = np.zeros(n)
        ratio = np.full(n, np.nan)
        obytes = out["num.orig_bytes"].to_numpy(dtype="float64") if "num.orig_bytes" in out.columns else None
        for i in range(n):
            key = ent[i] + "|" + peer[i]
            if key not in self.pairs:
                new[i] = 1.0
                seen = self.fanin.get(peer[i])
                self.fanin.put(peer[i], (int(seen) if isinstance(seen, int) else 0) + 1)
            self.pairs.put(key, True)
            f = self.fanin.get(peer[i])
            fanin[i] = float(f) if isinstance(f, int) else 0.0
            if obytes is not None and not math.isnan(obytes[i]):
                prev = self.means.get(ent[i])
                total, count = prev if isinstance(prev, tuple) else (0.0, 0)
                if count:
                    ratio[i] = obytes[i] / max(total / count, 1.0)
                self.means.put(ent[i], (total + obytes[i], count + 1))
        out["num.peer_new"] = new
        out["num.peer_fanin"] = fanin
        if obytes is not None:
            out["num.bytes_ratio"] = ratio
        if "cat.conn_state" in out.columns and "num.dst_port" in out.columns:
            self._listeners(out, peer, secs)
        return out

    def _listeners(self, out: pd.DataFrame, peer: np.ndarray, secs: np.ndarray) -> None:
        n = len(out)
        state = out["cat.conn_state"].astype(str).to_numpy()
        port = out["num.dst_port"].to_numpy(dtype="float64")
        new = np.zeros(n)
        age = np.full(n, np.nan)
        for i in range(n):
            if state[i] not in ACCEPTED or math.isnan(port[i]):
                continue
            first = self.first_listen.get(peer[i])
            if not isinstance(first, float):
                first = float(secs[i])
                self.first_listen.put(peer[i], first)
            key = f"{peer[i]}|{int(port[i])}"
            if key not in self.listening:
                new[i] = 1.0
            self.listening.put(key, True)
            age[i] = float(secs[i]) - first
        out["num.listen_new"] = new
        out["num.listen_age"] = age
