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
