"""Plausibility quarantine of the forecaster's inputs: which APY/TVL observations are implausible, and why.

The metrics keep every finite value (a 1e9 % APY is a number DeFi feeds do publish); the *forecaster* must not
learn from it, nor anchor on it. :func:`flag_observations` applies one documented, parameterised rule
(:class:`QuarantineRule`) to the ``pool_daily_metrics`` rows, pool by pool and looking only backwards:

- ``apy_above_bound`` / ``apy_below_bound``: ``actual_apy`` outside [``apy_min``, ``apy_max``] (percent);
- ``apy_jump``: the pool has at least ``min_reference`` observations in the ``reference_days`` days before d,
  and slog(apy_d) exceeds the median of their slog by more than
  max(ln(``apy_jump_ratio``), ``robust_z`` · 1.4826 · MAD), where slog(x) = sign(x)·ln(1 + |x|) and MAD is the
  median absolute deviation of that reference. Only upward jumps: a yield that collapses (an incentive that
  ends, an exploit) is real news, not a glitch;
- ``tvl_above_bound``: ``actual_tvl`` above ``tvl_max`` (USD);
- ``tvl_jump``: ln(tvl_d) exceeds the median ln(tvl) of the reference by more than ln(``tvl_jump_ratio``).

The reference takes the raw previous observations (flagged ones included): the median ignores a few spikes,
and a lasting level shift stops being flagged once it is the median (after about ``reference_days`` / 2 days).

What a flag does (:func:`clean_metrics`): an APY-flagged pool-day leaves the forecaster's panel (no features,
no training target, no neighbour of its group, no forecast made from it), and the stored rolling statistics of
the pool's later days whose window holds it are set to NULL (unknown rather than poisoned). A TVL-flagged
pool-day keeps its row with a NULL ``actual_tvl``. Flagged rows are written, with the run id and reason, to
the quarantine table; ``pool_daily_metrics`` itself is never changed by the quarantine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

QUARANTINE_COLUMNS = ["pool_id", "date", "column_name", "value", "reference", "reason"]
# Stored metrics of day d whose window reaches back this many days (d itself included at 0).
_CONTAMINATED_BY = {
    "apy_delta_today_yesterday": 1,
    "rolling_apy_7d": 6,
    "stddev_apy_7d": 6,
    "stddev_apy_7d_delta": 7,
    "rolling_apy_30d": 29,
    "stddev_apy_30d": 29,
    "stddev_apy_30d_delta": 30,
}


@dataclass(frozen=True)
class QuarantineRule:
    """Parameters of the plausibility rule (see the module docstring)."""

    apy_min: float = -100.0
    apy_max: float = 10_000.0
    apy_jump_ratio: float = 10.0
    robust_z: float = 8.0
    tvl_max: float = 1e11
    tvl_jump_ratio: float = 100.0
    reference_days: int = 14
    min_reference: int = 5

    def __post_init__(self) -> None:
        if not self.apy_min < self.apy_max or self.tvl_max <= 0:
            raise ValueError(f"bad bounds: apy [{self.apy_min}, {self.apy_max}], tvl_max {self.tvl_max}")
        if self.apy_jump_ratio <= 1 or self.tvl_jump_ratio <= 1 or self.robust_z <= 0:
            raise ValueError("jump ratios must be > 1 and robust_z > 0")
        if self.reference_days < 1 or not 1 <= self.min_reference <= self.reference_days:
            raise ValueError("need 1 <= min_reference <= reference_days")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def slog(value: Column) -> Column:
    """sign(x)·ln(1 + |x|): a log scale that keeps sign and zero (APYs may be 0 or slightly negative)."""
    return F.signum(value) * F.log1p(F.abs(value))


def unslog(value: Column) -> Column:
    """Inverse of :func:`slog`."""
    return F.signum(value) * F.expm1(F.abs(value))


def median_of(values: Column) -> Column:
    """Median of an array column (NULL for an empty array); the mean of the two middle values for even sizes."""
    ordered = F.array_sort(values)
    n = F.size(ordered)
    lower = F.element_at(ordered, ((n + 1) / 2).cast("int"))
    upper = F.element_at(ordered, (n / 2 + 1).cast("int"))
    return F.when(n > 0, (lower + upper) / 2.0)


def day_number(date: Column) -> Column:
    """Days since 1970-01-01, for calendar RANGE windows."""
    return F.datediff(date, F.lit("1970-01-01")).cast("long")


def _reference(column: Column, days: int) -> Column:
    window = Window.partitionBy("pool_id").orderBy("day_number").rangeBetween(-days, -1)
    return F.collect_list(column).over(window)


def flag_observations(metrics: DataFrame, rule: QuarantineRule) -> DataFrame:
    """``metrics`` with two more columns, ``apy_reason`` and ``tvl_reason`` (NULL: plausible).

    Args:
        metrics: ``pool_daily_metrics`` rows (``pool_id``, ``date``, ``actual_apy``, ``actual_tvl``, …) with
            an ``actual_apy``; rows of the ``reference_days`` before the first day to judge must be included.
        rule: The parameters.
    """
    rows = metrics.withColumn("day_number", day_number(F.col("date")))
    apy_log = slog(F.col("actual_apy"))
    tvl_log = F.when(F.col("actual_tvl") > 0, F.log(F.col("actual_tvl")))
    rows = rows.withColumn("_apy_ref", _reference(apy_log, rule.reference_days)).withColumn(
        "_tvl_ref", _reference(tvl_log, rule.reference_days)
    )
    rows = rows.withColumn("_apy_med", median_of(F.col("_apy_ref"))).withColumn(
        "_tvl_med", median_of(F.col("_tvl_ref"))
    )
    rows = rows.withColumn(
        "_apy_mad", median_of(F.transform(F.col("_apy_ref"), lambda x: F.abs(x - F.col("_apy_med"))))
    )
    apy_threshold = F.greatest(F.lit(math.log(rule.apy_jump_ratio)), F.lit(rule.robust_z * 1.4826) * F.col("_apy_mad"))
    enough_apy = F.size("_apy_ref") >= rule.min_reference
    enough_tvl = F.size("_tvl_ref") >= rule.min_reference
    apy_reason = (
        F.when(F.col("actual_apy") > rule.apy_max, F.lit("apy_above_bound"))
        .when(F.col("actual_apy") < rule.apy_min, F.lit("apy_below_bound"))
        .when(enough_apy & (apy_log - F.col("_apy_med") > apy_threshold), F.lit("apy_jump"))
    )
    tvl_reason = F.when(F.col("actual_tvl") > rule.tvl_max, F.lit("tvl_above_bound")).when(
        enough_tvl & (tvl_log - F.col("_tvl_med") > math.log(rule.tvl_jump_ratio)), F.lit("tvl_jump")
    )
    return (
        rows.withColumn("apy_reason", apy_reason)
        .withColumn("tvl_reason", tvl_reason)
        .withColumn("apy_reference", unslog(F.col("_apy_med")))
        .withColumn("tvl_reference", F.exp(F.col("_tvl_med")))
        .drop("_apy_ref", "_tvl_ref", "_apy_med", "_tvl_med", "_apy_mad")
    )


def quarantine_rows(flagged: DataFrame) -> DataFrame:
    """One row per flagged value: :data:`QUARANTINE_COLUMNS` (``reference`` = the pool's median before d)."""
    apy = flagged.where(F.col("apy_reason").isNotNull()).select(
        "pool_id",
        "date",
        F.lit("actual_apy").alias("column_name"),
        F.col("actual_apy").alias("value"),
        F.col("apy_reference").alias("reference"),
        F.col("apy_reason").alias("reason"),
    )
    tvl = flagged.where(F.col("tvl_reason").isNotNull()).select(
        "pool_id",
        "date",
        F.lit("actual_tvl").alias("column_name"),
        F.col("actual_tvl").alias("value"),
        F.col("tvl_reference").alias("reference"),
        F.col("tvl_reason").alias("reason"),
    )
    return apy.unionByName(tvl)


def clean_metrics(flagged: DataFrame) -> DataFrame:
    """The rows of :func:`flag_observations` the forecaster may use, with the poisoned statistics NULLed.

    APY-flagged rows are dropped; a TVL-flagged row keeps a NULL ``actual_tvl``; a stored rolling statistic
    whose window covers an APY-flagged day of the pool is NULL. Returns the input columns minus the flags.
    """
    flag = F.col("apy_reason").isNotNull().cast("int")
    rows = flagged
    for column, days in _CONTAMINATED_BY.items():
        window = Window.partitionBy("pool_id").orderBy("day_number").rangeBetween(-days, 0)
        rows = rows.withColumn(f"_q_{column}", F.max(flag).over(window))
    for column in _CONTAMINATED_BY:
        rows = rows.withColumn(column, F.when(F.col(f"_q_{column}") == 0, F.col(column)))
    rows = rows.withColumn("actual_tvl", F.when(F.col("tvl_reason").isNull(), F.col("actual_tvl")))
    helpers = ["apy_reason", "tvl_reason", "apy_reference", "tvl_reference", "day_number"]
    return rows.where(F.col("apy_reason").isNull()).drop(*helpers, *[f"_q_{c}" for c in _CONTAMINATED_BY])
