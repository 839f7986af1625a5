"""Stateful exfiltration detection: per-device peer history, short and long windows, DNS tunnelling.

:class:`ExfilMonitor` keeps, per device (entity), which outside destinations it has talked to and
in how many windows, and what its outbound volume usually is. It learns from clean traffic
(:meth:`~ExfilMonitor.fit`) and then checks new traffic (:meth:`~ExfilMonitor.check`), carrying
its history from one call to the next. Three checks:

``burst``  in one ``window``, the device sends to destinations that are new or rare for it
           (seen in fewer than ``rare_windows`` earlier windows) more bytes than ``factor`` times
           the ``quantile`` of its own per-window outbound volume (and at least ``min_bytes``).
``drip``   over a sliding ``long_window``, one new or rare destination receives, in at least
           ``drip_min_windows`` separate windows, more bytes than ``factor`` times what the
           device ever sent to one new destination in a long window during training (and at
           least ``min_drip_bytes``): slow exfiltration that stays under every per-window limit.
``dns``    in one window, the device asks one domain for more distinct, long or random-looking
           subdomains than ``factor`` times its training quantile (at least ``dns_min_unique``):
           DNS tunnelling.

Each limit is the larger of the learned one and its floor (``min_bytes``, ``min_drip_bytes``,
``dns_min_unique``); a device not seen in training is judged by the floor alone. A finding's
``typical`` says which limit applied.

Only flows to destinations outside ``local_networks`` count. This is the dedicated, stateful
detector; the window-path rule in :mod:`misuse.alerts.classify` stays a cheap first filter.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from misuse.alerts.model import Alert
from misuse.alerts.types import MisuseType
from misuse.errors import InvalidParameterError, NotFittedError, SchemaError

LOCAL_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "ff00::/8",
)
FINDING_COLUMNS = ["entity", "check", "peer", "window_start", "window_end", "score", "limit", "actual", "typical"]
FINDING_COLUMNS += ["evidence"]


def _local(peers: pd.Series, networks: tuple[str, ...]) -> np.ndarray:
    nets = [ipaddress.ip_network(n) for n in networks]
    cache: dict[str, bool] = {}

    def is_local(p: str) -> bool:
        if p not in cache:
            try:
                addr = ipaddress.ip_address(p)
                cache[p] = any(addr.version == n.version and addr in n for n in nets)
            except ValueError:
                cache[p] = p == ""
        return cache[p]

    return np.fromiter((is_local(str(p)) for p in peers), dtype=bool, count=len(peers))


def _window_index(ts: pd.Series, window: float) -> pd.Series:
    """The window number of each time stamp: whole seconds since the epoch // ``window``, whatever
    the column's resolution (pandas 3 builds ``datetime64[us]`` columns from Timestamps)."""
    seconds = pd.to_datetime(ts, utc=True).dt.as_unit("ns").astype("int64") // 10**9
    return (seconds // int(window)).astype(int)


def base_domain(name: str) -> str:
    """The registered-looking part of a DNS name: its last two labels (three under a short ccTLD SLD).

    Examples
    --------
    >>> base_domain("a1b2.c3.t.evil.example")
    'evil.example'
    >>> base_domain("x.y.bbc.co.uk")
    'bbc.co.uk'
    """
    labels = [x for x in name.lower().rstrip(".").split(".") if x]
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in {"co", "com", "net", "org", "ac", "gov"}:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def char_entropy(text: str) -> float:
    """Shannon entropy of the characters of a string, bits per character.

    Examples
    --------
    >>> char_entropy("aaaa"), round(char_entropy("abcd"), 1)
    (0.0, 2.0)
    """
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


@dataclass
class ExfilMonitor:
    """Per-device exfiltration checks with limits learned from clean traffic.

    Parameters
    ----------
    window, long_window:
        Short and long window lengths in seconds.
    rare_windows:
        A destination seen in fewer earlier windows than this is new or rare.
    quantile, factor:
        Quantile of the training statistic and the factor above it that makes a limit.
    min_bytes, min_drip_bytes:
        Floors of the burst and drip limits (bytes).
    drip_min_windows:
        Separate windows a slow drip must span.
    dns_min_unique:
        Floor of the distinct-subdomain limit.
    dns_min_entropy, dns_min_length:
        A tunnelling domain's subdomains must also look random (mean entropy, bits/char) or long.
    local_networks:
        Destinations inside these networks are not exfiltration targets.
    """

    window: float = 3600.0
    long_window: float = 86400.0
    rare_windows: int = 3
    quantile: float = 0.99
    factor: float = 10.0
    min_bytes: float = 1e6
    min_drip_bytes: float = 5e6
    drip_min_windows: int = 4
    dns_min_unique: int = 20
    dns_min_entropy: float = 3.2
    dns_min_length: float = 24.0
    local_networks: tuple[str, ...] = LOCAL_NETWORKS
    history_: pd.DataFrame = field(default_factory=pd.DataFrame)
    burst_limit_: dict[str, float] = field(default_factory=dict)
    drip_limit_: dict[str, float] = field(default_factory=dict)
    dns_limit_: dict[str, float] = field(default_factory=dict)
    fitted_: bool = False

    def __post_init__(self) -> None:
        rules = [
            ("window", self.window > 0, "> 0"),
            ("long_window", self.long_window >= 2 * self.window, ">= 2 x window"),
            ("rare_windows", self.rare_windows >= 1, ">= 1"),
            ("quantile", 0.5 <= self.quantile <= 1.0, "in [0.5, 1]"),
            ("factor", self.factor >= 1.0, ">= 1"),
            ("drip_min_windows", 2 <= self.drip_min_windows <= self.long_window / self.window, "in [2, long/window]"),
            ("dns_min_unique", self.dns_min_unique >= 2, ">= 2"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise InvalidParameterError(
                    f"The '{name}' parameter of ExfilMonitor must be {rule}. Got {getattr(self, name)!r}."
                )
        for n in self.local_networks:
            try:
                ipaddress.ip_network(n)
            except ValueError:
                raise InvalidParameterError(f"ExfilMonitor local_networks: {n!r} is not a network") from None

    # ----------------------------------------------------------------- preparation
    def _outbound(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per (entity, peer, window): bytes sent and flow ids, outside destinations only."""
        for col in ("ts", "entity", "peer"):
            if col not in frame.columns:
                raise SchemaError(f"ExfilMonitor: frame has no {col!r} column (has {list(frame.columns)[:8]})")
        kind = frame["kind"] if "kind" in frame else pd.Series("flow", index=frame.index)
        flows = frame[(kind == "flow").to_numpy()]
        if "num.orig_bytes" not in flows or flows.empty:
            return pd.DataFrame(columns=["entity", "peer", "win", "bytes", "ids"])
        flows = flows[~_local(flows["peer"], self.local_networks)]
        win = _window_index(flows["ts"], self.window)
        ids = flows["event_id"].astype(str) if "event_id" in flows else flows.index.astype(str)
        agg = (
            pd.DataFrame(
                {
                    "entity": flows["entity"].astype(str),
                    "peer": flows["peer"].astype(str),
                    "win": win,
                    "bytes": flows["num.orig_bytes"].fillna(0.0).astype(float),
                    "ids": ids,
                }
            )
            .groupby(["entity", "peer", "win"], sort=True)
            .agg(bytes=("bytes", "sum"), ids=("ids", list))
            .reset_index()
        )
        return agg

    def _dns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per (entity, window, base domain): distinct subdomains, their mean length and entropy."""
        if "kind" not in frame or "cat.query" not in frame:
            return pd.DataFrame(columns=["entity", "win", "domain", "unique", "length", "entropy", "ids"])
        q = frame[(frame["kind"] == "dns").to_numpy() & frame["cat.query"].notna().to_numpy()]
        if q.empty:
            return pd.DataFrame(columns=["entity", "win", "domain", "unique", "length", "entropy", "ids"])
        names = q["cat.query"].astype(str).str.lower().str.rstrip(".")
        domain = names.map(base_domain)
        sub = pd.Series([n[: -len(d)].rstrip(".") for n, d in zip(names, domain, strict=True)], index=q.index)
        win = _window_index(q["ts"], self.window)
        ids = q["event_id"].astype(str) if "event_id" in q else q.index.astype(str)
        d = pd.DataFrame({"entity": q["entity"].astype(str), "win": win, "domain": domain, "sub": sub, "ids": ids})
        d = d[d["sub"] != ""]
        rows = []
        for (entity, w, dom), part in d.groupby(["entity", "win", "domain"], sort=True):
            subs = part["sub"].unique()
            rows.append(
                {
                    "entity": entity,
                    "win": w,
                    "domain": dom,
                    "unique": len(subs),
                    "length": float(np.mean([len(s) for s in subs])),
                    "entropy": float(np.mean([char_entropy(s.replace(".", "")) for s in subs])),
                    "ids": part["ids"].tolist(),
                }
            )
        return pd.DataFrame(rows, columns=["entity", "win", "domain", "unique", "length", "entropy", "ids"])

    # ----------------------------------------------------------------- statistics
    def _per_window(self, agg: pd.DataFrame) -> pd.DataFrame:
        """Each (entity, peer, win) with how many earlier windows the pair was seen in."""
        agg = agg.sort_values(["entity", "peer", "win"], kind="stable").reset_index(drop=True)
        if "count" not in agg:
            agg["count"] = 1
        agg["prior"] = agg.groupby(["entity", "peer"])["count"].cumsum() - agg["count"]
        return agg

    def _drip(self, agg: pd.DataFrame) -> pd.DataFrame:
        """For each (entity, peer, active window w): bytes and active windows in the long window ending at w."""
        k = round(self.long_window / self.window)
        out = []
        for (entity, peer), part in agg.groupby(["entity", "peer"], sort=False):
            w = part["win"].to_numpy()
            b = part["bytes"].to_numpy(float)
            cnt = part["count"].to_numpy()
            cb, cc = np.r_[0.0, np.cumsum(b)], np.r_[0, np.cumsum(cnt)]
            lo = np.searchsorted(w, w - k + 1, side="left")
            hi = np.arange(1, len(w) + 1)
            out.append(
                pd.DataFrame(
                    {
                        "entity": entity,
                        "peer": peer,
                        "win": w,
                        "long_bytes": cb[hi] - cb[lo],
                        "active": hi - lo,
                        "prior_long": cc[lo],
                        "lo": lo,
                        "idx": part.index.to_numpy(),
                    }
                )
            )
        if not out:
            return pd.DataFrame(columns=["entity", "peer", "win", "long_bytes", "active", "prior_long", "lo", "idx"])
        return pd.concat(out, ignore_index=True)

    def fit(self, frame: pd.DataFrame) -> ExfilMonitor:
        """Learn per-device limits and the peer history from clean traffic; returns self."""
        agg = self._per_window(self._outbound(frame))
        per_win = agg.groupby(["entity", "win"])["bytes"].sum()
        self.burst_limit_, self.drip_limit_, self.dns_limit_ = {}, {}, {}
        for entity, s in per_win.groupby(level=0):
            wins = s.index.get_level_values(1)
            full = s.droplevel(0).reindex(range(int(wins.min()), int(wins.max()) + 1), fill_value=0.0)
            q = float(np.quantile(full.to_numpy(), self.quantile))
            self.burst_limit_[str(entity)] = max(self.min_bytes, self.factor * q)
        drip = self._drip(agg)
        rare = drip[drip["prior_long"] < self.rare_windows]
        for entity in self.burst_limit_:
            vals = rare.loc[rare["entity"] == entity, "long_bytes"].to_numpy(float)
            q = float(np.quantile(vals, self.quantile)) if len(vals) else 0.0
            self.drip_limit_[entity] = max(self.min_drip_bytes, self.factor * q)
        dns = self._dns(frame)
        for entity, part in dns.groupby("entity"):
            q = float(np.quantile(part["unique"].to_numpy(float), self.quantile))
            self.dns_limit_[str(entity)] = max(float(self.dns_min_unique), self.factor * q)
        self.history_ = agg[["entity", "peer", "win", "bytes", "count"]].copy()
        self.fitted_ = True
        return self

    def _limit(self, table: dict[str, float], entity: str, floor: float, learned: str) -> tuple[float, str]:
        """The limit a device is judged by and which one it is: the one ``learned`` from its own
        training traffic, or the floor (a device not seen in training, or one whose learned limit
        is below the floor)."""
        if entity not in table:
            return floor, "the floor for a device not seen in training"
        if table[entity] <= floor:
            return table[entity], f"the floor; {learned} is lower"
        return table[entity], learned

    def check(self, frame: pd.DataFrame, update: bool = True) -> pd.DataFrame:
        """Findings in new traffic, one row per (device, check, destination, window).

        Returns
        -------
        pandas.DataFrame
            Columns ``entity, check, peer, window_start, window_end, score, limit, actual,
            typical, evidence`` (``score`` = actual / limit, > 1 for every row).
        """
        if not self.fitted_:
            raise NotFittedError("ExfilMonitor has not learned any traffic; call fit first")
        new = self._outbound(frame)
        new["count"] = 1
        new["new"] = True
        hist = self.history_.assign(new=False, ids=[[] for _ in range(len(self.history_))])
        agg = self._per_window(pd.concat([hist, new], ignore_index=True))
        rows: list[dict[str, object]] = []
        w0 = self.window
        cur = agg[agg["new"]]
        rare = cur[cur["prior"] < self.rare_windows]
        learned = f"{self.factor:g} x the device's p{self.quantile * 100:g}"
        for (entity, w), part in rare.groupby(["entity", "win"], sort=True):
            limit, basis = self._limit(self.burst_limit_, str(entity), self.min_bytes, learned)
            sent = float(part["bytes"].sum())
            if sent > limit:
                top = part.sort_values("bytes", ascending=False)
                rows.append(
                    self._row(
                        entity,
                        "burst",
                        ";".join(top["peer"].head(5)),
                        w,
                        w + 1,
                        sent / limit,
                        limit,
                        f"{sent:,.0f} bytes to {len(part)} new/rare destination(s) in {w0:.0f} s",
                        f"<= {limit:,.0f} bytes per window ({basis})",
                        [i for ids in top["ids"] for i in ids],
                    )
                )
        drip = self._drip(agg)
        drip = drip[agg.loc[drip["idx"], "new"].to_numpy()]
        k = round(self.long_window / self.window)
        cand = drip[(drip["prior_long"] < self.rare_windows) & (drip["active"] >= self.drip_min_windows)]
        for (entity, peer), part in cand.groupby(["entity", "peer"], sort=True):
            limit, basis = self._limit(self.drip_limit_, str(entity), self.min_drip_bytes, learned)
            over = part[part["long_bytes"] > limit]
            if over.empty:
                continue
            first = over.iloc[0]
            worst = over.loc[over["long_bytes"].idxmax()]
            pair = agg[(agg["entity"] == entity) & (agg["peer"] == peer)]
            span = pair[(pair["win"] > first["win"] - k) & (pair["win"] <= worst["win"]) & pair["new"]]
            ids = [i for ids in span["ids"] for i in ids]
            begin = int(span["win"].min()) if len(span) else int(first["win"])
            rows.append(
                self._row(
                    entity,
                    "drip",
                    str(peer),
                    begin,
                    int(worst["win"]) + 1,
                    float(worst["long_bytes"]) / limit,
                    limit,
                    f"{worst['long_bytes']:,.0f} bytes in {int(worst['active'])} windows to new/rare {peer} "
                    f"within {self.long_window:.0f} s",
                    f"<= {limit:,.0f} bytes to one new destination per {self.long_window:.0f} s ({basis})",
                    ids,
                )
            )
        dns = self._dns(frame)
        for _, r in dns.iterrows():
            limit, basis = self._limit(self.dns_limit_, str(r["entity"]), float(self.dns_min_unique), learned)
            odd = r["entropy"] >= self.dns_min_entropy or r["length"] >= self.dns_min_length
            if r["unique"] > limit and odd:
                rows.append(
                    self._row(
                        r["entity"],
                        "dns",
                        str(r["domain"]),
                        int(r["win"]),
                        int(r["win"]) + 1,
                        float(r["unique"]) / limit,
                        limit,
                        f"{r['unique']} distinct subdomains of {r['domain']} (mean length {r['length']:.0f}, "
                        f"entropy {r['entropy']:.1f} bits/char)",
                        f"<= {limit:.0f} distinct subdomains per domain and window ({basis})",
                        list(r["ids"]),
                    )
                )
        if update:
            self._remember(agg)
        return pd.DataFrame(rows, columns=FINDING_COLUMNS)

    def _row(
        self,
        entity: object,
        check: str,
        peer: str,
        w_lo: int,
        w_hi: int,
        score: float,
        limit: float,
        actual: str,
        typical: str,
        evidence: list[str],
    ) -> dict[str, object]:
        return {
            "entity": str(entity),
            "check": check,
            "peer": peer,
            "window_start": pd.Timestamp(w_lo * self.window, unit="s", tz="UTC"),
            "window_end": pd.Timestamp(w_hi * self.window, unit="s", tz="UTC"),
            "score": score,
            "limit": limit,
            "actual": actual,
            "typical": typical,
            "evidence": evidence,
        }

    def _remember(self, agg: pd.DataFrame) -> None:
        """Keep recent windows in full and fold older ones into one row per (device, destination)."""
        hist = agg[["entity", "peer", "win", "bytes", "count"]]
        if hist.empty:
            self.history_ = hist.reset_index(drop=True)
            return
        k = round(self.long_window / self.window)
        cutoff = int(hist["win"].max()) - 2 * k
        old, recent = hist[hist["win"] < cutoff], hist[hist["win"] >= cutoff]
        folded = old.groupby(["entity", "peer"], sort=True).agg(
            win=("win", "min"), bytes=("bytes", "sum"), count=("count", "sum")
        )
        self.history_ = pd.concat([folded.reset_index(), recent], ignore_index=True)


_SEVERITY = {"burst": "high", "drip": "high", "dns": "medium"}
_WORDS = {
    "burst": "sent far more than usual to new or rare destinations",
    "drip": "sent a slow, steady stream to a new destination over a long window",
    "dns": "asked one domain for many random-looking names (DNS tunnelling)",
}


def to_alerts(findings: pd.DataFrame) -> list[Alert]:
    """One explained ``exfiltration`` alert per finding of :meth:`ExfilMonitor.check`."""
    alerts = []
    for _, f in findings.iterrows():
        alerts.append(
            Alert(
                entity=str(f["entity"]),
                window_start=pd.Timestamp(f["window_start"]).to_pydatetime(),
                window_end=pd.Timestamp(f["window_end"]).to_pydatetime(),
                score=float(f["score"]),
                threshold=1.0,
                severity=_SEVERITY[str(f["check"])],
                misuse_type=MisuseType.EXFILTRATION.value,
                detector=f"exfil.{f['check']}",
                summary=f"{f['entity']} {_WORDS[str(f['check'])]}: {f['actual']}",
                contributions=[
                    {
                        "feature": f"{f['check']}:{f['peer']}",
                        "typical": str(f["typical"]),
                        "actual": str(f["actual"]),
                        "weight": round(float(f["score"]), 3),
                    }
                ],
                evidence=[str(i) for i in list(f["evidence"])[:100]],
            )
        )
    return alerts
