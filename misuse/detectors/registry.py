"""Which detectors exist, by name. Built on call (no import-time side effects); heavy ones import lazily."""

from __future__ import annotations

import json
import zipfile
import zlib
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile

from misuse.detectors.base import Detector
from misuse.errors import InvalidParameterError, MisuseError, SchemaError

#: what goes wrong when a damaged model file is turned into a model (a missing key is reported apart)
RESTORE_ERRORS = (MisuseError, ValueError, TypeError, IndexError, RuntimeError, AttributeError)

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


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_meta(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A saved model's JSON metadata: an object holding the ``required`` keys.

    Raises
    ------
    SchemaError
        Naming the file and the problem (unreadable, not JSON, not an object, a key missing).
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{path}: cannot read ({one_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SchemaError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in required if k not in meta]
    if missing:
        raise SchemaError(f"{path}: no {', '.join(map(repr, missing))} field")
    if not isinstance(meta.get("params", {}), dict):
        raise SchemaError(f"{path}: 'params' must be an object, got {type(meta['params']).__name__}")
    return meta


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a saved model's ``.npz`` file, read with ``allow_pickle=False``.

    Raises
    ------
    SchemaError
        Naming the file and the problem; a file numpy could only read as a pickle is refused,
        never unpickled.
    """
    if not path.is_file():
        raise SchemaError(f"{path}: missing")
    try:
        loaded = np.load(path, allow_pickle=False)
    except EOFError:
        raise SchemaError(f"{path}: empty, not an npz archive") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        why = "damaged or cut short" if isinstance(exc, zipfile.BadZipFile) else "not a zip archive"
        raise SchemaError(f"{path}: not an npz archive of plain arrays ({why}; never unpickled)") from None
    if not isinstance(loaded, NpzFile):
        raise SchemaError(f"{path}: a single .npy array, not an npz archive")
    arrays: dict[str, np.ndarray] = {}
    with loaded as npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError:
                raise SchemaError(f"{path}: array {key!r} holds Python objects (pickle), never loaded") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise SchemaError(f"{path}: array {key!r} is damaged ({one_line(exc)})") from None
    return arrays


def load_detector(folder: str | Path) -> Detector:
    """Load a detector saved with :meth:`Detector.save` (JSON + npz; never executes code).

    Raises
    ------
    SchemaError
        Naming the file and the problem when a file is missing, empty, garbled, lacks a field or
        an array, or does not fit the detector class it names.
    """
    folder = Path(folder)
    meta_path = folder / "detector.json"
    if not meta_path.exists():
        raise SchemaError(f"{folder}: not a saved detector (detector.json missing)")
    meta = read_meta(meta_path, ("class", "params", "features"))
    try:
        cls = detector_class(str(meta["class"]))
    except InvalidParameterError:
        raise SchemaError(f"{meta_path}: class {meta['class']!r} is not a registered detector") from None
    try:
        cls(**meta["params"])
    except RESTORE_ERRORS as exc:
        raise SchemaError(f"{meta_path}: 'params' do not fit {cls.__name__} ({one_line(exc)})") from None
    state = folder / "state.npz"
    arrays = read_arrays(state)
    try:
        return cls._restore(meta, arrays)
    except KeyError as exc:
        raise SchemaError(f"{state}: no array {exc.args[0]!r} (a saved {cls.__name__} has one)") from None
    except RESTORE_ERRORS as exc:
        raise SchemaError(f"{folder}: the saved files do not load as {cls.__name__} ({one_line(exc)})") from None
