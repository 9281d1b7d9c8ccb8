"""Pure DataFrame transforms of the pool-metrics job (no I/O): tested on small DataFrames.

The metric semantics are written once, in README.md, section "Metric semantics"; the legacy pandas job
implements the same rules, and the parity gate compares the two cell by cell.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_src.common.columns import METRIC_COLUMNS as _METRIC_COLUMNS
from spark_src.common.columns import POOL_METRIC_COLUMNS as _POOL_METRIC_COLUMNS
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


# Most expressions below are Spark SQL text, each parsed in the JVM in one call. Built with the Column API, every
# function, literal and operator was a Py4J round trip of its own (~0.4 ms): a one-day run of the job made 2,434
# round trips before its first Spark job, now 1,231 (lab, 2,740 pools), and its planning takes half the time.
# The rules are the same; the tests pin them on known rows.


def _finite(value: str) -> str:
    return f"({value} IS NOT NULL AND NOT isnan({value}) AND abs({value}) != CAST('Infinity' AS DOUBLE))"


def _problem(text: str, value: str, prefix: str, *, negative_is_bad: bool) -> Column:
    negative = f" WHEN {value} < 0 THEN '{prefix}_negative'" if negative_is_bad else ""
    return F.expr(
        f"CASE WHEN {text} IS NULL THEN '{prefix}_missing' WHEN {value} IS NULL THEN '{prefix}_not_numeric' "
        f"WHEN NOT {_finite(value)} THEN '{prefix}_not_finite'{negative} END"
    )


def latest_observation_per_day(history: DataFrame) -> DataFrame:
    """history(pool_id, history_id, observed_at, apy_text, tvl_text) -> one row per (pool_id, date).

    Adds ``date`` (UTC calendar date: the session time zone is pinned to UTC) and ``observations`` (how many
    the pool had that day), and keeps, per pool and day, the latest ``observed_at``, ties broken by the highest
    ``history_id``. Both over one window (one sort).
    """
    by_day = "PARTITION BY pool_id, date ORDER BY observed_at DESC, history_id DESC"
    return (
        history.withColumn("date", F.to_date("observed_at"))
        .selectExpr(
            "*",
            f"row_number() OVER ({by_day}) AS _rank",
            f"count(1) OVER ({by_day} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS observations",
        )
        .where("_rank = 1")
        .drop("_rank")
    )


def with_validated_values(daily: DataFrame) -> DataFrame:
    """Parses apy/tvl text; adds ``apy``, ``tvl`` (NULL when invalid), ``apy_problem``, ``tvl_problem``."""
    return (
        daily.withColumns({"apy": parse_number(F.col("apy_text")), "tvl": parse_number(F.col("tvl_text"))})
        .withColumns(
            {
                "apy_problem": _problem("apy_text", "apy", "apy", negative_is_bad=False),
                "tvl_problem": _problem("tvl_text", "tvl", "tvl", negative_is_bad=True),
            }
        )
        .withColumn("tvl", F.expr("CASE WHEN tvl_problem IS NULL THEN tvl END"))
    )


def accepted_rows(validated: DataFrame) -> DataFrame:
    return validated.where("apy_problem IS NULL").select("pool_id", "date", "apy", "tvl")


# Each pool's days in order: the one window of the rolling and day-over-day columns, so Spark computes them over
# one sort (frames may differ, the partitioning and ordering may not). Ordered by ``date`` itself, the column that
# :func:`latest_observation_per_day` partitions by, the rows come out of that window's sort already in this
# order: no second sort. (A range frame over a date takes integer day offsets in SQL text; the Column API's
# ``rangeBetween`` passes them as BIGINT, which Spark refuses for a date.)
TIMELINE = "PARTITION BY pool_id ORDER BY date"


def with_rolling_apy(days: int) -> Transform:
    """Mean and sample stddev of apy over the calendar window [d-(days-1), d]; stddev NULL below 2 values.

    Spark's ``stddev_samp`` is NULL below 2 values itself (unless ``spark.sql.legacy.statisticalAggregate``
    makes it NaN for one, which :func:`pool_daily_metrics` turns into NULL as it does every value that is not
    finite). A ``count(apy)`` over the frame said it again, at a cost: Spark aggregates a sliding frame anew for
    every row. Lab, 2,740 pools, one-day run of the job, 8 alternated runs each: median 2.04 s with it, 1.90 s
    without.
    """
    frame = f"OVER ({TIMELINE} RANGE BETWEEN {days - 1} PRECEDING AND CURRENT ROW)"

    def _(df: DataFrame) -> DataFrame:
        return df.selectExpr(
            "*", f"avg(apy) {frame} AS rolling_apy_{days}d", f"stddev_samp(apy) {frame} AS stddev_apy_{days}d"
        )

    return _


def with_day_over_day_deltas(df: DataFrame) -> DataFrame:
    """apy and stddev deltas against the previous calendar day, NULL when the pool has no row that day."""
    previous = f"OVER ({TIMELINE})"

    def delta(column: str, name: str) -> str:
        return (
            f"CASE WHEN datediff(date, lag(date) {previous}) = 1 THEN {column} - lag({column}) {previous} END AS {name}"
        )

    return df.selectExpr(
        "*",
        delta("apy", "apy_delta_today_yesterday"),
        delta("stddev_apy_7d", "stddev_apy_7d_delta"),
        delta("stddev_apy_30d", "stddev_apy_30d_delta"),
    )


def daily_closes(cmc: DataFrame, symbol: str) -> DataFrame:
    """cmc(id, symbol, data_timestamp, close_text) -> (date, close): the day's latest valid close (tie: highest id)."""
    return (
        cmc.where(F.col("symbol") == symbol)
        .select(
            "id",
            "data_timestamp",
            F.to_date("data_timestamp").alias("date"),
            parse_number(F.col("close_text")).alias("close"),
        )
        .where(_finite("close"))
        .selectExpr(
            "date", "close", "row_number() OVER (PARTITION BY date ORDER BY data_timestamp DESC, id DESC) AS _rank"
        )
        .where("_rank = 1")
        .select("date", "close")
    )


def calendar(spark: SparkSession, first: dt.date, last: dt.date) -> DataFrame:
    """One row per day of [first, last] in column ``date`` (none when ``last`` is before ``first``).

    The dates of the job's as-of lookup: built from two literals, it reads no table, so Spark can compute and
    broadcast the lookup while it still reads the pools' rows.
    """
    if last < first:
        return spark.range(0).selectExpr(f"DATE '{first.isoformat()}' AS date")
    return spark.range(1).selectExpr(
        f"explode(sequence(DATE '{first.isoformat()}', DATE '{last.isoformat()}')) AS date"
    )


def _as_of(value: str, frame: str, max_age_days: int, name: str) -> str:
    """The latest non-NULL ``value`` over ``frame`` (a window of the timeline), NULL when its date is stale."""
    source_date = f"last(CASE WHEN {value} IS NOT NULL THEN date END, true) OVER ({frame})"
    latest = f"last({value}, true) OVER ({frame})"
    return f"CASE WHEN datediff(date, {source_date}) <= {max_age_days} THEN {latest} END AS {name}"


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
    none = "CAST(NULL AS DOUBLE)"
    timeline = (
        dates.selectExpr("date", f"{none} AS eth_close", f"{none} AS btc_close", f"{none} AS gas_gwei")
        .unionByName(eth.selectExpr("date", "close AS eth_close", f"{none} AS btc_close", f"{none} AS gas_gwei"))
        .unionByName(btc.selectExpr("date", f"{none} AS eth_close", "close AS btc_close", f"{none} AS gas_gwei"))
        .unionByName(
            gas.where(_finite("gas_gwei")).selectExpr(
                "date", f"{none} AS eth_close", f"{none} AS btc_close", "gas_gwei"
            )
        )
        .coalesce(1)
        .groupBy("date")
        .agg(
            F.expr("max(eth_close) AS eth_close"),
            F.expr("max(btc_close) AS btc_close"),
            F.expr("max(gas_gwei) AS gas_gwei"),
        )
    )
    # One partition on purpose, said explicitly: an empty PARTITION BY does the same but makes Spark warn
    # ("WindowExec: No Partition Defined") on every run about what is here a few thousand rows.
    order = "PARTITION BY 0 ORDER BY date ROWS BETWEEN UNBOUNDED PRECEDING AND"
    before, up_to = f"{order} 1 PRECEDING", f"{order} CURRENT ROW"
    return timeline.selectExpr(
        "date",
        _as_of("eth_close", before, max_age_days, "eth_open"),
        _as_of("btc_close", before, max_age_days, "btc_open"),
        _as_of("gas_gwei", up_to, max_age_days, "gas_price_gwei"),
    )


# The columns computed from several apy values (all pool metrics but the actuals): a sum of squares beyond float64's
# range (apy values above ~1e154 in a window) makes them infinite or NaN, which the metric semantics make NULL.
COMPUTED_COLUMNS = list(_POOL_METRIC_COLUMNS[2:])


def pool_daily_metrics(accepted: DataFrame, exogenous: DataFrame) -> DataFrame:
    """accepted(pool_id, date, apy, tvl) + as-of exogenous -> rows of ``pool_daily_metrics``.

    A rolling value, stddev or delta that is not finite (an overflow) is NULL, as in the legacy job.
    """
    metrics = (
        accepted.transform(with_rolling_apy(7))
        .transform(with_rolling_apy(30))
        .transform(with_day_over_day_deltas)
        .join(F.broadcast(exogenous), "date", "left")
    )
    return metrics.selectExpr(
        "pool_id",
        "date",
        "apy AS actual_apy",
        "tvl AS actual_tvl",
        *[f"CASE WHEN {_finite(c)} THEN {c} END AS {c}" if c in COMPUTED_COLUMNS else c for c in METRIC_COLUMNS[2:]],
    )


def date_in_range(start: str | None, end: str | None) -> str:
    """SQL condition: ``date`` within [start, end] (ISO dates; an empty bound is open, and both empty hold every
    row). The bounds are parsed as dates first, so nothing but a date reaches the SQL text."""
    bounds = [f"date >= DATE '{dt.date.fromisoformat(start)}'"] if start else []
    if end:
        bounds.append(f"date <= DATE '{dt.date.fromisoformat(end)}'")
    return " AND ".join(bounds) or "TRUE"


def in_date_range(start: str | None, end: str | None) -> Transform:
    def _(df: DataFrame) -> DataFrame:
        return df.where(date_in_range(start, end))

    return _
