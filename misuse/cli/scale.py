"""``misuse scale ingest|train|detect``: entity-partitioned datasets and the window model on Dask.

The options are also exported (:data:`ClusterOpt`, :data:`PartitionedOpt`, :data:`BucketsOpt`) so
``misuse ingest/train/detect`` can take ``--partitioned DIR`` and ``--cluster`` with the same meaning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from misuse.cli.common import (
    DEFAULT_PROJECT,
    JsonOpt,
    ProjectOpt,
    console,
    emit_json,
    handled,
    open_store,
    progress,
    ticker,
)
from misuse.errors import InvalidParameterError
from misuse.scale.partition import DEFAULT_BUCKETS
from misuse.scale.workflows import detect_on_partitioned, ingest_partitioned, train_on_partitioned

scale_app = typer.Typer(
    help="Scale out: datasets partitioned by entity, training and detection on a Dask cluster.",
    no_args_is_help=True,
)

ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Run on Dask: a scheduler address (tcp://host:8786) or local:N for N local workers. "
        "Needs --partitioned DIR. Results equal the single-process run.",
        envvar="MISUSE_CLUSTER",
    ),
]
PartitionedOpt = Annotated[
    Path | None,
    typer.Option("--partitioned", help="Folder of events partitioned by entity (written by ingest --partitioned)."),
]
BucketsOpt = Annotated[
    int, typer.Option("--buckets", help="Number of entity hash partitions to write (a few per worker core).")
]


def require_partitioned(partitioned: Path | None, cluster: str | None) -> Path:
    """The partitioned folder, or a clear error when ``--cluster`` came without one."""
    if partitioned is None:
        raise InvalidParameterError(
            f"--cluster {cluster} needs --partitioned DIR (a dataset written by `misuse ingest --partitioned DIR`)"
        )
    return partitioned


@scale_app.command("ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to read.")],
    partitioned: Annotated[Path, typer.Option("--partitioned", help="Folder to write the partitioned events to.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name.")] = "default",
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="Input format (default: detected per file).")
    ] = None,
    mapping: Annotated[
        str | None, typer.Option("--mapping", "-m", help="Column mapping for csv/jsonl (name or YAML file).")
    ] = None,
    buckets: BucketsOpt = DEFAULT_BUCKETS,
    append: Annotated[bool, typer.Option("--append", help="Add to the dataset instead of replacing it.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Read files and write their events as Parquet partitioned by entity (for --cluster runs)."""
    with handled():
        store = open_store(project, create=True)
        options = {"mapping": mapping} if mapping else None
        with progress(not as_json) as prog:
            result = ingest_partitioned(
                store,
                paths,
                partitioned,
                dataset,
                fmt=fmt,
                options=options,
                buckets=buckets,
                append=append,
                tick=ticker(prog, "events"),
            )
        if as_json:
            emit_json({**result.to_dict(), "partitioned": str(partitioned), "buckets": buckets})
            return
        console.print(
            f"[bold]{result.rows:,}[/] events from {len(result.files)} file(s) into {partitioned} "
            f"({buckets} entity partitions, dataset '{dataset}')"
        )
        if result.bad_records:
            console.print(
                f"[yellow]{result.bad_records:,} bad record(s) set aside[/] in {result.dead_letter_file}; "
                f"first: {result.first_bad}"
            )


@scale_app.command("train")
def train(
    partitioned: Annotated[Path, typer.Option("--partitioned", help="Partitioned dataset folder.")],
    cluster: ClusterOpt = None,
    model: Annotated[str, typer.Option("--model", help="Name to save the model under.")] = "window",
    window: Annotated[float, typer.Option("--window", "-w", help="Window length in seconds.")] = 60.0,
    fpr: Annotated[float, typer.Option("--fpr", help="Target false-positive rate on held-out windows.")] = 0.01,
    detector: Annotated[str, typer.Option("--detector", help="Registered detector name.")] = "iforest",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    benign_only: Annotated[bool, typer.Option("--benign-only", help="Drop events that carry attack labels.")] = False,
    until: Annotated[str | None, typer.Option("--until", help="Only events before this UTC time.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Learn the window model from a partitioned dataset, on Dask with --cluster (else in this process)."""
    with handled():
        store = open_store(project, create=True)
        with progress(not as_json) as prog:
            m = train_on_partitioned(
                store,
                partitioned,
                model,
                cluster=cluster,
                window=window,
                target_fpr=fpr,
                detector=detector,
                seed=seed,
                benign_only=benign_only,
                until=until,
                tick=ticker(prog, "partitions"),
            )
        info = {**m.info, "model": model, "threshold": m.threshold.threshold_}
        if as_json:
            emit_json(info)
            return
        where = f"on {cluster}" if cluster else "in one process"
        console.print(
            f"trained [bold]{model}[/] ({detector}) {where} on {info['train_windows']:,} windows of {window:g}s "
            f"from {info['entities']} entities; threshold {m.threshold.threshold_:.4f} set for "
            f"{fpr:.2%} false positives on {info['calibration_windows']:,} held-out windows"
        )


@scale_app.command("detect")
def detect(
    partitioned: Annotated[Path, typer.Option("--partitioned", help="Partitioned dataset folder.")],
    cluster: ClusterOpt = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name (default: the active one).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only events at or after this UTC time.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Score a partitioned dataset with a trained model (on Dask with --cluster) and store the alerts."""
    with handled():
        store = open_store(project)
        with progress(not as_json) as prog:
            alerts, scored = detect_on_partitioned(
                store, partitioned, model, cluster=cluster, since=since, tick=ticker(prog, "partitions")
            )
        if as_json:
            emit_json({"windows": len(scored), "alerts": [a.to_dict() for a in alerts]})
            return
        console.print(f"scored {len(scored):,} windows: [bold]{len(alerts)}[/] alert(s) stored")
        by_type: dict[str, int] = {}
        for a in alerts:
            by_type[a.misuse_type] = by_type.get(a.misuse_type, 0) + 1
        for t, n in sorted(by_type.items(), key=lambda kv: -kv[1]):
            console.print(f"  {t:<20} {n}")
