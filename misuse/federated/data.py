"""A site's local data: events read with the project's readers, turned into model inputs.

Nothing here leaves the site: the Flower client (:mod:`misuse.federated.flower`) keeps these
matrices and action lists in memory and sends only model parameters and a few scalar metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from misuse.errors import SchemaError
from misuse.events import events_to_frame, is_malicious_label
from misuse.features.windows import window_features
from misuse.ingest.base import DeadLetter
from misuse.ingest.formats import reader_for

#: the window features every site computes for the autoencoder, in this order (the model's input);
#: a feature a site's data cannot give (no such attribute) is 0 there.
WINDOW_FEATURES = (
    "events",
    "peers",
    "actions",
    "dst_ports",
    "failed_frac",
    "login_frac",
    "login_failures",
    "top_action_frac",
    "sum:orig_bytes",
    "max:orig_bytes",
    "sum:resp_bytes",
    "max:resp_bytes",
    "sum:orig_pkts",
    "max:orig_pkts",
    "sum:resp_pkts",
    "max:resp_pkts",
    "mean:duration",
    "max:duration",
    "hour_sin",
    "hour_cos",
)


def read_events(
    paths: Sequence[str | Path],
    fmt: str | None = None,
    mapping: str | Path | None = None,
    dead: DeadLetter | None = None,
) -> pd.DataFrame:
    """Read one or more files (format sniffed unless ``fmt`` is given) into one events frame.

    ``mapping`` (a built-in mapping name or a YAML file, as for ``misuse ingest --mapping``) is what
    ``csv`` and ``jsonl`` files are read through (TON_IoT, N-BaIoT, ...); other formats ignore it.
    Bad records are counted in ``dead`` (and written to its file, if it has one), never fatal.
    """
    frames = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise SchemaError(f"site data {path}: no such file")
        frames.append(reader_for(path, fmt, mapping=mapping)[1].read(path, dead=dead))
    if not frames:
        return events_to_frame([])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def window_matrix(
    events: pd.DataFrame, window: float = 60.0, features: Sequence[str] = WINDOW_FEATURES
) -> tuple[np.ndarray, np.ndarray]:
    """Window features of ``events`` as a (windows, features) matrix in time order, and each window's attack flag.

    Missing features and NaN values become 0 (every feature is a log-count, a share or a sine,
    for which 0 means "none").
    """
    if len(events) == 0:
        raise SchemaError("site data: no events to build window features from")
    w = window_features(events, window)
    if "window_start" in w:
        w = w.sort_values("window_start", kind="stable")  # time order: the first rows are the oldest
    X = w.reindex(columns=list(features)).to_numpy(dtype="float64", na_value=np.nan)
    X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    y = w["label"].map(_is_attack).to_numpy(dtype=bool) if "label" in w else np.zeros(len(w), dtype=bool)
    return X, y


def _is_attack(label: object) -> bool:
    return bool(is_malicious_label(label))


def user_actions(events: pd.DataFrame) -> dict[str, list[str]]:
    """Each entity's actions in time order (the naive-Bayes model's input)."""
    if len(events) == 0:
        raise SchemaError("site data: no events to build action profiles from")
    ordered = events.sort_values("ts", kind="stable")
    return {str(k): [str(a) for a in g["action"]] for k, g in ordered.groupby("entity", sort=True)}


def split_rows(n: int, holdout: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random train / validation row indices (the validation part gives the federated loss)."""
    idx = np.random.default_rng(seed).permutation(n)
    k = round(n * holdout) if n > 4 else 0
    return np.sort(idx[k:]), np.sort(idx[:k])
