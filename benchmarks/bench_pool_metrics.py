"""Benchmark: the Spark pool-metrics job against the legacy pandas job on the same synthetic data.

    .venv/bin/python -m benchmarks.bench_pool_metrics --pools 200 --days 365

Starts an embedded PostgreSQL, loads the data, runs each job (the Spark one in local mode, JVM start-up
excluded by a warm-up run), and prints wall-clock seconds, rows per second and peak RSS of this process.
Figures, not assertions: they depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from sqlalchemy import create_engine

from database.embedded import embedded_postgres
from database.schema import init_schema
from database.synthetic import SyntheticSpec, generate, load
from legacy.calculate_pool_metrics import run as run_legacy
from spark_src.common import jars
from spark_src.common.session import build_session
from spark_src.pool_metrics.main import main as run_spark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=200)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with embedded_postgres() as pg:
        os.environ["DB_PASSWORD"] = pg.password
        os.environ.update(pg.config.env())
        engine = create_engine(pg.config.sqlalchemy_url())
        init_schema(engine)
        loaded = load(engine, generate(SyntheticSpec(pools=args.pools, days=args.days)))
        print(f"data: {args.pools} pools x {args.days} days, {loaded['raw_defillama_pool_history']} history rows")
        build_session("bench", jars=jars.resolve_all([jars.JDBC_DRIVER]))  # JVM start-up outside the timings
        for attempt in range(args.repeat):
            started = time.monotonic()
            summary = run_spark(["--run-id", "bench", "--staging-table", f"stg_bench_{attempt}"])
            spark_s = time.monotonic() - started
            started = time.monotonic()
            legacy = run_legacy(pg.config, target_table="pool_daily_metrics_legacy")
            legacy_s = time.monotonic() - started
            rows = summary["rows_written"]
            assert rows == legacy["rows_written"]
            print(
                f"run {attempt + 1}: spark {spark_s:6.1f} s ({rows / spark_s:8.0f} rows/s)   "
                f"legacy {legacy_s:6.1f} s ({rows / legacy_s:8.0f} rows/s)   rows {rows}"
            )
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the Python process: {peak_mib:.0f} MiB (the Spark JVM is a separate process)")
        engine.dispose()


if __name__ == "__main__":
    main()
