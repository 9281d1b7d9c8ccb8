"""Pure DataFrame transforms of the forecast job: panel, features and targets (no I/O, no model).

They reproduce the legacy forecaster's feature functions (``legacy.forecast_pools``) column by column; the
tests compare the two on the same panel. A feature of (pool, d) depends only on rows dated d or earlier.
"""

from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark_src.common.columns import FEATURE_COLUMNS as _FEATURE_COLUMNS
from spark_src.common.columns import METRIC_COLUMNS
from spark_src.forecast.quarantine import day_number, median_of, slog

# The model inputs, in this order (the same list and order as legacy.forecast_pools.FEATURE_COLUMNS).
FEATURE_COLUMNS: list[str] = list(_FEATURE_COLUMNS)
TARGET_COLUMNS = ["target_apy", "target_tvl"]


def pool_group_indices(pools: DataFrame) -> DataFrame:
    """(pool_group, pool_group_index): position in the sorted distinct groups of the active, kept pools.

    Taken from the whole ``pools`` table, not from the window, so a group keeps its index from run to run.
    Spark sorts strings by their UTF-8 bytes, which is code-point order, as Python's ``sorted``.
    """
    groups = (
        pools.where(F.col("is_active") & ~F.col("is_filtered_out") & F.col("pool_group").isNotNull())
        .select("pool_group")
        .distinct()
    )
    # One partition on purpose (a few dozen groups); said explicitly so that Spark does not warn on every run.
    in_order = Window.partitionBy(F.lit(0)).orderBy("pool_group")
    return groups.withColumn("pool_group_index", (F.row_number().over(in_order) - 1).cast("double"))


def build_panel(metrics: DataFrame, pools: DataFrame, as_of: dt.date, train_days: int) -> DataFrame:
    """The metric rows with an ``actual_apy`` of the active, kept pools on [as_of - train_days + 1, as_of].

    Args:
        metrics: ``pool_daily_metrics`` rows (``pool_id``, ``date``, the metric columns); may hold other dates.
        pools: The ``pools`` table.
        as_of: Last day of the window (inclusive).
        train_days: Window length in calendar days.
    """
    if train_days < 1:
        raise ValueError(f"train_days must be at least 1, got {train_days}")
    first_day = as_of - dt.timedelta(days=train_days - 1)
    eligible = pools.where(F.col("is_active") & ~F.col("is_filtered_out")).select("pool_id", "pool_group")
    return (
        metrics.where(F.col("date").between(F.lit(first_day), F.lit(as_of)) & F.col("actual_apy").isNotNull())
        .select("pool_id", "date", *[F.col(c).cast("double").alias(c) for c in METRIC_COLUMNS])
        .join(eligible, "pool_id")
        .join(F.broadcast(pool_group_indices(pools)), "pool_group", "left")
    )


def add_calendar_features(panel: DataFrame) -> DataFrame:
    """``dow_sin``/``dow_cos`` = sin/cos(2π·dow/7), dow = Monday 0 … Sunday 6 (Spark: Sunday 1 … Saturday 7)."""
    angle = F.lit(2.0 * math.pi) * ((F.dayofweek("date") + 5) % 7).cast("double") / F.lit(7.0)
    return panel.withColumn("dow_sin", F.sin(angle)).withColumn("dow_cos", F.cos(angle))


def add_neighbour_features(panel: DataFrame) -> DataFrame:
    """Same-day, same-group aggregates; NULL for a pool without a group (nobody's neighbour)."""
    group = Window.partitionBy("date", "pool_group")
    has_group = F.col("pool_group").isNotNull()

    def grouped(value: Column) -> Column:
        return F.when(has_group, value)

    tvl_sum = F.sum("actual_tvl").over(group)  # NULL when all the group's tvls are NULL, as legacy
    return (
        panel.withColumn("group_tvl_sum", grouped(tvl_sum))
        .withColumn("group_apy_mean", grouped(F.avg("actual_apy").over(group)))
        .withColumn("group_apy_std", grouped(F.stddev_samp("actual_apy").over(group)))
        .withColumn(
            "tvl_share", grouped(F.col("actual_tvl") / F.when(F.col("group_tvl_sum") != 0, F.col("group_tvl_sum")))
        )
    )


def add_targets(panel: DataFrame) -> DataFrame:
    """``target_apy``/``target_tvl`` = the pool's actuals on the calendar day d + 1 (NULL without such a row)."""
    next_day = panel.select(
        "pool_id",
        F.date_sub("date", 1).alias("date"),
        F.col("actual_apy").alias("target_apy"),
        F.col("actual_tvl").alias("target_tvl"),
    )
    return panel.join(next_day, ["pool_id", "date"], "left")


def feature_frame(panel: DataFrame) -> DataFrame:
    """``pool_id``, ``date``, :data:`FEATURE_COLUMNS` (double) and the targets; one row per panel row."""
    features = panel.transform(add_calendar_features).transform(add_neighbour_features).transform(add_targets)
    return features.select(
        "pool_id", "date", *[F.col(c).cast("double").alias(c) for c in FEATURE_COLUMNS], *TARGET_COLUMNS
    )


# --------------------------------------------------------------------------------------------------------------
# Robust features (Spark forecaster only): computed on the quarantined-clean rows, in slog / log scale.
# --------------------------------------------------------------------------------------------------------------

#: Days of history before the training window that the robust features look back on.
LOOKBACK_DAYS = 30
ROBUST_FEATURE_COLUMNS: list[str] = [
    "apy_median_3d",  # median APY of the pool over [d-2, d]
    "apy_median_7d",  # … over [d-6, d]
    "apy_median_30d",  # … over [d-29, d]
    "apy_min_30d",
    "apy_max_30d",
    "apy_gap_3d",  # slog(apy_d) - slog(median 3d): robust mean reversion (today against its recent typical level)
    "apy_gap_7d",
    "apy_gap_30d",
    "apy_change_1d",  # slog(apy_d) - slog(apy_{d-1}); NULL without a row on d-1
    "apy_change_3d",  # slog(apy_d) - slog(apy_{d-3}); NULL without a row on d-3
    "apy_change_7d",  # slog(apy_d) - slog(apy_{d-7}); NULL without a row on d-7
    "apy_change_mad_30d",  # the pool's robust volatility: MAD of its apy_change_1d over [d-29, d]
    "days_since_jump",  # days since the last |apy_change_1d| > ln(JUMP_RATIO) in [d-29, d]; 30 if none
    "group_apy_change_mean",  # same-day mean of apy_change_1d over the pool's group (co-movement)
    "group_apy_change_mean_lag1",  # the group's mean apy_change_1d of d-1 (co-movement with a lag)
    "group_apy_gap_mean",  # same-day mean of apy_gap_7d over the pool's group
    "tvl_change_1d",  # ln(tvl_d) - ln(tvl_{d-1}): flows, yield chasing
    "tvl_change_7d",  # ln(tvl_d) - ln(tvl_{d-7})
    "tvl_gap_7d",  # ln(tvl_d) - ln(median 7d tvl)
    "apy_obs_30d",  # observations in [d-29, d]
    "pool_age_days",  # days since the pool's first observation, capped at LOOKBACK_DAYS
]
#: A day-over-day APY move (on the 1 + |apy| scale) this large counts as a jump (an incentive starts or stops).
JUMP_RATIO = 1.5
MODEL_FEATURE_COLUMNS: list[str] = [*FEATURE_COLUMNS, *ROBUST_FEATURE_COLUMNS]


def add_robust_features(panel: DataFrame) -> DataFrame:
    """Adds :data:`ROBUST_FEATURE_COLUMNS` to a panel of clean rows (pool_id, date, actual_apy, actual_tvl, …)."""
    by_pool = Window.partitionBy("pool_id").orderBy("day_number")

    def last(days: int) -> Window:
        return by_pool.rangeBetween(-(days - 1), 0)

    def on_day_before(column: Column, days: int) -> Column:  # the value of d - days; NULL without that row
        return F.first(column).over(by_pool.rangeBetween(-days, -days))

    rows = panel.withColumn("day_number", day_number(F.col("date")))
    positive_tvl = F.when(F.col("actual_tvl") > 0, F.col("actual_tvl"))
    apy_slog = slog(F.col("actual_apy"))
    rows = (
        rows.withColumn("apy_median_3d", median_of(F.collect_list("actual_apy").over(last(3))))
        .withColumn("apy_median_7d", median_of(F.collect_list("actual_apy").over(last(7))))
        .withColumn("apy_median_30d", median_of(F.collect_list("actual_apy").over(last(30))))
        .withColumn("apy_min_30d", F.min("actual_apy").over(last(30)))
        .withColumn("apy_max_30d", F.max("actual_apy").over(last(30)))
        .withColumn("apy_obs_30d", F.count("actual_apy").over(last(30)).cast("double"))
        .withColumn("_tvl_median_7d", median_of(F.collect_list(positive_tvl).over(last(7))))
        .withColumn("apy_change_1d", apy_slog - on_day_before(apy_slog, 1))
        .withColumn("apy_change_3d", apy_slog - on_day_before(apy_slog, 3))
        .withColumn("apy_change_7d", apy_slog - on_day_before(apy_slog, 7))
        .withColumn("tvl_change_1d", F.log(positive_tvl) - on_day_before(F.log(positive_tvl), 1))
        .withColumn("tvl_change_7d", F.log(positive_tvl) - on_day_before(F.log(positive_tvl), 7))
        .withColumn("_first_day", F.min("day_number").over(Window.partitionBy("pool_id")))
    )
    changes = F.collect_list("apy_change_1d").over(last(30))
    jump = F.abs(F.col("apy_change_1d")) > F.lit(math.log(JUMP_RATIO))
    rows = (
        rows.withColumn("apy_gap_3d", apy_slog - slog(F.col("apy_median_3d")))
        .withColumn("apy_gap_7d", apy_slog - slog(F.col("apy_median_7d")))
        .withColumn("apy_gap_30d", apy_slog - slog(F.col("apy_median_30d")))
        .withColumn("_changes_30d", changes)
        .withColumn("_changes_median", median_of(F.col("_changes_30d")))
        .withColumn(
            "apy_change_mad_30d",
            median_of(F.transform("_changes_30d", lambda x: F.abs(x - F.col("_changes_median")))),
        )
        .withColumn(
            "days_since_jump",
            F.coalesce(
                (F.col("day_number") - F.max(F.when(jump, F.col("day_number"))).over(last(LOOKBACK_DAYS))).cast(
                    "double"
                ),
                F.lit(float(LOOKBACK_DAYS)),
            ),
        )
        .withColumn("tvl_gap_7d", F.log(positive_tvl) - F.log(F.col("_tvl_median_7d")))
        .withColumn(
            "pool_age_days",
            F.least(F.col("day_number") - F.col("_first_day"), F.lit(LOOKBACK_DAYS)).cast("double"),
        )
    )
    group = Window.partitionBy("date", "pool_group")
    has_group = F.col("pool_group").isNotNull()
    yesterday = (
        rows.where(has_group)
        .groupBy("pool_group", F.date_add("date", 1).alias("date"))
        .agg(F.avg("apy_change_1d").alias("group_apy_change_mean_lag1"))
    )
    rows = (
        rows.withColumn("group_apy_change_mean", F.when(has_group, F.avg("apy_change_1d").over(group)))
        .withColumn("group_apy_gap_mean", F.when(has_group, F.avg("apy_gap_7d").over(group)))
        .join(yesterday, ["pool_group", "date"], "left")
    )
    return rows.drop("day_number", "_tvl_median_7d", "_changes_30d", "_changes_median", "_first_day")


def model_frame(clean_metrics: DataFrame, pools: DataFrame, as_of: dt.date, train_days: int) -> DataFrame:
    """``pool_id``, ``date``, :data:`MODEL_FEATURE_COLUMNS` and the targets for [as_of - train_days + 1, as_of].

    Args:
        clean_metrics: Quarantine-clean metric rows (``spark_src.forecast.quarantine.clean_metrics``) covering
            at least the :data:`LOOKBACK_DAYS` days before the window, so the robust features are complete.
        pools: The ``pools`` table.
        as_of: Last day of the window.
        train_days: Window length in days.
    """
    first_day = as_of - dt.timedelta(days=train_days - 1)
    panel = build_panel(clean_metrics, pools, as_of, train_days + LOOKBACK_DAYS)
    features = (
        panel.transform(add_calendar_features)
        .transform(add_neighbour_features)
        .transform(add_robust_features)
        .transform(add_targets)
    )
    return features.where(F.col("date") >= F.lit(first_day)).select(
        "pool_id", "date", *[F.col(c).cast("double").alias(c) for c in MODEL_FEATURE_COLUMNS], *TARGET_COLUMNS
    )
