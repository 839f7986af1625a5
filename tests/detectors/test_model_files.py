"""Damaged model files: every load refuses them with a SchemaError naming the file, never unpickles.

Covers :func:`misuse.detectors.registry.load_detector` (JSON + npz: a flat detector and the packet
CNN) and :meth:`misuse.detectors.gnn.FlowGraphSAGE.load` (JSON + safetensors).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from misuse.detectors.base import Detector
from misuse.detectors.cnn import PacketCNN
from misuse.detectors.gnn import FlowGraphSAGE
from misuse.detectors.registry import load_detector, make_detector
from misuse.errors import SchemaError
from misuse.features.packetseq import CHANNELS, to_frame

Damage = Callable[[Path], None]


def _flat() -> Detector:
    rows = np.random.default_rng(0).normal(size=(300, 3))
    return make_detector("iforest", seed=0).learn_many(pd.DataFrame(rows, columns=["a", "b", "c"]))


def _cnn() -> Detector:
    seq = np.random.default_rng(1).normal(size=(60, len(CHANNELS), 6)).astype(np.float32)
    return PacketCNN(epochs=1, seed=0).learn_many(to_frame(seq))


def _gnn() -> FlowGraphSAGE:
    rng = np.random.default_rng(2)
    flows = pd.DataFrame(
        {
            "src": rng.choice(["a", "b", "c"], 200),
            "dst": rng.choice(["x", "y"], 200),
            "ts": np.sort(rng.uniform(0, 600, 200)),
            "bytes": rng.normal(5, 1, 200),
        }
    )
    return FlowGraphSAGE(epochs=2, seed=0).learn_many(flows)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"flat": _flat().save(root / "flat"), "cnn": _cnn().save(root / "cnn"), "gnn": _gnn().save(root / "gnn")}


def _load(kind: str, folder: Path) -> object:
    return FlowGraphSAGE.load(folder) if kind == "gnn" else load_detector(folder)


def _without_array(key: str) -> Damage:
    def damage(path: Path) -> None:
        if path.suffix == ".safetensors":
            arrays = load_file(str(path))
            del arrays[key]
            save_file(arrays, str(path))
        else:
            with np.load(path) as npz:
                arrays = {k: npz[k] for k in npz.files if k != key}
            np.savez(path, **arrays)  # type: ignore[arg-type]

    return damage


def _without_field(key: str) -> Damage:
    def damage(path: Path) -> None:
        meta = json.loads(path.read_text())
        del meta[key]
        path.write_text(json.dumps(meta))

    return damage


def _pickled(path: Path) -> None:
    np.savez(path, _median=np.array([{"a": 1}], dtype=object))


STATE = {"flat": "state.npz", "cnn": "state.npz", "gnn": "weights.safetensors"}
FIRST_ARRAY = {"flat": "_scale", "cnn": "chan_mean", "gnn": "median"}
CASES: list[tuple[str, str, Damage | None, str]] = []
for _kind in ("flat", "cnn", "gnn"):
    _state = STATE[_kind]
    CASES += [
        (_kind, _state, lambda p: p.write_bytes(b""), "empty|not a safetensors file"),
        (_kind, _state, lambda p: p.write_bytes(b"\x80\x04garbled model" * 40), "not an npz archive|not a safetensors"),
        (_kind, _state, lambda p: p.write_bytes(p.read_bytes()[:200]), "cut short|not a safetensors"),
        (_kind, _state, None, "missing"),
        (_kind, _state, _without_array(FIRST_ARRAY[_kind]), f"no (array|tensor) '{FIRST_ARRAY[_kind]}'"),
        (_kind, "detector.json", lambda p: p.write_text(""), "not valid JSON"),
        (_kind, "detector.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object, got list"),
        (_kind, "detector.json", _without_field("features"), "no 'features' field"),
    ]
CASES.append(("flat", "state.npz", _pickled, "holds Python objects"))


@pytest.mark.parametrize(
    ("kind", "name", "damage", "problem"), CASES, ids=[f"{k}-{n}-{i}" for i, (k, n, _, _) in enumerate(CASES)]
)
def test_a_damaged_model_file_is_a_schema_error_naming_it(
    saved: dict[str, Path], tmp_path: Path, kind: str, name: str, damage: Damage | None, problem: str
) -> None:
    folder = Path(shutil.copytree(saved[kind], tmp_path / kind))
    target = folder / name
    if damage is None:
        target.unlink()
    else:
        damage(target)

    with pytest.raises(SchemaError) as caught:
        _load(kind, folder)

    message = str(caught.value)
    assert message.startswith(f"{target}: "), message
    assert re.search(problem, message), message
    assert "allow_pickle" not in message and "unsafely" not in message
    assert "\n" not in message


def test_weights_of_another_shape_are_a_schema_error(saved: dict[str, Path], tmp_path: Path) -> None:
    folder = Path(shutil.copytree(saved["gnn"], tmp_path / "gnn"))
    meta = json.loads((folder / "detector.json").read_text())
    meta["params"]["hidden"] = int(meta["params"]["hidden"]) + 3
    (folder / "detector.json").write_text(json.dumps(meta))

    with pytest.raises(SchemaError, match=rf"^{re.escape(str(folder))}: the saved files do not load as FlowGraphSAGE"):
        FlowGraphSAGE.load(folder)


def test_unknown_class_and_bad_params_name_the_json_file(saved: dict[str, Path], tmp_path: Path) -> None:
    folder = Path(shutil.copytree(saved["flat"], tmp_path / "flat"))
    meta_path = folder / "detector.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "class": "os:system"}))
    with pytest.raises(SchemaError, match="'os:system' is not a registered detector"):
        load_detector(folder)
    meta_path.write_text(json.dumps({**meta, "params": {"bogus": 1}}))
    with pytest.raises(SchemaError, match=rf"^{re.escape(str(meta_path))}: 'params' do not fit IsolationForest"):
        load_detector(folder)


def test_undamaged_files_still_load(saved: dict[str, Path]) -> None:
    assert isinstance(load_detector(saved["flat"]), Detector)
    assert isinstance(load_detector(saved["cnn"]), PacketCNN)
    assert FlowGraphSAGE.load(saved["gnn"]).is_fitted
