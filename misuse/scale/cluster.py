"""Connecting to a Dask cluster: a scheduler address, or ``local:N`` for a LocalCluster of N workers.

Dask is an optional dependency (the ``scale`` extra); it is imported only here, inside functions,
so the rest of the package and the CLI start without it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from misuse.errors import InvalidParameterError, MisuseError

if TYPE_CHECKING:
    from distributed import Client

LOCAL_PREFIX = "local:"
#: a scheduler address as Dask's comms take it: [scheme://]host:port, host a name, IPv4 or [IPv6]
_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ws|wss|ucx)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?):(?P<port>\d{1,5})$"
)


def parse_cluster(spec: str) -> tuple[str, int]:
    """Split a ``--cluster`` value into ``("local", workers)`` or ``("address", 0)``.

    Examples
    --------
    >>> parse_cluster("local:2")
    ('local', 2)
    >>> parse_cluster("tcp://10.0.0.5:8786")
    ('tcp://10.0.0.5:8786', 0)
    >>> parse_cluster("nonsense")
    Traceback (most recent call last):
    ...
    misuse.errors.InvalidParameterError: The 'cluster' parameter must be a scheduler address \
[scheme://]host:port (tcp://10.0.0.5:8786) or local:N. Got 'nonsense' instead.
    """
    spec = spec.strip()
    if spec.startswith(LOCAL_PREFIX):
        count = spec[len(LOCAL_PREFIX) :]
        if not count.isdigit() or int(count) < 1:
            raise InvalidParameterError(
                f"The 'cluster' parameter 'local:N' needs a worker count N >= 1. Got {spec!r} instead."
            )
        return "local", int(count)
    if spec.startswith("inproc://"):  # Dask's in-process transport: its addresses are its own
        return spec, 0
    hit = _ADDRESS.match(spec)
    if hit is None or not 0 < int(hit["port"]) < 65536:
        raise InvalidParameterError(
            "The 'cluster' parameter must be a scheduler address [scheme://]host:port (tcp://10.0.0.5:8786) "
            f"or local:N. Got {spec!r} instead."
        )
    return spec, 0


def _import_distributed():  # type: ignore[no-untyped-def]
    try:
        import distributed
    except ImportError:
        raise MisuseError(
            "scale-out needs Dask: pip install 'misuse[scale]' (dask[distributed]); --cluster is unavailable"
        ) from None
    return distributed


@contextmanager
def connect(spec: str, *, processes: bool = True, memory_limit: str | None = None) -> Iterator[Client]:
    """A Dask client for ``spec``; a ``local:N`` cluster is started here and closed on exit.

    Parameters
    ----------
    spec:
        ``local:N`` (N single-threaded worker processes on this machine) or a scheduler address.
    processes:
        For ``local:N``: workers as processes (True) or threads of this process (False, for tests).
    memory_limit:
        For ``local:N``: per-worker memory limit (Dask syntax such as ``"4GB"``); default: Dask's
        share of the machine's memory.
    """
    kind, workers = parse_cluster(spec)
    distributed = _import_distributed()
    if kind == "local":
        extra = {} if memory_limit is None else {"memory_limit": memory_limit}
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                **extra,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(kind, timeout="20s")
    except OSError as exc:
        raise MisuseError(f"Dask scheduler {kind}: cannot connect ({exc})") from None
    except ValueError as exc:  # an address Dask's comms refuse after all
        raise InvalidParameterError(f"Dask scheduler {kind}: not an address Dask can use ({exc})") from None
    try:
        yield client
    finally:
        client.close()
