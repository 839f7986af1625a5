"""What every command shares: the project option, JSON output, one-line errors and exit codes.

Exit codes: 0 success; 1 unexpected failure; 2 usage error; 3 bad input (a file or parameter, or a
name or id that names nothing); 4 store problem (missing, locked, newer schema); 5 no trained model /
model not fitted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from misuse.errors import (
    InvalidParameterError,
    MisuseError,
    NotFittedError,
    NotFoundError,
    ParseError,
    SchemaError,
    StoreError,
)
from misuse.store.duck import Store

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INPUT, EXIT_STORE, EXIT_MODEL = 0, 1, 2, 3, 4, 5

console = Console()
err_console = Console(stderr=True)

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        help="Project folder holding the store (env MISUSE_PROJECT).",
        envvar="MISUSE_PROJECT",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
DEFAULT_PROJECT = Path(".misuse")


def exit_code(exc: MisuseError) -> int:
    """The exit code for an error of the package's hierarchy."""
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, NotFittedError):
        return EXIT_MODEL
    if isinstance(exc, ParseError | SchemaError | InvalidParameterError | NotFoundError):
        return EXIT_INPUT
    return EXIT_FAIL


@contextmanager
def handled() -> Iterator[None]:
    """Turn the package's errors into one line on stderr and a meaningful exit code."""
    try:
        yield
    except MisuseError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def open_store(project: Path, create: bool = False) -> Store:
    """Open the project's store."""
    return Store(project, create=create)


def emit_json(obj: Any) -> None:
    """Print JSON to stdout (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def progress(enabled: bool = True) -> Progress:
    """A progress bar on stderr (hidden with --json or when stderr is not a terminal)."""
    show = enabled and err_console.is_terminal and not os.environ.get("MISUSE_NO_PROGRESS")
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
        transient=True,
    )


def ticker(prog: Progress, description: str, total: int | None = None) -> Callable[[int], None]:
    """A callback that advances a new progress task by n."""
    task = prog.add_task(description, total=total)
    return lambda n: prog.advance(task, n)


# Scale-out options shared by `misuse ingest/train/detect` and `misuse scale ...`
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


def check_cluster(partitioned: Path | None, cluster: str | None) -> None:
    """A clear error when ``--cluster`` came without ``--partitioned``."""
    if cluster is not None and partitioned is None:
        raise InvalidParameterError(
            f"--cluster {cluster} needs --partitioned DIR (a dataset written by `misuse ingest --partitioned DIR`)"
        )
