"""Pure DataFrame transforms of the pool-metrics job (no I/O): tested on small DataFrames.

The metric semantics are written once, in README.md, section "Metric semantics"; the legacy pandas job
implements the same rules, and the parity gate compares the two cell by cell.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_src.common.columns import METRIC_COLUMNS as _METRIC_COLUMNS
from spark_src.common.time_bounds import EXOGENOUS_MAX_AGE_DAYS

# Numbers as both Python's float() and Java's Double.parseDouble read them: no "1_0" (Python only),
# no "1.5d" or hex (Java only). NaN and infinities are numbers here; they are rejected as not finite.
NUMERIC_TEXT = r"^\s*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(?i:inf|infinity)|[+-]?(?i:nan))\s*$"

METRIC_COLUMNS = list(_METRIC_COLUMNS)
OUTPUT_COLUMNS = ["pool_id", "date", *METRIC_COLUMNS]

APY_REJECTION_REASONS = ["apy_missing", "apy_not_numeric", "apy_not_finite"]
TVL_NULLED_REASONS = ["tvl_missing", "tvl_not_numeric", "tvl_not_finite", "tvl_negative"]

Transform = Callable[[DataFrame], DataFrame]


def parse_number(text: Column) -> Column:
    """Text -> double by :data:`NUMERIC_TEXT`; anything else -> NULL."""
    return F.when(text.rlike(NUMERIC_TEXT), F.trim(text).cast("double"))


def _finite(value: Column) -> Column:
    return value.isNotNull() & ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))


def _problem(text: Column, value: Column, prefix: str, *, negative_is_bad: bool) -> Column:
    finite = _finite(value)
    problem = (
        F.when(text.isNull(), F.lit(f"{prefix}_missing"))
        .when(value.isNull(), F.lit(f"{prefix}_not_numeric"))
        .when(~finite, F.lit(f"{prefix}_not_finite"))
    )
    if negative_is_bad:
        problem = problem.when(value < 0, F.lit(f"{prefix}_negative"))
    return problem


def latest_observation_per_day(history: DataFrame) -> DataFrame:
    """history(pool_id, history_id, observed_at, apy_text, tvl_text) -> one row per (pool_id, date).

    Adds ``date`` (UTC calendar date: the session time zone is pinned to UTC) and ``observations`` (how many
    the pool had that day), and keeps, per pool and day, the latest ``observed_at``, ties broken by the highest
    ``history_id``. Both over one window (one sort).
    """
    by_day = Window.partitionBy("pool_id", "date").orderBy(F.col("observed_at").desc(), F.col("history_id").desc())
    whole_day = by_day.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    return (
        history.withColumn("date", F.to_date("observed_at"))
        .withColumn("_rank", F.row_number().over(by_day))
        .withColumn("observations", F.count(F.lit(1)).over(whole_day))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )


def with_validated_values(daily: DataFrame) -> DataFrame:
    """Parses apy/tvl text; adds ``apy``, ``tvl`` (NULL when invalid), ``apy_problem``, ``tvl_problem``."""
    apy = parse_number(F.col("apy_text"))
    tvl = parse_number(F.col("tvl_text"))
    return (
        daily.withColumn("apy", apy)
        .withColumn("tvl", tvl)
        .withColumn("apy_problem", _problem(F.col("apy_text"), F.col("apy"), "apy", negative_is_bad=False))
        .withColumn("tvl_problem", _problem(F.col("tvl_text"), F.col("tvl"), "tvl", negative_is_bad=True))
        .withColumn("tvl", F.when(F.col("tvl_problem").isNull(), F.col("tvl")))
    )


def accepted_rows(validated: DataFrame) -> DataFrame:
    return validated.where(F.col("apy_problem").isNull()).select("pool_id", "date", "apy", "tvl")


# The day number (days since 1970-01-01) the windows order by: range frames need a number, not a date.
DAY = "_day"


def _with_day(df: DataFrame) -> DataFrame:
    return df if DAY in df.columns else df.withColumn(DAY, F.unix_date("date"))


def _timeline() -> Window:
    """Each pool's days in order: the one window spec of the rolling and day-over-day columns, so Spark
    computes them over one sort (frames may differ, the partitioning and ordering may not).

    It orders by the column :data:`DAY`, added once: ordered by the expression ``unix_date(date)`` instead,
    every window got its own copy of it, so its own spec, and Spark sorted the rows once per window column
    (seven sorts where one does; twice the time of the whole metrics step).
    """
    return Window.partitionBy("pool_id").orderBy(DAY)


def with_rolling_apy(days: int) -> Transform:
    """Mean and sample stddev of apy over the calendar window [d-(days-1), d]; stddev NULL below 2 values."""

    def _(df: DataFrame) -> DataFrame:
        df = _with_day(df)
        window = _timeline().rangeBetween(-(days - 1), Window.currentRow)
        n = F.count("apy").over(window)
        return df.withColumn(f"rolling_apy_{days}d", F.avg("apy").over(window)).withColumn(
            f"stddev_apy_{days}d", F.when(n >= 2, F.stddev_samp("apy").over(window))
        )

    return _


def with_day_over_day_deltas(df: DataFrame) -> DataFrame:
    """apy and stddev deltas against the previous calendar day, NULL when the pool has no row that day."""
    df = _with_day(df)
    previous = _timeline()
    has_yesterday = F.datediff("date", F.lag("date").over(previous)) == 1

    def delta(column: str) -> Column:
        return F.when(has_yesterday, F.col(column) - F.lag(column).over(previous))

    return (
        df.withColumn("apy_delta_today_yesterday", delta("apy"))
        .withColumn("stddev_apy_7d_delta", delta("stddev_apy_7d"))
        .withColumn("stddev_apy_30d_delta", delta("stddev_apy_30d"))
    )


def daily_closes(cmc: DataFrame, symbol: str) -> DataFrame:
    """cmc(id, symbol, data_timestamp, close_text) -> (date, close): the day's latest valid close (tie: highest id)."""
    latest = Window.partitionBy("date").orderBy(F.col("data_timestamp").desc(), F.col("id").desc())
    return (
        cmc.where(F.col("symbol") == symbol)
        .withColumn("close", parse_number(F.col("close_text")))
        .where(_finite(F.col("close")))
        .withColumn("date", F.to_date("data_timestamp"))
        .withColumn("_rank", F.row_number().over(latest))
        .where(F.col("_rank") == 1)
        .select("date", "close")
    )


def calendar(spark: SparkSession, first: dt.date, last: dt.date) -> DataFrame:
    """One row per day of [first, last] in column ``date`` (none when ``last`` is before ``first``).

    The dates of the job's as-of lookup: built from two literals, it reads no table, so Spark can compute and
    broadcast the lookup while it still reads the pools' rows.
    """
    if last < first:
        return spark.range(0).select(F.lit(first).alias("date"))
    return spark.range(1).select(F.explode(F.sequence(F.lit(first), F.lit(last))).alias("date"))


def _as_of(value: str, frame, max_age_days: int) -> Column:
    """The latest non-NULL ``value`` of ``frame`` (a window over the timeline), NULL when its date is stale."""
    latest = F.last(value, ignorenulls=True).over(frame)
    source_date = F.last(F.when(F.col(value).isNotNull(), F.col("date")), ignorenulls=True).over(frame)
    return F.when(F.datediff(F.col("date"), source_date) <= max_age_days, latest)


def as_of_exogenous(
    dates: DataFrame, eth: DataFrame, btc: DataFrame, gas: DataFrame, max_age_days: int = EXOGENOUS_MAX_AGE_DAYS
) -> DataFrame:
    """For each date d of ``dates``: eth/btc close of the latest date < d, gas of the latest date <= d.

    A value whose date is more than ``max_age_days`` before d is stale: NULL, not carried forward.
    The frames are small (one row per calendar day), so the as-of lookup runs as one ordered pass over the
    union of their dates (a single-partition window over a few thousand rows); the result is broadcast.
    The timeline is a union grouped by date, one shuffle, rather than three full outer joins (six): ``eth``,
    ``btc`` and ``gas`` hold at most one row per date, so each date's max is its one value or NULL.
    """
    none = F.lit(None).cast("double")
    timeline = (
        dates.select("date", none.alias("eth_close"), none.alias("btc_close"), none.alias("gas_gwei"))
        .unionByName(
            eth.select("date", F.col("close").alias("eth_close"), none.alias("btc_close"), none.alias("gas_gwei"))
        )
        .unionByName(
            btc.select("date", none.alias("eth_close"), F.col("close").alias("btc_close"), none.alias("gas_gwei"))
        )
        .unionByName(
            gas.where(_finite(F.col("gas_gwei"))).select(
                "date", none.alias("eth_close"), none.alias("btc_close"), "gas_gwei"
            )
        )
        .coalesce(1)
        .groupBy("date")
        .agg(*(F.max(c).alias(c) for c in ("eth_close", "btc_close", "gas_gwei")))
    )
    # One partition on purpose, said explicitly: an empty partitionBy does the same but makes Spark warn
    # ("WindowExec: No Partition Defined") on every run about what is here a few thousand rows.
    timeline_order = Window.partitionBy(F.lit(0)).orderBy("date")
    before = timeline_order.rowsBetween(Window.unboundedPreceding, -1)
    up_to = timeline_order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return timeline.select(
        "date",
        _as_of("eth_close", before, max_age_days).alias("eth_open"),
        _as_of("btc_close", before, max_age_days).alias("btc_open"),
        _as_of("gas_gwei", up_to, max_age_days).alias("gas_price_gwei"),
    )


def pool_daily_metrics(accepted: DataFrame, exogenous: DataFrame) -> DataFrame:
    """accepted(pool_id, date, apy, tvl) + as-of exogenous -> rows of ``pool_daily_metrics``."""
    metrics = (
        accepted.transform(with_rolling_apy(7))
        .transform(with_rolling_apy(30))
        .transform(with_day_over_day_deltas)
        .join(F.broadcast(exogenous), "date", "left")
    )
    return metrics.select(
        "pool_id",
        "date",
        F.col("apy").alias("actual_apy"),
        F.col("tvl").alias("actual_tvl"),
        *METRIC_COLUMNS[2:],
    )


def date_in_range(start: str | None, end: str | None) -> Column:
    """``date`` within [start, end] (ISO dates; an empty bound is open, and both empty hold every row)."""
    condition = F.lit(True)
    if start:
        condition = condition & (F.col("date") >= F.lit(start).cast("date"))
    if end:
        condition = condition & (F.col("date") <= F.lit(end).cast("date"))
    return condition


def in_date_range(start: str | None, end: str | None) -> Transform:
    def _(df: DataFrame) -> DataFrame:
        return df.where(date_in_range(start, end))

    return _
