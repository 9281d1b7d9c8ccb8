"""The pool pipeline: Spark metrics -> staging; legacy metrics -> shadow; parity gate; upsert into production.

make_run_context ─┬─> pool metrics (Spark) ──────────────┬─> parity gate ─> upsert pool_daily_metrics
                  └─> legacy metrics (pandas, shadow) ───┘
(compare_with_legacy=False: pool metrics (Spark) ─> upsert pool_daily_metrics)
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of pipelines.

from kfp import dsl

from components.evaluate_metrics_parity import evaluate_metrics_parity
from components.run_context import make_run_context
from components.run_legacy_metrics import run_legacy_metrics
from components.run_spark_job import run_spark_job_local
from components.upsert_staging import upsert_staging
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

PIPELINE_NAME = "defi-pool-metrics"
METRICS_TABLE = "pool_daily_metrics"
LEGACY_SHADOW_TABLE = "pool_daily_metrics_legacy"


@dsl.pipeline(name=PIPELINE_NAME, description="Daily DeFi pool metrics computed by Spark and promoted by upsert.")
def pool_pipeline(
    database_url: str,
    password_secret: str = "env:DB_PASSWORD",
    start: str = "",
    end: str = "",
    compare_with_legacy: bool = True,
    parity_rel_tol: float = 1e-9,
) -> None:
    """Computes pool metrics for [start, end] (empty: all days) and promotes them.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        password_secret: Secret reference of the database password (``env:VAR`` or Secret Manager name).
        start: First day (ISO date), empty for the first day with data.
        end: Last day (ISO date, inclusive), empty for the last day with data.
        compare_with_legacy: Run the legacy pandas job and promote only when the Spark output matches it.
        parity_rel_tol: Relative tolerance of the parity gate.
    """
    context = make_run_context(pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER).set_display_name("run context")
    run_id = context.outputs["run_id"]
    staging_table = context.outputs["metrics_staging_table"]

    metrics = run_spark_job_local(
        job="pool_metrics",
        database_url=database_url,
        password_secret=password_secret,
        run_id=run_id,
        staging_table=staging_table,
        start=start,
        end=end,
    ).set_display_name("pool metrics (Spark)")
    metrics.set_caching_options(False)  # reads the database: a cached result would be stale

    def promote_metrics() -> dsl.PipelineTask:
        task = upsert_staging(
            database_url=database_url,
            password_secret=password_secret,
            staging_table=staging_table,
            target_table=METRICS_TABLE,
            update_columns=METRIC_COLUMNS,
            run_id=run_id,
        ).set_display_name("upsert pool_daily_metrics")
        task.set_caching_options(False)
        return task

    with dsl.If(compare_with_legacy == True, name="compare-with-legacy"):  # noqa: E712 - a KFP condition, not Python
        legacy = run_legacy_metrics(
            database_url=database_url,
            password_secret=password_secret,
            shadow_table=LEGACY_SHADOW_TABLE,
            start=start,
            end=end,
            run_id=run_id,
        ).set_display_name("pool metrics (legacy pandas)")
        legacy.set_caching_options(False)
        parity = evaluate_metrics_parity(
            database_url=database_url,
            password_secret=password_secret,
            spark_table=staging_table,
            legacy_table=LEGACY_SHADOW_TABLE,
            start=start,
            end=end,
            columns=METRIC_COLUMNS,
            rel_tol=parity_rel_tol,
            fail_on_mismatch=True,
        ).set_display_name("parity gate: Spark vs legacy")
        parity.after(metrics, legacy)
        parity.set_caching_options(False)
        promote_metrics().after(parity)
    with dsl.Else(name="without-legacy"):
        # No pipeline-level OneOf output of the two promotions: kfp.local cannot resolve it (kfp 2.17).
        promote_metrics().after(metrics)
