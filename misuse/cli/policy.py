"""``misuse policy train|evaluate|apply|log|undo``: the learned response policy.

The response modules import gymnasium (the ``rl`` extra); they are imported inside the
commands so that the rest of the CLI starts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from misuse.cli.common import (
    DEFAULT_PROJECT,
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    err_console,
    handled,
    open_store,
)
from misuse.errors import InvalidParameterError, NotFittedError

if TYPE_CHECKING:
    from misuse.response.baselines import Baseline
    from misuse.response.policy import BanditPolicy
    from misuse.response.replay import Replay
    from misuse.store.duck import Store

policy_app = typer.Typer(
    help="Adaptive response: learn when to ignore, alert, rate-limit or quarantine; apply, explain, undo.",
    no_args_is_help=True,
)
KIND = "policy"
SourceOpt = Annotated[
    list[str] | None,
    typer.Option("--source", "-s", help="Replay source: sim, iot23, mqttset (repeatable; default sim)."),
]
DataOpt = Annotated[
    Path | None, typer.Option("--data", help="Shared data folder for iot23/mqttset (env MISUSE_DATA_DIR).")
]
SeedsOpt = Annotated[
    str | None, typer.Option("--seeds", help="Simulator seeds, comma-separated (default: the fixed split).")
]
NameOpt = Annotated[str, typer.Option("--name", help="Policy name in the store.")]


def _replays(sources: list[str] | None, split: str, data: Path | None, seeds: str | None) -> list[Replay]:
    from misuse.eval.datasets import data_root
    from misuse.response.replay import streams

    chosen = sources or ["sim"]
    seed_list = None
    if seeds:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise InvalidParameterError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    root = data_root(data) if any(s != "sim" for s in chosen) else None
    out: list[Replay] = []
    for s in chosen:
        out.extend(streams(s, split, root, seed_list if s == "sim" else None))
    return out


def _load(store: Store, name: str | None) -> tuple[str, BanditPolicy]:
    from misuse.response.policy import BanditPolicy

    chosen = name or store.active_model(KIND)
    if chosen is None or not (store.model_dir(chosen) / "policy.json").exists():
        raise NotFittedError(f"{store.root}: no trained policy {chosen or ''!s} (run `misuse policy train` first)")
    return chosen, BanditPolicy.load(store.model_dir(chosen))


@policy_app.command("train")
def train(
    source: SourceOpt = None,
    data: DataOpt = None,
    seeds: SeedsOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training replays.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Exploration seed.")] = 0,
    name: NameOpt = "response",
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Train the response policy offline on the training replays and save it in the store.

    The baselines it is evaluated against are fixed on the same replays and saved with it: the
    static threshold tuned there and the rulebook on their risk quantiles.
    """
    with handled():
        from misuse.response.baselines import training_baselines
        from misuse.response.env import ResponseEnv
        from misuse.response.policy import BanditPolicy, evaluate_policy

        replays = _replays(source, "train", data, seeds)
        pol = BanditPolicy(seed=seed).fit(
            ResponseEnv(replays),
            epochs=epochs,
            evaluate=lambda p, _e: {"train_cost": sum(o.total_cost for o in evaluate_policy(p.act, replays))},
        )
        baselines = training_baselines(replays)
        pol.info_ = {
            "streams": [r.name for r in replays],
            "epochs": epochs,
            "seed": seed,
            "baselines": {k: b.to_dict() for k, b in baselines.items()},
        }
        store = open_store(project, create=True)
        pol.save(store.model_dir(name))
        store.register_model(name, KIND, pol.info_)
        info = {"policy": name, **pol.info_, "learning_curve": pol.history_}
        if as_json:
            emit_json(info)
            return
        curve = ", ".join(f"{h['train_cost']:.0f}" for h in pol.history_)
        console.print(f"trained policy [bold]{name}[/] on {len(replays)} replay(s); training cost per epoch: {curve}")
        for k, b in baselines.items():
            console.print(f"baseline {k}: {b.describe()}", highlight=False)


@policy_app.command("evaluate")
def evaluate(
    source: SourceOpt = None,
    data: DataOpt = None,
    seeds: SeedsOpt = None,
    name: Annotated[str | None, typer.Option("--name", help="Policy (default: the active one).")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Total cost and attacks contained on the held-out replays: the policy vs the fixed baselines.

    Baselines: the static threshold (alert at fused risk 0.5) and, fixed on the policy's training
    replays when it was trained, the static threshold tuned there (static-tuned) and the rulebook
    on their risk quantiles.
    """
    with handled():
        from misuse.response.policy import evaluate_policy

        store = open_store(project)
        chosen, pol = _load(store, name)
        policies = {chosen: pol.act, **{k: b.act for k, b in _baselines(chosen, pol).items()}}
        replays = _replays(source, "held-out", data, seeds)
        results: list[dict[str, Any]] = []
        for label, act in policies.items():
            for o in evaluate_policy(act, replays):
                results.append({"policy": label, **o.as_dict()})
        if as_json:
            emit_json(results)
            return
        table = Table(
            "policy", "stream", "total cost", "attack windows", "contained", "missed", "false alarms", "disrupted"
        )
        for r in results:
            table.add_row(
                r["policy"],
                r["stream"],
                f"{r['total_cost']:.1f}",
                str(r["attack_windows"]),
                str(r["contained"]),
                str(r["missed"]),
                str(r["false_alarms"]),
                str(r["disrupted"]),
            )
        console.print(table)
        attacks = sum(r.attack_windows for r in replays)
        for label in policies:
            mine = [r for r in results if r["policy"] == label]
            cost, contained = sum(r["total_cost"] for r in mine), sum(r["contained"] for r in mine)
            console.print(
                f"{label:>16s}: total cost {cost:,.0f}, attack windows contained {contained}/{attacks}",
                highlight=False,
            )


def _baselines(chosen: str, pol: BanditPolicy) -> dict[str, Baseline]:
    """The default static threshold and the baselines saved with the policy (a note when it has none)."""
    from misuse.response.baselines import StaticThresholdPolicy, baseline_from_dict

    saved = pol.info_.get("baselines")
    out: dict[str, Baseline] = {"static-threshold": StaticThresholdPolicy()}
    if not isinstance(saved, dict):
        err_console.print(
            f"note: policy {chosen} was trained before baselines were saved with it; retrain it "
            "(`misuse policy train`) to compare with the tuned static threshold and the rulebook",
            highlight=False,
        )
        return out
    for k, d in saved.items():
        out[str(k)] = baseline_from_dict(d)
    return out


@policy_app.command("apply")
def apply(
    name: Annotated[str | None, typer.Option("--name", help="Policy (default: the active one).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset's alerts.")] = None,
    window: Annotated[float, typer.Option("--window", "-w", help="Fusion window in seconds.")] = 60.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and explain, log nothing.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Learn from new analyst feedback, then decide on the undecided alerts in time order, explain and log.

    One decision per entity and window, as in training; alerts of an entity held by an active
    rate limit or quarantine, or muted by a raised threshold, are skipped (counted, not logged).
    Decisions are recorded in the store (`misuse policy log`), not enforced: no device is blocked
    or throttled by misuse.
    """
    with handled():
        from misuse.response import actions

        store = open_store(project)
        chosen, pol = _load(store, name)
        learned = 0 if dry_run else actions.learn_from_feedback(store, pol, chosen)
        if learned:
            pol.save(store.model_dir(chosen))
        skipped: list[dict[str, Any]] = []
        decisions = actions.apply(
            store, pol, chosen, store.alerts(dataset=dataset), window=window, dry_run=dry_run, skipped=skipped
        )
        if as_json:
            emit_json({"policy": chosen, "learned_from_feedback": learned, "decisions": decisions, "skipped": skipped})
            return
        if learned:
            console.print(f"updated [bold]{chosen}[/] from {learned} analyst verdict(s)")
        table = Table("action id", "entity", "action", "risk", "because")
        for d in decisions:
            because = "; ".join(f"{c['feature']}={c['actual']:.3g} (typical {c['typical']:.3g})" for c in d["because"])
            because = because or "no feature stands out: the policy's choice for a typical alert"
            table.add_row(d["action_id"], d["entity"], d["action"], f"{d['risk']:.2f}", because)
        console.print(table)
        verb = "decided (dry run)" if dry_run else "decided and logged"
        console.print(f"{verb}: {len(decisions)} alert(s)")
        if skipped:
            reasons: dict[str, int] = {}
            for sk in skipped:
                reasons[sk["reason"]] = reasons.get(sk["reason"], 0) + 1
            parts = ", ".join(f"{n} {why}" for why, n in reasons.items())
            console.print(f"skipped, not decided: {parts}", highlight=False)
        partial = sum(d["history"] == "alerts" for d in decisions)
        if partial:
            console.print(
                f"{partial} of them with the entity's history counted over its alerts only (no window model "
                "and events of their dataset in the store): risk_ema, streak, recent and age differ from training",
                highlight=False,
            )


@policy_app.command("log")
def log(
    status: Annotated[
        str | None, typer.Option("--status", help="Only 'active', 'undone' or 'no_action' (ignore) decisions.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N rows (0: all).")] = 50,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """The log of decisions, newest first: what was decided for which entity, why, and its status."""
    with handled():
        from misuse.response import actions

        if status is not None and status not in actions.STATUSES:
            raise InvalidParameterError(f"--status: expected one of {', '.join(actions.STATUSES)}, got {status!r}")
        rows = actions.logged(open_store(project), status=status)
        if limit > 0:
            rows = rows.head(limit)
        if as_json:
            emit_json(rows.to_dict(orient="records"))
            return
        table = Table("action id", "when", "entity", "action", "policy", "status", "alert")
        for r in rows.itertuples():
            table.add_row(
                str(r.action_id),
                str(r.created_at)[:19],
                str(r.entity),
                str(r.action),
                str(r.policy),
                str(r.status),
                str(r.alert_id),
            )
        console.print(table)


@policy_app.command("undo")
def undo(
    action_id: Annotated[str | None, typer.Argument(help="Logged action id to lift.")] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Lift every active action on this entity.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Mark a logged action undone, or all of an entity's active ones (the log only: nothing is enforced)."""
    with handled():
        from misuse.response import actions

        store = open_store(project)
        n = actions.undo(store, action_id, entity=entity)
        if as_json:
            emit_json({"undone": n})
            return
        console.print(f"undone: {n} action(s)")
