"""``misuse policy train|evaluate|apply|log|undo`` end to end on a simulated site and self-made alerts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from misuse.cli import app
from misuse.response.env import ACTIONS, OBS_FEATURES, ResponseEnv
from misuse.response.policy import BanditPolicy
from misuse.response.replay import Replay
from misuse.store.duck import Store

from .conftest import make_alerts

runner = CliRunner()


def _json(args: list[str]) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_train_evaluate_apply_log_and_learn_from_feedback(tmp_path: Path) -> None:
    project = tmp_path / ".misuse"
    p = ["--project", str(project)]

    trained = _json(["policy", "train", "--seeds", "1", "--epochs", "2", "--name", "resp", *p])
    assert isinstance(trained, dict)
    assert trained["streams"] == ["sim-1"]
    assert [h["epoch"] for h in trained["learning_curve"]] == [1, 2]

    assert set(trained["baselines"]) == {"static-tuned", "rulebook"}  # fixed on the training replay

    evaluated = _json(["policy", "evaluate", "--seeds", "11", *p])
    assert isinstance(evaluated, list)
    assert {r["policy"] for r in evaluated} == {"resp", "static-threshold", "static-tuned", "rulebook"}
    assert all(r["stream"] == "sim-11" and r["attack_windows"] > 0 for r in evaluated)
    table = runner.invoke(app, ["policy", "evaluate", "--seeds", "11", *p])
    assert table.exit_code == 0, table.output
    tuned_cost = next(r["total_cost"] for r in evaluated if r["policy"] == "static-tuned")
    assert f"static-tuned: total cost {tuned_cost:,.0f}" in table.output

    store = Store(project)
    store.add_alerts(make_alerts(), dataset="d", model="m")
    store.close()
    applied = _json(["policy", "apply", *p])
    assert isinstance(applied, dict)
    decisions = applied["decisions"]
    # one decision per alert, except alerts of an entity while a decision of this run holds it
    assert applied["policy"] == "resp" and len(decisions) + len(applied["skipped"]) == len(make_alerts())
    assert all(s["reason"].startswith("held by") for s in applied["skipped"])
    assert all(d["action"] in ACTIONS for d in decisions)
    assert all(c["feature"] in OBS_FEATURES for d in decisions for c in d["because"])
    assert any(d["because"] for d in decisions)

    logged = _json(["policy", "log", *p])
    assert isinstance(logged, list)
    assert sorted(r["action_id"] for r in logged) == sorted(d["action_id"] for d in decisions)

    fb = runner.invoke(app, ["feedback", decisions[1]["alert_id"], "false_positive", *p])
    assert fb.exit_code == 0, fb.output
    after = _json(["policy", "apply", *p])
    assert isinstance(after, dict)
    assert after["learned_from_feedback"] == 1 and after["decisions"] == []


def _always(action: str, replays: list[Replay]) -> BanditPolicy:
    """A fitted policy whose every decision is ``action`` (its reward models made constant)."""
    pol = BanditPolicy(seed=0).fit(ResponseEnv(replays), epochs=1)
    for a in range(len(ACTIONS)):
        w = np.zeros(pol.A_.shape[1])
        w[0] = 10.0 if ACTIONS[a] == action else -10.0
        pol.b_[a] = pol.A_[a] @ w
    return pol


def test_undo_lifts_actions_but_not_ignore_decisions(train_replays: list[Replay], tmp_path: Path) -> None:
    project = tmp_path / ".misuse"
    p = ["--project", str(project)]
    store = Store(project)
    store.add_alerts(make_alerts(), dataset="d", model="m")
    for name, action in (("limits", "rate_limit"), ("ignores", "ignore")):
        _always(action, train_replays).save(store.model_dir(name))
        store.register_model(name, "policy", {})
    store.close()
    ignored = _json(["policy", "apply", "--name", "ignores", *p])
    limited = _json(["policy", "apply", "--name", "limits", *p])
    assert isinstance(limited, dict) and isinstance(ignored, dict)
    assert {d["action"] for d in ignored["decisions"]} == {"ignore"} and len(ignored["decisions"]) == 6
    # alerts one minute apart, cam and plug in turn: each entity's first rate limit holds its later alerts
    assert [(d["entity"], d["action"]) for d in limited["decisions"]] == [("cam", "rate_limit"), ("plug", "rate_limit")]
    assert len(limited["skipped"]) == 4

    first = limited["decisions"][0]["action_id"]
    assert _json(["policy", "undo", first, *p]) == {"undone": 1}
    again = runner.invoke(app, ["policy", "undo", first, *p])
    assert again.exit_code == 3 and first in again.output
    none_left = runner.invoke(app, ["policy", "undo", "--entity", "cam", *p])  # the ignores of cam do not count
    assert none_left.exit_code == 3 and "no active action with entity 'cam'" in none_left.output
    assert _json(["policy", "undo", "--entity", "plug", *p]) == {"undone": 1}
    an_ignore = ignored["decisions"][0]["action_id"]
    refused = runner.invoke(app, ["policy", "undo", an_ignore, *p])
    assert refused.exit_code == 3 and "nothing in force" in refused.output

    logged = {s: _json(["policy", "log", "--status", s, *p]) for s in ("active", "undone", "no_action")}
    assert {s: len(rows) for s, rows in logged.items()} == {"active": 0, "undone": 2, "no_action": 6}
    # with the holds lifted, the alerts they held come up again
    lifted = _json(["policy", "apply", "--name", "limits", *p])
    assert isinstance(lifted, dict)
    assert [(d["entity"], d["action"]) for d in lifted["decisions"]] == [("cam", "rate_limit"), ("plug", "rate_limit")]


def test_evaluate_says_when_a_policy_has_no_saved_baselines(train_replays: list[Replay], tmp_path: Path) -> None:
    store = Store(tmp_path / ".misuse")
    BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=1).save(store.model_dir("old"))
    store.register_model("old", "policy", {})
    store.close()

    result = runner.invoke(app, ["policy", "evaluate", "--seeds", "11", "--project", str(tmp_path / ".misuse")])

    assert result.exit_code == 0, result.output
    assert "trained before baselines were saved" in result.stderr
    assert "static-threshold: total cost" in result.stdout and "rulebook" not in result.stdout


def test_apply_without_a_trained_policy_says_so(tmp_path: Path) -> None:
    Store(tmp_path / ".misuse").close()

    result = runner.invoke(app, ["policy", "apply", "--project", str(tmp_path / ".misuse")])

    assert result.exit_code == 5
    assert "misuse policy train" in result.output


def test_bad_seeds_and_sources_are_input_errors(tmp_path: Path) -> None:
    p = ["--project", str(tmp_path / ".misuse")]

    bad_seeds = runner.invoke(app, ["policy", "train", "--seeds", "1,x", *p])
    bad_source = runner.invoke(app, ["policy", "train", "--source", "nope", "--data", str(tmp_path), *p])

    assert bad_seeds.exit_code == 3 and "1,x" in bad_seeds.output
    assert bad_source.exit_code == 3 and "nope" in bad_source.output


@pytest.mark.parametrize(
    ("name", "garbage"), [("policy.json", b'{"kind": "bandit",'), ("policy.npz", b"PK\x03garbage")]
)
def test_a_damaged_policy_file_is_one_line_of_bad_input(
    train_replays: list[Replay], tmp_path: Path, name: str, garbage: bytes
) -> None:
    store = Store(tmp_path / ".misuse")
    BanditPolicy(seed=0).fit(ResponseEnv(train_replays), epochs=1).save(store.model_dir("resp"))
    store.register_model("resp", "policy", {})
    store.close()
    (tmp_path / ".misuse" / "models" / "resp" / name).write_bytes(garbage)

    result = runner.invoke(app, ["policy", "apply", "--project", str(tmp_path / ".misuse")])

    assert result.exit_code == 3  # bad input (misuse/cli/common.py)
    assert len(result.output.strip().splitlines()) == 1
    assert name in result.output and "Traceback" not in result.output and "unsafe" not in result.output
