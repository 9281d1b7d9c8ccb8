"""Column lists of ``pool_daily_metrics`` shared by the Spark jobs, the legacy jobs and the components.

Pure Python (no pyspark import): the legacy pandas jobs and the components import it too.
"""

from __future__ import annotations

# Metrics of the pool itself, then its exogenous context; the order of the staging tables and of the features.
POOL_METRIC_COLUMNS = (
    "actual_apy",
    "actual_tvl",
    "rolling_apy_7d",
    "rolling_apy_30d",
    "apy_delta_today_yesterday",
    "stddev_apy_7d",
    "stddev_apy_30d",
    "stddev_apy_7d_delta",
    "stddev_apy_30d_delta",
)
EXOGENOUS_COLUMNS = ("eth_open", "btc_open", "gas_price_gwei")
METRIC_COLUMNS = (*POOL_METRIC_COLUMNS, *EXOGENOUS_COLUMNS)
# What the forecast pipeline writes into pool_daily_metrics.
FORECAST_COLUMNS = ("forecasted_apy", "forecasted_tvl")
# The forecasters' features beyond the metric columns (legacy and Spark assemble them in this order).
DERIVED_FEATURE_COLUMNS = (
    "pool_group_index",
    "dow_sin",
    "dow_cos",
    "group_tvl_sum",
    "group_apy_mean",
    "group_apy_std",
    "tvl_share",
)
FEATURE_COLUMNS = (*METRIC_COLUMNS, *DERIVED_FEATURE_COLUMNS)
