"""The pool pipeline: pool-metrics Spark job -> per-run staging table -> upsert into ``pool_daily_metrics``."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.run_context import make_run_context
from components.run_spark_job import run_spark_job_local
from components.upsert_staging import upsert_staging
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

PIPELINE_NAME = "defi-pool-metrics"
METRICS_TABLE = "pool_daily_metrics"


class PoolPipelineOutputs(NamedTuple):
    metrics_staging: dsl.Dataset
    metrics_promoted: dsl.Dataset


@dsl.pipeline(name=PIPELINE_NAME, description="Daily DeFi pool metrics computed by Spark and promoted by upsert.")
def pool_pipeline(
    database_url: str,
    password_secret: str = "env:DB_PASSWORD",
    start: str = "",
    end: str = "",
) -> PoolPipelineOutputs:
    """Computes pool metrics for [start, end] (empty: all days) and promotes them.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        password_secret: Secret reference of the database password (``env:VAR`` or Secret Manager name).
        start: First day (ISO date), empty for the first day with data.
        end: Last day (ISO date, inclusive), empty for the last day with data.
    """
    context = make_run_context(pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("run context")

    metrics = run_spark_job_local(
        job="pool_metrics",
        database_url=database_url,
        password_secret=password_secret,
        run_id=context.outputs["run_id"],
        staging_table=context.outputs["metrics_staging_table"],
        start=start,
        end=end,
    ).set_display_name("pool metrics (Spark)")
    metrics.set_caching_options(False)  # reads the database: a cached result would be stale

    promote = upsert_staging(
        database_url=database_url,
        password_secret=password_secret,
        staging_table=context.outputs["metrics_staging_table"],
        target_table=METRICS_TABLE,
        update_columns=METRIC_COLUMNS,
        run_id=context.outputs["run_id"],
    ).set_display_name("upsert pool_daily_metrics")
    promote.after(metrics)
    promote.set_caching_options(False)

    return PoolPipelineOutputs(metrics_staging=metrics.outputs["staging"], metrics_promoted=promote.outputs["promoted"])
