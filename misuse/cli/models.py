"""``misuse train`` and ``misuse detect`` (from the project store, or a partitioned dataset on Dask)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from misuse.alerts.model import Alert
from misuse.cli.common import (
    DEFAULT_PROJECT,
    EXIT_USAGE,
    ClusterOpt,
    JsonOpt,
    PartitionedOpt,
    ProjectOpt,
    check_cluster,
    console,
    emit_json,
    err_console,
    handled,
    open_store,
    progress,
    ticker,
)
from misuse.detectors.threshold import FPRThreshold
from misuse.errors import InvalidParameterError
from misuse.scale.cluster import parse_cluster
from misuse.workflows import detect_on_store, parse_time, train_on_store, train_steps


def _usage_error(option: str, value: object, expected: str) -> typer.Exit:
    """Print one line naming the option and its value; the exit (code 2) to raise."""
    err_console.print(
        f"[bold red]error:[/] {option} {escape(repr(value))}: {escape(expected)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(EXIT_USAGE)


def check_options(*, cluster: str | None = None, fpr: float | None = None, **times: str | None) -> None:
    """Refuse a bad ``--cluster``, ``--fpr`` or time option (``until=...``, ``since=...``) before any work.

    Raises
    ------
    typer.Exit
        With code 2, after one line naming the option and the value.
    """
    for name, value in times.items():
        if value is None:
            continue
        try:
            parse_time(value, name)
        except InvalidParameterError:
            raise _usage_error(
                f"--{name}",
                value,
                "not a date or time (ISO-8601 such as 2024-05-01 or 2024-05-01T12:00:00Z, years 1677 to 2262)",
            ) from None
    if fpr is not None:
        try:
            FPRThreshold(fpr)
        except InvalidParameterError:
            raise _usage_error(
                "--fpr", fpr, "expected a false-positive rate between 0 and 1 (exclusive), e.g. 0.01"
            ) from None
    if cluster is not None:
        try:
            parse_cluster(cluster)
        except InvalidParameterError:
            raise _usage_error(
                "--cluster", cluster, "expected a scheduler address host:port (e.g. tcp://10.0.0.5:8786) or local:N"
            ) from None


def train(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Stored dataset to learn from.")] = "default",
    model: Annotated[str, typer.Option("--model", help="Name to save the model under.")] = "window",
    window: Annotated[float, typer.Option("--window", "-w", help="Window length in seconds.")] = 60.0,
    fpr: Annotated[
        float, typer.Option("--fpr", help="Target false-positive rate on held-out training windows.")
    ] = 0.01,
    detector: Annotated[str, typer.Option("--detector", help="Registered detector name.")] = "iforest",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    benign_only: Annotated[
        bool, typer.Option("--benign-only", help="Drop windows whose events carry attack labels.")
    ] = False,
    until: Annotated[str | None, typer.Option("--until", help="Only events before this UTC time.")] = None,
    partitioned: PartitionedOpt = None,
    cluster: ClusterOpt = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Learn normal behaviour: window features, detector, calibrated threshold.

    Reads the stored dataset, or with ``--partitioned DIR`` a dataset partitioned by entity, whose
    per-entity work runs on Dask with ``--cluster`` (same model as in one process).
    """
    check_options(cluster=cluster, fpr=fpr, until=until)
    with handled():
        check_cluster(partitioned, cluster)
        store = open_store(project, create=partitioned is not None)
        opts = {"window": window, "target_fpr": fpr, "seed": seed}
        common = {"detector": detector, "benign_only": benign_only, "until": until}
        if partitioned is None:
            with progress(not as_json) as prog:
                tick = ticker(prog, "training", total=train_steps(store, dataset))
                m = train_on_store(store, dataset, model, tick=tick, **opts, **common)  # type: ignore[arg-type]
        else:
            from misuse.scale.workflows import train_on_partitioned

            with progress(not as_json) as prog:
                tick = ticker(prog, "partitions")
                m = train_on_partitioned(store, partitioned, model, cluster=cluster, tick=tick, **opts, **common)  # type: ignore[arg-type]
        info = {**m.info, "model": model, "threshold": m.threshold.threshold_}
        if as_json:
            emit_json(info)
            return
        where = f" on {cluster}" if cluster else ""
        console.print(
            f"trained [bold]{model}[/] ({detector}){where} on {info['train_windows']:,} windows of {window:g}s "
            f"from {info['entities']} entities; threshold {m.threshold.threshold_:.4f} set for "
            f"{fpr:.2%} false positives on {info['calibration_windows']:,} held-out windows"
        )


def detect(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Stored dataset to score.")] = "default",
    model: Annotated[str | None, typer.Option("--model", help="Model name (default: the active one).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only events at or after this UTC time.")] = None,
    partitioned: PartitionedOpt = None,
    cluster: ClusterOpt = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Score a dataset with a trained model and store explained alerts.

    Reads the stored dataset, or with ``--partitioned DIR`` a dataset partitioned by entity (on
    Dask with ``--cluster``).
    """
    check_options(cluster=cluster, since=since)
    with handled():
        check_cluster(partitioned, cluster)
        store = open_store(project)
        with progress(not as_json) as prog:
            if partitioned is None:
                alerts, scored = detect_on_store(store, dataset, model, since=since, tick=ticker(prog, "alerts"))
            else:
                from misuse.scale.workflows import detect_on_partitioned

                alerts, scored = detect_on_partitioned(
                    store, partitioned, model, cluster=cluster, since=since, tick=ticker(prog, "partitions")
                )
        if as_json:
            emit_json({"windows": len(scored), "alerts": [a.to_dict() for a in alerts]})
            return
        _print_detected(len(scored), alerts)


def _print_detected(windows: int, alerts: list[Alert]) -> None:
    console.print(f"scored {windows:,} windows: [bold]{len(alerts)}[/] alert(s) stored")
    by_type: dict[str, int] = {}
    for a in alerts:
        by_type[a.misuse_type] = by_type.get(a.misuse_type, 0) + 1
    for t, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
        console.print(f"  {t:<20} {n}")
