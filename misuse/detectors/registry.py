"""Which detectors exist, by name. Built on call (no import-time side effects); heavy ones import lazily."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from misuse.detectors.base import Detector
from misuse.errors import InvalidParameterError, SchemaError

# name -> "module:Class"; the single list of registered detectors (the conformance suite runs over it)
_DETECTORS: dict[str, str] = {
    "iforest": "misuse.detectors.iforest:IsolationForest",
    "robustz": "misuse.detectors.robustz:RobustZ",
    "kitnet": "misuse.detectors.kitnet:KitNET",
    "autoencoder": "misuse.detectors.autoencoder:DeepAutoencoder",
    "kmeans": "misuse.detectors.wrapped:KMeansDistance",
    "ocsvm": "misuse.detectors.wrapped:OneClassSVM",
    "ecod": "misuse.detectors.wrapped:ECOD",
    "hst": "misuse.detectors.wrapped:HalfSpaceTrees",
    "cnn": "misuse.detectors.cnn:PacketCNN",
}


def available() -> dict[str, str]:
    """Registered detector names and where they live."""
    return dict(_DETECTORS)


def detector_class(name: str) -> type[Detector]:
    """The class registered under ``name`` (or a class name such as ``IsolationForest``)."""
    target = _DETECTORS.get(name)
    if target is None:
        by_class = {v.rsplit(":", 1)[1]: v for v in _DETECTORS.values()}
        target = by_class.get(name)
    if target is None:
        raise InvalidParameterError(f"unknown detector {name!r}; registered: {sorted(_DETECTORS)}")
    module, cls = target.split(":")
    return getattr(import_module(module), cls)  # type: ignore[no-any-return]


def make_detector(name: str, **params: Any) -> Detector:
    """Build a registered detector; ``seed`` is passed only if the detector takes one."""
    cls = detector_class(name)
    if "seed" in params and "seed" not in cls._params:
        params.pop("seed")
    return cls(**params)


def load_detector(folder: str | Path) -> Detector:
    """Load a detector saved with :meth:`Detector.save` (JSON + npz; never executes code)."""
    folder = Path(folder)
    meta_path = folder / "detector.json"
    if not meta_path.exists():
        raise SchemaError(f"{folder}: not a saved detector (detector.json missing)")
    meta = json.loads(meta_path.read_text())
    cls = detector_class(str(meta.get("class", "")))
    with np.load(folder / "state.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return cls._restore(meta, arrays)
