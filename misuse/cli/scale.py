"""``misuse scale ingest|train|detect``: entity-partitioned datasets and the window model on Dask.

The same as ``misuse ingest --partitioned DIR`` and ``misuse train|detect --partitioned DIR
[--cluster ADDRESS]``, gathered in one place with ``--partitioned`` required.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from misuse.cli import data, models
from misuse.cli.common import DEFAULT_PROJECT, BucketsOpt, ClusterOpt, JsonOpt, ProjectOpt
from misuse.scale.partition import DEFAULT_BUCKETS

scale_app = typer.Typer(
    help="Scale out: datasets partitioned by entity, training and detection on a Dask cluster.",
    no_args_is_help=True,
)
PartitionedReq = Annotated[Path, typer.Option("--partitioned", help="Partitioned dataset folder.")]


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
    data.ingest(
        paths,
        dataset=dataset,
        fmt=fmt,
        mapping=mapping,
        append=append,
        partitioned=partitioned,
        buckets=buckets,
        project=project,
        as_json=as_json,
    )


@scale_app.command("train")
def train(
    partitioned: PartitionedReq,
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
    models.train(
        model=model,
        window=window,
        fpr=fpr,
        detector=detector,
        seed=seed,
        benign_only=benign_only,
        until=until,
        partitioned=partitioned,
        cluster=cluster,
        project=project,
        as_json=as_json,
    )


@scale_app.command("detect")
def detect(
    partitioned: PartitionedReq,
    cluster: ClusterOpt = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name (default: the active one).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only events at or after this UTC time.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
) -> None:
    """Score a partitioned dataset with a trained model (on Dask with --cluster) and store the alerts."""
    models.detect(model=model, since=since, partitioned=partitioned, cluster=cluster, project=project, as_json=as_json)
