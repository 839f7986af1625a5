"""Building blocks for simulated network flows: times, sizes and Zeek-shaped flow records.

Every function takes a :class:`numpy.random.Generator` and works on whole arrays, so a block
of tens of thousands of flows costs one call, not one Python iteration per flow.

A flow block is a pandas DataFrame with one row per connection and the raw Zeek conn.log
quantities (``ts``, ``orig_h``, ``orig_p``, ``resp_h``, ``resp_p``, ``proto``, ``service``,
``duration``, ``orig_bytes``, ``resp_bytes``, ``conn_state``, ``history``, ``orig_pkts``,
``orig_ip_bytes``, ``resp_pkts``, ``resp_ip_bytes``) plus ``label`` and ``attack_id``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HOUR = 3600.0
DAY = 86400.0
MSS = 1448.0
TCP_OVERHEAD = 52.0  # IPv4 + TCP with timestamps, per packet
UDP_OVERHEAD = 28.0  # IPv4 + UDP, per packet
_UID_ALPHABET = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))

FLOW_COLUMNS: tuple[str, ...] = (
    "ts",
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "label",
    "attack_id",
)


def periodic_times(
    rng: np.random.Generator,
    t0: float,
    t1: float,
    period: float,
    *,
    jitter: float = 0.5,
    drop: float = 0.0,
) -> np.ndarray:
    """Times of a periodic reporter between ``t0`` and ``t1`` (epoch seconds).

    Each tick is moved by a normal jitter of ``jitter`` seconds; a fraction ``drop`` of the
    ticks is missing (a lost publish, a sleeping radio).
    """
    if t1 <= t0 or period <= 0:
        return np.empty(0)
    phase = rng.uniform(0.0, period)
    ts = np.arange(t0 + phase, t1, period)
    ts = ts + rng.normal(0.0, jitter, ts.size)
    if drop > 0:
        ts = ts[rng.random(ts.size) >= drop]
    return ts[(ts >= t0) & (ts < t1)]


def poisson_times(
    rng: np.random.Generator,
    t0: float,
    days: int,
    hourly_rate: np.ndarray,
    *,
    weekend_rate: np.ndarray | None = None,
) -> np.ndarray:
    """Times of a non-homogeneous Poisson process with a per-hour-of-day rate.

    Parameters
    ----------
    rng:
        The random generator.
    t0:
        Midnight UTC of the first day, epoch seconds.
    days:
        Number of days.
    hourly_rate:
        24 expected counts per hour on weekdays.
    weekend_rate:
        24 expected counts per hour on Saturdays and Sundays (defaults to ``hourly_rate``).
    """
    weekend = hourly_rate if weekend_rate is None else weekend_rate
    day_index = np.floor(t0 / DAY).astype(np.int64) + np.arange(days)
    # 1970-01-01 was a Thursday: weekday() = (days since epoch + 3) % 7, Monday = 0.
    is_weekend = ((day_index + 3) % 7) >= 5
    rates = np.where(is_weekend[:, None], weekend[None, :], hourly_rate[None, :]).ravel()
    counts = rng.poisson(np.maximum(rates, 0.0))
    starts = t0 + np.arange(days * 24) * HOUR
    ts = np.repeat(starts, counts) + rng.random(int(counts.sum())) * HOUR
    return np.sort(ts)


def lognormal(rng: np.random.Generator, median: float, sigma: float, n: int) -> np.ndarray:
    """``n`` lognormal draws with the given median and log-space spread."""
    return median * np.exp(sigma * rng.standard_normal(n))


def make_uids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Zeek-style connection uids ("C" followed by 17 base-62 characters)."""
    if n == 0:
        return np.empty(0, dtype=object)
    chars = _UID_ALPHABET[rng.integers(0, _UID_ALPHABET.size, size=(n, 17))]
    body = np.ascontiguousarray(chars).view("<U17").ravel()
    return np.char.add("C", body).astype(object)


def ephemeral_ports(rng: np.random.Generator, n: int) -> np.ndarray:
    """Source ports from the Linux ephemeral range."""
    return rng.integers(32768, 61000, size=n)


def _broadcast(value: object, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(n, arr.item(), dtype=object if arr.dtype.kind in "UO" else arr.dtype)
    if arr.size != n:
        raise ValueError(f"flow block: attribute of length {arr.size} for {n} flows")
    return arr


def flow_block(
    rng: np.random.Generator,
    ts: np.ndarray,
    *,
    orig_h: object,
    resp_h: object,
    resp_p: object,
    proto: str,
    service: str = "-",
    conn_state: object = "SF",
    duration: object = 0.1,
    orig_bytes: object = 0.0,
    resp_bytes: object = 0.0,
    orig_p: object = None,
    label: str = "benign",
    attack_id: str = "",
) -> pd.DataFrame:
    """Build Zeek-shaped flows with packet counts, IP bytes and history consistent with the state.

    States understood: ``SF`` (normal), ``S0`` (no answer), ``REJ`` (refused), ``RSTO``
    (originator reset) and ``S1`` (still open). A one-packet ``S0`` flow has no duration and
    no byte counts, as Zeek writes it.
    """
    n = int(np.asarray(ts).size)
    state = _broadcast(conn_state, n).astype(object)
    dur = _broadcast(duration, n).astype(float).copy()
    ob = np.round(_broadcast(orig_bytes, n).astype(float))
    rb = np.round(_broadcast(resp_bytes, n).astype(float))
    sport = ephemeral_ports(rng, n) if orig_p is None else _broadcast(orig_p, n).astype(np.int64)
    no_answer = state == "S0"
    refused = state == "REJ"
    rb = np.where(no_answer | refused, 0.0, rb)
    ob = np.where(refused | ((proto == "tcp") & no_answer), 0.0, ob)
    if proto == "tcp":
        data_o = np.ceil(ob / MSS)
        data_r = np.ceil(rb / MSS)
        opkts = 3.0 + data_o + np.ceil(data_r / 2.0)
        rpkts = 2.0 + data_r + np.ceil(data_o / 2.0)
        retries = rng.integers(1, 4, n).astype(float)
        opkts = np.where(no_answer, retries, opkts)
        rpkts = np.where(no_answer, 0.0, rpkts)
        opkts = np.where(refused, 1.0, opkts)
        rpkts = np.where(refused, 1.0, rpkts)
        history = np.where(ob > 0, "ShADadFf", "ShAFf").astype(object)
        history = np.where(rb == 0, np.where(ob > 0, "ShADaFf", "ShAFf"), history).astype(object)
        history = np.where(state == "RSTO", "ShADadR", history)
        history = np.where(state == "S1", "ShADad", history)
        history = np.where(no_answer, "S", history)
        history = np.where(refused, "Sr", history)
        overhead = TCP_OVERHEAD
        # a refused SYN and its RST carry no options
        o_ipb = np.where(refused, 44.0, opkts * overhead + ob)
        r_ipb = np.where(refused, 40.0, rpkts * overhead + rb)
        o_ipb = np.where(no_answer, opkts * 60.0, o_ipb)
    else:
        opkts = np.maximum(1.0, np.ceil(ob / MSS))
        rpkts = np.where(no_answer, 0.0, np.maximum(1.0, np.ceil(rb / MSS)))
        history = np.where(no_answer, "D", "Dd").astype(object)
        overhead = UDP_OVERHEAD
        o_ipb = opkts * overhead + ob
        r_ipb = rpkts * overhead + rb
    single = no_answer & (opkts <= 1.0) & (rpkts == 0.0)
    dur = np.where(single, np.nan, dur)
    ob = np.where(single & (proto == "tcp"), np.nan, ob)
    rb = np.where(single & (proto == "tcp"), np.nan, rb)
    return pd.DataFrame(
        {
            "ts": np.asarray(ts, dtype=float),
            "orig_h": _broadcast(orig_h, n).astype(object),
            "orig_p": sport.astype(np.int64),
            "resp_h": _broadcast(resp_h, n).astype(object),
            "resp_p": _broadcast(resp_p, n).astype(np.int64),
            "proto": proto,
            "service": service,
            "duration": dur,
            "orig_bytes": ob,
            "resp_bytes": rb,
            "conn_state": state,
            "history": history,
            "orig_pkts": opkts.astype(np.int64),
            "orig_ip_bytes": o_ipb.astype(np.int64),
            "resp_pkts": rpkts.astype(np.int64),
            "resp_ip_bytes": r_ipb.astype(np.int64),
            "label": label,
            "attack_id": attack_id,
        },
        columns=list(FLOW_COLUMNS),
    )
