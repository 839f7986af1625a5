"""Parameter (de)serialisation: arrays as ``.npy`` bytes (no pickle) and the global model on disk.

The wire format inside Flower is Flower's own (``ndarrays_to_parameters``, also ``.npy`` bytes);
these helpers give the same bytes for size accounting and save the final global model as
``model.json`` (kind, configuration, history) + ``model.npz`` (arrays), which cannot execute code
when loaded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from misuse.errors import SchemaError


def array_to_bytes(a: np.ndarray) -> bytes:
    """One array as ``.npy`` bytes (what Flower sends for it)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def bytes_to_array(b: bytes) -> np.ndarray:
    """The inverse of :func:`array_to_bytes`; refuses pickled object arrays."""
    try:
        return np.asarray(np.load(io.BytesIO(b), allow_pickle=False))
    except ValueError as exc:
        raise SchemaError(f"parameter bytes: not a plain numpy array ({exc})") from None


def payload_bytes(arrays: Sequence[np.ndarray]) -> int:
    """Bytes of the serialised arrays of one update."""
    return sum(len(array_to_bytes(a)) for a in arrays)


def save_global(folder: str | Path, meta: Mapping[str, Any], arrays: Sequence[np.ndarray]) -> Path:
    """Write ``model.json`` and ``model.npz`` (arrays named a0, a1, ...) into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps(dict(meta), indent=2, default=float))
    np.savez(out / "model.npz", **{f"a{i}": np.asarray(a) for i, a in enumerate(arrays)})  # type: ignore[arg-type]
    return out


def load_global(folder: str | Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read what :func:`save_global` wrote."""
    src = Path(folder)
    if not (src / "model.json").exists() or not (src / "model.npz").exists():
        raise SchemaError(f"federated model {src}: model.json and model.npz expected")
    meta = json.loads((src / "model.json").read_text())
    with np.load(src / "model.npz", allow_pickle=False) as z:
        arrays = [np.asarray(z[f"a{i}"]) for i in range(len(z.files))]
    return meta, arrays
