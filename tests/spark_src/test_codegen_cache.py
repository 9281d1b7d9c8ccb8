"""Reruns of the metrics job in the same local session compile no generated class again (real PostgreSQL,
local Spark).

Spark 3.5 keys its cache of generated classes by class loader (SPARK-44795). In local mode the driver's and the
tasks' loaders share one JVM and one cache, of 100 classes by default, which a full run and a few day ranges of
the job overflow: every rerun compiled classes anew (~25 per one-day run at 2,740 pools), and ran them unjitted.
``build_session`` sizes the cache for the jobs.
"""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from database.synthetic import SyntheticSpec, generate, load
from spark_src.pool_metrics import main as pool_metrics_main
from spark_src.pool_metrics.main import main as run_spark_job

pytestmark = pytest.mark.slow

SPEC = SyntheticSpec(pools=6, days=40, seed=5)  # 2026-05-01 .. 2026-06-09


def test_reruns_of_a_full_run_and_day_ranges_compile_no_class_again(spark, db, db_config, monkeypatch):
    for key, value in db_config.env().items():
        monkeypatch.setitem(os.environ, key, value)
    load(db, generate(SPEC))
    # As at scale: the full run reads its history in several partitions (a plan of its own), a day's run in one.
    monkeypatch.setattr(pool_metrics_main, "HISTORY_ROWS_PER_PARTITION", 100)
    last_day = SPEC.start + dt.timedelta(days=SPEC.days - 1)
    ranges = [(last_day - dt.timedelta(days=k), last_day - dt.timedelta(days=k)) for k in range(3)]
    ranges.append((last_day - dt.timedelta(days=8), last_day - dt.timedelta(days=6)))
    runs = [["--run-id", "full", "--staging-table", "stg_codegen_full"]]
    runs += [
        [
            "--run-id",
            f"r{k}",
            "--staging-table",
            f"stg_codegen_{k}",
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
        ]
        for k, (start, end) in enumerate(ranges)
    ]
    compilations = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()

    # The metric counts this JVM's compilations: a query with a literal of its own compiles a class.
    first = compilations.getCount()
    spark.range(3).selectExpr(f"id * {time.time_ns()} AS x").collect()
    assert compilations.getCount() > first

    for argv in runs:
        assert run_spark_job(argv)["rows_written"] > 0
    before = compilations.getCount()
    for argv in runs:
        assert run_spark_job(argv)["rows_written"] > 0
    assert compilations.getCount() - before == 0
