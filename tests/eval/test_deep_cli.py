"""``misuse eval deep``: the CNN and GNN beside the classic detectors through the CLI (simulator, smoke size)."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from misuse.cli import app


@pytest.mark.slow
def test_eval_deep_prints_deep_and_classic_models_on_one_split() -> None:
    result = CliRunner().invoke(app, ["eval", "deep", "--only", "simulator", "--seeds", "1", "--quick", "--json"])

    assert result.exit_code == 0, result.output
    (res,) = json.loads(result.stdout)
    models = res["unsupervised"]
    assert res["dataset"].startswith("simulator") and res["rows"]["test"] > 0
    assert any(k.startswith("cnn") for k in models) and any(k.startswith("gnn") for k in models)
    assert any(k.startswith("iforest") for k in models)
    for m in models.values():
        assert 0.5 < m["roc_auc"] <= 1.0 and math.isfinite(m["fpr"]) and m["train_s"] >= 0


def test_eval_deep_rejects_an_unknown_dataset() -> None:
    result = CliRunner().invoke(app, ["eval", "deep", "--only", "nope", "--data", "."])

    assert result.exit_code == 3
    assert "nope" in result.output
