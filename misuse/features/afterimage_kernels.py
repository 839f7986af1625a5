"""Compiled (numba) inner loop of the AfterImage extractor: damped statistics over packet arrays.

State lives in two fixed-size stream tables, each an open-addressing hash index over preallocated
slot arrays:

* the *1D table* holds one damped statistic per stream key (source MAC-IP, source IP, directed
  channel, channel jitter, directed socket): per decay factor ``w``, ``s1``, ``s2`` and the last
  residual ``v - mean``;
* the *2D table* holds the cross term of an undirected channel or socket: per decay factor ``w3``
  and ``cf3`` (sum of products of the two directions' residuals).

Keys are 64-bit hashes of the identifying fields. When a table runs out of free slots it is purged:
streams idle longer than ``max_idle`` seconds go first, then the least recently seen until a quarter
of the table is free; the index is rebuilt from the surviving slots. Memory is therefore fixed by
the capacity, whatever the traffic.
"""

from __future__ import annotations

import numpy as np
from numba import njit

N_1D = 3  # weight, mean, variance
N_2D = 7  # weight, mean, std, magnitude, radius, covariance, pcc
PER_1D = 4  # state per decay factor in the 1D table: w, s1, s2, last residual
PER_2D = 2  # state per decay factor in the 2D table: w3, cf3

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def _h(a: np.uint64, b: np.uint64) -> np.uint64:
    return _mix(a * _GOLD + _mix(b))


@njit(cache=True)
def _find(index: np.ndarray, keys: np.ndarray, key: np.uint64) -> int:
    mask = np.int64(index.shape[0] - 1)
    pos = np.int64(key & np.uint64(mask))
    while True:
        s = index[pos]
        if s == 0:
            return -1
        if keys[s - 1] == key:
            return int(s - 1)
        pos = (pos + np.int64(1)) & mask


@njit(cache=True)
def _place(index: np.ndarray, key: np.uint64, slot: int) -> None:
    mask = np.int64(index.shape[0] - 1)
    pos = np.int64(key & np.uint64(mask))
    while index[pos] != 0:
        pos = (pos + np.int64(1)) & mask
    index[pos] = slot + 1


@njit(cache=True)
def _get(
    index: np.ndarray,
    keys: np.ndarray,
    live: np.ndarray,
    last_t: np.ndarray,
    data: np.ndarray,
    free: np.ndarray,
    nfree: np.ndarray,
    key: np.uint64,
    t: float,
) -> int:
    """The slot of ``key``, creating a zeroed one (the caller made sure a free slot exists)."""
    s = _find(index, keys, key)
    if s >= 0:
        return s
    nfree[0] -= 1
    s = int(free[nfree[0]])
    keys[s] = key
    live[s] = True
    last_t[s] = t
    data[s, :] = 0.0
    _place(index, key, s)
    return s


@njit(cache=True)
def _purge(
    index: np.ndarray,
    keys: np.ndarray,
    live: np.ndarray,
    last_t: np.ndarray,
    free: np.ndarray,
    nfree: np.ndarray,
    t: float,
    max_idle: float,
) -> int:
    """Drop idle streams (then the oldest) until a quarter of the table is free; rebuild the index."""
    cap = keys.shape[0]
    evicted = 0
    n_live = 0
    for s in range(cap):
        if live[s]:
            if t - last_t[s] > max_idle:
                live[s] = False
                evicted += 1
            else:
                n_live += 1
    want_free = max(cap // 4, 1)
    if cap - n_live < want_free:
        age = np.full(cap, np.inf)
        for s in range(cap):
            if live[s]:
                age[s] = last_t[s]
        order = np.argsort(age)
        k = want_free - (cap - n_live)
        for j in range(k):
            live[order[j]] = False
        evicted += k
    index[:] = 0
    n = 0
    for s in range(cap):
        if live[s]:
            _place(index, keys[s], s)
        else:
            free[n] = s
            n += 1
    nfree[0] = n
    return evicted


@njit(cache=True, inline="always")
def _decay(lam: float, dt: float) -> float:
    if dt <= 0.0:
        return 1.0
    return 2.0 ** (-lam * dt)


@njit(cache=True)
def _update_1d(data: np.ndarray, last_t: np.ndarray, s: int, v: float, t: float, lambdas: np.ndarray) -> None:
    dt = t - last_t[s]
    for li in range(lambdas.shape[0]):
        f = _decay(lambdas[li], dt)
        b = li * PER_1D
        w = data[s, b] * f + 1.0
        s1 = data[s, b + 1] * f + v
        s2 = data[s, b + 2] * f + v * v
        data[s, b] = w
        data[s, b + 1] = s1
        data[s, b + 2] = s2
        data[s, b + 3] = v - s1 / w
    if t > last_t[s]:
        last_t[s] = t


@njit(cache=True)
def _decay_1d(data: np.ndarray, last_t: np.ndarray, s: int, t: float, lambdas: np.ndarray) -> None:
    dt = t - last_t[s]
    if dt <= 0.0:
        return
    for li in range(lambdas.shape[0]):
        f = _decay(lambdas[li], dt)
        b = li * PER_1D
        data[s, b] *= f
        data[s, b + 1] *= f
        data[s, b + 2] *= f
    last_t[s] = t


@njit(cache=True, inline="always")
def _mean_var(data: np.ndarray, s: int, b: int) -> tuple[float, float, float]:
    w = data[s, b]
    if w <= 0.0:
        return 0.0, 0.0, 0.0
    mean = data[s, b + 1] / w
    var = data[s, b + 2] / w - mean * mean
    return w, mean, var if var > 0.0 else 0.0


@njit(cache=True)
def _write_1d(out: np.ndarray, i: int, off: int, data: np.ndarray, s: int, n_lam: int) -> None:
    for li in range(n_lam):
        w, mean, var = _mean_var(data, s, li * PER_1D)
        o = off + li * N_1D
        out[i, o] = w
        out[i, o + 1] = mean
        out[i, o + 2] = var


@njit(cache=True)
def _stream_2d(
    out: np.ndarray,
    i: int,
    off: int,
    v: float,
    t: float,
    key_a: np.uint64,
    key_b: np.uint64,
    key_c: np.uint64,
    lambdas: np.ndarray,
    t1: tuple,  # type: ignore[type-arg]
    t2: tuple,  # type: ignore[type-arg]
) -> None:
    """Update the directed stream a (and the a<->b cross term) with value v; write 7 stats per lambda."""
    index, keys, live, last_t, data, free, nfree = t1
    index2, keys2, live2, last2, data2, free2, nfree2 = t2
    sa = _get(index, keys, live, last_t, data, free, nfree, key_a, t)
    _update_1d(data, last_t, sa, v, t, lambdas)
    sb = _find(index, keys, key_b)
    if sb >= 0:
        _decay_1d(data, last_t, sb, t, lambdas)
    sc = _get(index2, keys2, live2, last2, data2, free2, nfree2, key_c, t)
    dtc = t - last2[sc]
    if t > last2[sc]:
        last2[sc] = t
    for li in range(lambdas.shape[0]):
        f = _decay(lambdas[li], dtc)
        b = li * PER_1D
        res_b = data[sb, b + 3] if sb >= 0 else 0.0
        w3 = data2[sc, li * PER_2D] * f + 1.0
        cf3 = data2[sc, li * PER_2D + 1] * f + data[sa, b + 3] * res_b
        data2[sc, li * PER_2D] = w3
        data2[sc, li * PER_2D + 1] = cf3
        wa, ma, va = _mean_var(data, sa, b)
        mb, vb = 0.0, 0.0
        if sb >= 0:
            _, mb, vb = _mean_var(data, sb, b)
        cov = cf3 / w3
        sda, sdb = np.sqrt(va), np.sqrt(vb)
        o = off + li * N_2D
        out[i, o] = wa
        out[i, o + 1] = ma
        out[i, o + 2] = sda
        out[i, o + 3] = np.sqrt(ma * ma + mb * mb)
        out[i, o + 4] = np.sqrt(va + vb)
        out[i, o + 5] = cov
        out[i, o + 6] = cov / (sda * sdb) if sda * sdb > 0.0 else 0.0


@njit(cache=True)
def extract(
    t: np.ndarray,
    size: np.ndarray,
    mac: np.ndarray,
    src_hi: np.ndarray,
    src_lo: np.ndarray,
    dst_hi: np.ndarray,
    dst_lo: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    lambdas: np.ndarray,
    t1: tuple,  # type: ignore[type-arg]
    t2: tuple,  # type: ignore[type-arg]
    max_idle: float,
    out: np.ndarray,
) -> int:
    """AfterImage features of a chunk of packets, updating the stream tables in place.

    ``t`` is seconds (float64), ``size`` the packet length, ``mac`` the source MAC (0 when the
    link has none), addresses as (hi, lo) uint64 pairs, ports already mapped to a protocol code
    when the packet has none. Returns the number of streams evicted.
    """
    index, keys, live, last_t, data, free, nfree = t1
    index2, keys2, live2, last2, _, free2, nfree2 = t2
    n_lam = lambdas.shape[0]
    off_h = n_lam * N_1D
    off_hh = 2 * off_h
    off_jit = off_hh + n_lam * N_2D
    off_hphp = off_jit + off_h
    evicted = 0
    for i in range(t.shape[0]):
        ti = t[i]
        if nfree[0] < 8:
            evicted += _purge(index, keys, live, last_t, free, nfree, ti, max_idle)
        if nfree2[0] < 4:
            evicted += _purge(index2, keys2, live2, last2, free2, nfree2, ti, max_idle)
        v = float(size[i])
        src = _h(src_hi[i], src_lo[i])
        dst = _h(dst_hi[i], dst_lo[i])
        # source MAC-IP and source IP
        s = _get(index, keys, live, last_t, data, free, nfree, _h(np.uint64(1), _h(mac[i], src)), ti)
        _update_1d(data, last_t, s, v, ti, lambdas)
        _write_1d(out, i, 0, data, s, n_lam)
        s = _get(index, keys, live, last_t, data, free, nfree, _h(np.uint64(2), src), ti)
        _update_1d(data, last_t, s, v, ti, lambdas)
        _write_1d(out, i, off_h, data, s, n_lam)
        # channel (source IP -> destination IP) with its reverse direction
        lo, hi = (src, dst) if src < dst else (dst, src)
        _stream_2d(
            out,
            i,
            off_hh,
            v,
            ti,
            _h(np.uint64(3), _h(src, dst)),
            _h(np.uint64(3), _h(dst, src)),
            _h(np.uint64(4), _h(lo, hi)),
            lambdas,
            t1,
            t2,
        )
        # channel jitter: time since this channel's previous packet
        s = _get(index, keys, live, last_t, data, free, nfree, _h(np.uint64(5), _h(src, dst)), ti)
        seen = data[s, 0] > 0.0
        gap = ti - last_t[s] if seen and ti > last_t[s] else 0.0
        _update_1d(data, last_t, s, gap, ti, lambdas)
        _write_1d(out, i, off_jit, data, s, n_lam)
        # socket (source IP:port -> destination IP:port)
        a = _h(src, sport[i])
        b = _h(dst, dport[i])
        lo, hi = (a, b) if a < b else (b, a)
        _stream_2d(
            out,
            i,
            off_hphp,
            v,
            ti,
            _h(np.uint64(6), _h(a, b)),
            _h(np.uint64(6), _h(b, a)),
            _h(np.uint64(7), _h(lo, hi)),
            lambdas,
            t1,
            t2,
        )
    return evicted
