"""Simulated tampering of telemetry, for evaluating the integrity checks where labels are missing.

:func:`inject_tampering` takes normal telemetry (an events frame) and overwrites short episodes
of each device's readings with one of five kinds of tampering, returning the changed frame and the
ground truth per reading:

``spike``   one numeric value per reading set far outside the device's range (impossible value);
``frozen``  every reading of the episode repeats the reading just before it (stuck sensor);
``replay``  the episode's readings are a copy of an earlier stretch (from ``history``);
``offset``  numeric values shifted by ``offset_sd`` standard deviations (injected values);
``swap``    one sensor's values replaced by values from random other readings, so it no longer
            agrees with the device's other sensors (cross-sensor inconsistency).

Kinds a device cannot have (``offset``/``spike`` without numeric columns, ``swap`` with a single
sensor) are skipped for that device.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from misuse.errors import InvalidParameterError
from misuse.events import CAT_PREFIX, NUM_PREFIX

KINDS: tuple[str, ...] = ("spike", "frozen", "replay", "offset", "swap")


def inject_tampering(
    frame: pd.DataFrame,
    history: pd.DataFrame | None = None,
    kinds: tuple[str, ...] = KINDS,
    episodes: int = 4,
    length: int = 30,
    offset_sd: float = 3.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.Series]:
    """Overwrite episodes of readings with tampering; returns (frame, truth).

    Parameters
    ----------
    frame:
        Normal telemetry (ts, entity, event_id, num.*, cat.*), left unchanged.
    history:
        Earlier readings replays are copied from (default: ``frame`` itself).
    kinds:
        Which kinds to inject (see the module docstring).
    episodes:
        Episodes of each kind per device.
    length:
        Readings per episode (``spike`` episodes hit every 10th reading of it).
    offset_sd:
        Size of the ``offset`` shift in standard deviations of the column.
    seed:
        Seed of the random choices.

    Returns
    -------
    (pandas.DataFrame, pandas.Series)
        The tampered copy (same index and order) and, per row, the kind injected or "".

    Examples
    --------
    >>> ts = pd.date_range("2024-01-01", periods=2000, freq="min", tz="UTC")
    >>> f = pd.DataFrame({"ts": ts, "entity": "t1", "event_id": [str(i) for i in range(2000)],
    ...                   "num.temp": np.sin(np.arange(2000) / 50)})
    >>> out, truth = inject_tampering(f, kinds=("frozen",), episodes=2, length=20)
    >>> int((truth == "frozen").sum())
    40
    """
    bad = [k for k in kinds if k not in KINDS]
    if bad or episodes < 1 or length < 2:
        raise InvalidParameterError(
            f"inject_tampering: kinds must be among {KINDS}, episodes >= 1, length >= 2; "
            f"got kinds {list(kinds)}, episodes {episodes}, length {length}"
        )
    rng = np.random.default_rng(seed)
    out = frame.copy()
    truth = pd.Series("", index=frame.index, dtype=object)
    hist = history if history is not None else frame
    for entity, part in frame.groupby("entity", sort=True):
        order = part.sort_values("ts", kind="stable").index.to_numpy()
        num = [c for c in frame.columns if c.startswith(NUM_PREFIX) and part[c].notna().any()]
        cat = [c for c in frame.columns if c.startswith(CAT_PREFIX) and part[c].notna().any() and c != "cat.uid"]
        cols = num + cat
        past = hist[hist["entity"] == entity].sort_values("ts", kind="stable")
        usable = [
            k
            for k in kinds
            if not (k in ("spike", "offset") and not num)
            and not (k == "swap" and len(cols) < 2)
            and not (k == "replay" and len(past) < length)
        ]
        n_ep = episodes * len(usable)
        slots = (len(order) - 1) // (2 * length)
        if not n_ep or slots < n_ep:
            continue
        starts = 1 + np.sort(rng.choice(slots, n_ep, replace=False)) * 2 * length
        plan = rng.permutation(np.repeat(usable, episodes))
        for kind, s in zip(plan, starts, strict=True):
            rows = order[s : s + length]
            if kind == "spike":
                rows = rows[::10]
                for r in rows:
                    c = num[int(rng.integers(len(num)))]
                    v = part[c].to_numpy(float)
                    lo, hi = np.nanmin(v), np.nanmax(v)
                    out.loc[r, c] = hi + (3 + rng.uniform()) * max(hi - lo, abs(hi), 1.0)
            elif kind == "frozen":
                out.loc[rows, cols] = out.loc[[order[s - 1]] * len(rows), cols].to_numpy()
            elif kind == "replay":
                at = int(rng.integers(0, len(past) - length + 1))
                out.loc[rows, cols] = past[cols].iloc[at : at + length].to_numpy()
            elif kind == "offset":
                for c in num:
                    sd = float(np.nanstd(part[c].to_numpy(float))) or 1.0
                    out.loc[rows, c] = out.loc[rows, c].to_numpy(float) + offset_sd * sd
            else:
                c = cols[int(rng.integers(len(cols)))]
                donors = rng.choice(order, len(rows))
                out.loc[rows, c] = frame.loc[donors, c].to_numpy()
            truth.loc[rows] = kind
    return out, truth
