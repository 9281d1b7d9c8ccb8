"""JDBC read sizing (one partitioned read per executor core of the cluster at most, one per 250k rows) and the
driver's small queries."""

from __future__ import annotations

import pytest

from spark_src.common.jdbc import (
    CLUSTER_PROPERTIES,
    cluster_read_partitions,
    query_row,
    query_rows,
    read_partitions,
    session_read_partitions,
)

CLUSTERS = [
    ({"spark.master": "local[2]"}, 2, 2),  # local mode: the local[N] cores
    ({"spark.master": "local[8]"}, 8, 8),
    # Dataproc batch with fixed executors (the forecast profile): 2 x 4 cores.
    (
        {
            "spark.master": "yarn",
            "spark.dynamicAllocation.enabled": "false",
            "spark.executor.instances": "2",
            "spark.executor.cores": "4",
        },
        2,
        8,
    ),
    # Dataproc batch with dynamic allocation up to 10 executors (the metrics profile), 4 cores by default.
    ({"spark.master": "yarn", "spark.dynamicAllocation.maxExecutors": "10"}, 8, 40),
    # maxExecutors does not count when dynamic allocation is off.
    (
        {
            "spark.master": "yarn",
            "spark.dynamicAllocation.enabled": "false",
            "spark.dynamicAllocation.maxExecutors": "10",
            "spark.executor.instances": "3",
            "spark.executor.cores": "2",
        },
        2,
        6,
    ),
    # Never below what Spark itself already runs in parallel.
    ({"spark.master": "yarn", "spark.executor.instances": "1", "spark.executor.cores": "1"}, 16, 16),
]


@pytest.mark.parametrize(("conf", "default_parallelism", "expected"), CLUSTERS)
def test_read_partitions_come_from_the_cluster(conf, default_parallelism, expected):
    assert cluster_read_partitions(conf, default_parallelism) == expected


class _ReadKeys(dict):
    """A dict that records the keys looked up in it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def test_the_properties_a_session_passes_are_all_that_the_sizing_reads():
    """:func:`session_read_partitions` passes only the properties of ``CLUSTER_PROPERTIES`` (reading the whole
    configuration is a Py4J round trip per property): a key the sizing reads and the list lacks would be absent
    on a real cluster and silently take its default."""
    read: set[str] = set()
    for conf, default_parallelism, _ in CLUSTERS:
        recorded = _ReadKeys(conf)
        cluster_read_partitions(recorded, default_parallelism)
        read |= recorded.read
    assert read == set(CLUSTER_PROPERTIES)


@pytest.mark.parametrize(
    ("rows", "max_partitions", "expected"),
    [
        (78_530, 4, 1),  # a day's run at 2,740 pools: its 31 days' rows
        (250_000, 4, 1),
        (250_001, 4, 2),  # a partition per 250,000 rows started
        (952_874, 4, 4),  # the full history at 2,740 pools x 365 days
        (952_874, 2, 2),  # never more than the cluster's cores
        (10_000_000, 40, 40),
        (0, 4, 1),  # an empty result is still one read
    ],
)
def test_read_partitions_grow_with_the_rows_up_to_the_cluster(rows, max_partitions, expected):
    assert read_partitions(rows, max_partitions, rows_per_partition=250_000) == expected


def test_read_partitions_refuse_a_partition_size_below_one():
    with pytest.raises(ValueError, match="rows_per_partition must be at least 1, not 0"):
        read_partitions(10, 4, rows_per_partition=0)


def test_a_local_sessions_read_partitions_are_its_default_parallelism(spark):
    """The tests' session is ``local[2]`` (tests/conftest.py) with ``spark.default.parallelism`` 4 (two tasks per
    core, :func:`spark_src.common.session.build_session`): four parallel reads, found from its properties."""
    assert session_read_partitions(spark) == 4


def test_small_queries_share_one_connection_and_keep_their_order(spark, db_config):
    rows = query_rows(
        spark,
        db_config,
        [
            "SELECT pg_backend_pid(), 'a'",
            "SELECT 1 WHERE false",  # no row
            "SELECT count(*), sum(n) FROM generate_series(1, 4) AS n",
            "SELECT pg_backend_pid()",
        ],
    )
    (pid, letter), empty, (count, total), (same_pid,) = rows
    assert (letter, empty, count, total, same_pid) == ("a", (), 4, 10, pid)
    assert query_row(spark, db_config, "SELECT 2 + 3") == (5,)
