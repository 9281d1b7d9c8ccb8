"""Pool-metrics Spark job: raw DeFiLlama/CMC/gas tables -> per-run staging table of ``pool_daily_metrics`` rows.

It writes only to its staging table; promotion into ``pool_daily_metrics`` is the pipeline's upsert step.

    python -m spark_src.pool_metrics.main --run-id r1 --staging-table stg_r1 [--start D] [--end D] [--now T]

Connection settings come from the environment (see :class:`spark_src.common.config.DbConfig`); the password
is resolved from its secret reference and never appears on the command line or in the logs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from spark_src.common import faults, jars, pg, time_bounds
from spark_src.common.config import DbConfig, optional_date
from spark_src.common.jdbc import (
    column_range,
    query_rows,
    read_partitions,
    read_query,
    session_read_partitions,
    write_table,
)
from spark_src.common.session import build_session, running_under_spark_submit
from spark_src.common.sql import check_identifier
from spark_src.pool_metrics import transforms as T

log = logging.getLogger("pool_metrics")

# The 30-day window of day `start` reaches back to start-29, and its stddev delta needs day start-1's window.
LOOKBACK_DAYS = 30
# A history read of up to this many rows is one partition, more get one per this many, at most one per core of the
# cluster (:func:`session_read_partitions`; locally, Spark's default parallelism). A day's run reads its 31 days
# (78,530 rows at 2,740 pools): one partition, no shuffle. Lab, 2 cores, one against four partitions: a day
# 1.94 / 2.03 s, 90 days (~304k rows) 6.58 / 6.59 s. The full history (952,874) gets four.
HISTORY_ROWS_PER_PARTITION = 250_000
# How long the summary's counts may take to arrive once the write has finished (Spark posts them at once).
OBSERVED_TIMEOUT_S = 120.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pool_metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=optional_date, help="first day to compute (default: all)")
    parser.add_argument("--end", type=optional_date, help="last day to compute, inclusive (default: today, UTC)")
    parser.add_argument(
        "--now",
        type=time_bounds.parse_now,
        default="",
        help="the run's reference time (ISO; default: the current time): later observations are rejected",
    )
    parser.add_argument("--run-id", required=True, help="pipeline run id, for logs and lineage")
    parser.add_argument("--staging-table", required=True, type=check_identifier, help="per-run staging table")
    parser.add_argument(
        "--num-partitions",
        type=int,
        default=0,
        help="most parallel JDBC reads of the history (default 0: one per executor core of the cluster)",
    )
    parser.add_argument("--database-url", help="postgresql://user@host:port/db (no password); default: DB_* env")
    parser.add_argument("--password-secret", help="secret reference of the password; default: DB_PASSWORD_SECRET")
    parser.add_argument("--code-version", default="", help="version of the code (the batch's); default: detected")
    args = parser.parse_args(list(argv))
    if args.start and args.end and args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    return args


def extract(
    spark: SparkSession, db: DbConfig, start: dt.date | None, end: dt.date, now: dt.datetime, max_partitions: int
) -> tuple[DataFrame, DataFrame, DataFrame, int]:
    """Reads active pools' history (with look-back before ``start``), CMC closes and gas as text/double.

    The history query classifies timestamps in the database (:mod:`spark_src.common.time_bounds`): rows later
    than ``now`` + skew or before the earliest believable time come with ``observed_at`` NULL and a
    ``timestamp_problem``. It is read in one partition per :data:`HISTORY_ROWS_PER_PARTITION` rows, at most
    ``max_partitions``; that number is returned with the three reads.
    """
    since = start - dt.timedelta(days=LOOKBACK_DAYS) if start else None
    query = time_bounds.history_query(since, end, now)
    lo, hi, rows = column_range(spark, db, query, "history_id")
    partitions = read_partitions(rows, max_partitions, HISTORY_ROWS_PER_PARTITION)
    history = read_query(spark, db, query, partition_column="history_id", bounds=(lo, hi), num_partitions=partitions)
    # A row per day and symbol: one partition each, so the as-of lookup's windows and aggregation shuffle nothing.
    cmc = read_query(spark, db, time_bounds.cmc_query(end, now)).coalesce(1)
    gas = read_query(spark, db, time_bounds.gas_query(end, now)).coalesce(1)
    return history, cmc, gas, partitions


def by_pool(rows: DataFrame, partitions: int) -> DataFrame:
    """``rows`` laid out for the job's windows, which all partition by pool_id (and date).

    One partition satisfies every partitioning as it is: a small range (a day's run) shuffles nothing. More are
    shuffled once, by pool_id, for the whole job.
    """
    return rows.coalesce(1) if partitions == 1 else rows.repartition("pool_id")


def summary_counts(in_range: str) -> list[Column]:
    """The run summary's counts over the validated rows whose date is ``in_range`` (an SQL condition):
    aggregations that :meth:`DataFrame.observe` collects while the write runs (no Spark job of their own, no cache
    to read twice). Distinct counts cannot be observed: the pools come from the written table (:func:`run`)."""
    accepted = f"({in_range}) AND apy_problem IS NULL"
    return [
        F.expr(f"count(CASE WHEN {in_range} THEN 1 END) AS days_observed"),
        F.expr(f"sum(CASE WHEN {in_range} THEN observations - 1 END) AS observations_superseded"),
        F.expr(f"count(CASE WHEN {accepted} THEN 1 END) AS rows_written"),
        *[
            F.expr(f"count(CASE WHEN ({in_range}) AND apy_problem = '{r}' THEN 1 END) AS {r}")
            for r in T.APY_REJECTION_REASONS
        ],
        *[
            F.expr(f"count(CASE WHEN {accepted} AND tvl_problem = '{r}' THEN 1 END) AS {r}")
            for r in T.TVL_NULLED_REASONS
        ],
    ]


def observed(counts: Observation, timeout_s: float = OBSERVED_TIMEOUT_S) -> dict:
    """The counts of an Observation whose action has run, or RuntimeError after ``timeout_s``.

    ``Observation.get`` waits forever when Spark optimized the observed node away (SPARK-54620; its fix, which
    returns no counts instead, is not in the pinned 3.5.7): the job then fails in one line, with its staging
    table unpromoted, rather than hang or report nothing.
    """
    result: dict = {}
    waiter = threading.Thread(target=lambda: result.update(counts.get), name="observed-counts", daemon=True)
    waiter.start()
    waiter.join(timeout_s)
    if waiter.is_alive() or not result:
        raise RuntimeError(f"the write's summary counts did not arrive within {timeout_s:g} s")
    return result


def metrics(
    spark: SparkSession,
    validated: DataFrame,
    cmc: DataFrame,
    gas: DataFrame,
    start: dt.date | None,
    end: dt.date,
    now: dt.datetime,
) -> DataFrame:
    """The ``pool_daily_metrics`` rows of days [start, end] (all days up to ``end`` without ``start``).

    The as-of lookup of ETH/BTC/gas runs over the calendar of the run's days, not over the pools' dates: it
    then reads no pool row, so Spark builds and broadcasts it without waiting for the pools' rows. The values
    are the same: a date without a close of its own takes the latest earlier one either way.
    """
    first = start or time_bounds.EARLIEST_OBSERVATION.date()
    # No accepted observation is later than the latest believable time, so no metric day either.
    last = min(end, time_bounds.latest_believable(now).date())
    exogenous = T.as_of_exogenous(
        T.calendar(spark, first, last), T.daily_closes(cmc, "ETH"), T.daily_closes(cmc, "BTC"), gas
    )
    in_range = T.in_date_range(start and start.isoformat(), end.isoformat())
    return T.pool_daily_metrics(T.accepted_rows(validated), exogenous).transform(in_range).select(*T.OUTPUT_COLUMNS)


def run(spark: SparkSession, db: DbConfig, args: argparse.Namespace) -> dict:
    started = time.monotonic()
    end = time_bounds.default_end(args.end, args.now)
    if args.start and args.start > end:
        raise ValueError(f"--start {args.start} is after the run's last day {end}")
    max_partitions = args.num_partitions or session_read_partitions(spark)
    history, cmc, gas, partitions = extract(spark, db, args.start, end, args.now, max_partitions)

    # One Spark action computes the rows, the write; the summary's counts are observed on its way (no second
    # pass over the history, no cache).
    counts = Observation("pool_metrics_summary")
    in_range = T.date_in_range(args.start and args.start.isoformat(), end.isoformat())
    validated = (
        history.where("timestamp_problem IS NULL")
        .drop("timestamp_problem")
        .transform(lambda rows: by_pool(rows, partitions))
        .transform(T.latest_observation_per_day)
        .transform(T.with_validated_values)
        .observe(counts, *summary_counts(in_range))
    )
    write_table(metrics(spark, validated, cmc, gas, args.start, end, args.now), db, args.staging_table)
    faults.maybe_kill("spark_write")
    observed_counts = observed(counts)
    # The staging table's rows and pools, the observations the history query rejects by their timestamp and the
    # active pools: small queries on one driver connection.
    (staged_rows, pools), timestamp_rejections, (active_pools,) = query_rows(
        spark,
        db,
        [
            f'SELECT count(*), count(DISTINCT pool_id) FROM "{check_identifier(args.staging_table)}"',
            time_bounds.timestamp_rejections_query(args.now),
            time_bounds.active_pools_query(),
        ],
    )
    rows_written = observed_counts["rows_written"]
    if staged_rows != rows_written:
        raise RuntimeError(f"{args.staging_table} holds {staged_rows} rows, the job computed {rows_written}")
    rejected = {r: observed_counts[r] for r in T.APY_REJECTION_REASONS}
    rejected.update(
        {r: int(n) for r, n in zip(time_bounds.TIMESTAMP_REJECTION_REASONS, timestamp_rejections, strict=True)}
    )
    return {
        "pools": int(pools),
        "rows_written": rows_written,
        "days_observed": observed_counts["days_observed"],
        "observations_superseded": observed_counts["observations_superseded"] or 0,
        "rejected": rejected,
        "tvl_nulled": {r: observed_counts[r] for r in T.TVL_NULLED_REASONS},
        "run_id": args.run_id,
        "staging_table": args.staging_table,
        "table_uri": db.table_uri(args.staging_table),
        "start": args.start and args.start.isoformat(),
        "end": end.isoformat(),
        "now": args.now.isoformat(),
        "read_partitions": partitions,
        # Active pools with no accepted day in the range (no history at all, or every day rejected).
        "active_pools_without_rows": int(active_pools) - int(pools),
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the job; returns (and logs) the run summary."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    db = DbConfig.from_args_or_env(args.database_url, args.password_secret).named("pool_metrics", args.run_id)
    local_jars = None if running_under_spark_submit() else jars.resolve_all([jars.JDBC_DRIVER])
    spark = build_session("pool-metrics", jars=local_jars)
    log.info(
        "run %s: metrics for %s..%s from %s into %s",
        args.run_id,
        args.start or "first day",
        args.end or "today",
        db.url,
        args.staging_table,
    )
    # A transient connection error reruns the job (it only overwrites its own staging table).
    summary = pg.with_retries(lambda: run(spark, db, args), what=f"pool_metrics {args.run_id}")
    log.info(
        "run %s: %d pools, %d rows written to %s; rejected %s; tvl set NULL %s; %d superseded observations",
        args.run_id,
        summary["pools"],
        summary["rows_written"],
        args.staging_table,
        summary["rejected"],
        summary["tvl_nulled"],
        summary["observations_superseded"],
    )
    print("RUN_SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
    return summary


if __name__ == "__main__":
    main()
