"""Scale-out: event datasets partitioned by entity, and the window model trained and run on Dask.

- :mod:`misuse.scale.partition`: write and read Parquet datasets partitioned by entity hash.
- :mod:`misuse.scale.run`: :func:`train_partitioned` / :func:`detect_partitioned`, the same model and
  alerts as :func:`misuse.pipeline.train` / ``detect``, with the per-entity work on Dask workers.
- :mod:`misuse.scale.cluster`: ``--cluster`` values (``local:N`` or a scheduler address).

Dask is optional (the ``scale`` extra) and imported only when a cluster is used.
"""

from misuse.scale.cluster import connect, parse_cluster
from misuse.scale.partition import PartitionedDataset, entity_buckets, write_partitioned
from misuse.scale.run import detect_partitioned, train_partitioned

__all__ = [
    "PartitionedDataset",
    "connect",
    "detect_partitioned",
    "entity_buckets",
    "parse_cluster",
    "train_partitioned",
    "write_partitioned",
]
