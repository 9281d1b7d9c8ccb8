"""JDBC read sizing: one partitioned read per executor core of the cluster, not a fixed number."""

from __future__ import annotations

import pytest

from spark_src.common.jdbc import cluster_read_partitions


@pytest.mark.parametrize(
    ("conf", "default_parallelism", "expected"),
    [
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
    ],
)
def test_read_partitions_come_from_the_cluster(conf, default_parallelism, expected):
    assert cluster_read_partitions(conf, default_parallelism) == expected
