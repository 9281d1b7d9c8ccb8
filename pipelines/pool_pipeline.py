"""The pool pipeline: daily metrics (Spark, gated by parity with legacy) then next-day forecasts (SynapseML).

    run context ─┬─> pool metrics (Spark) ───────────┬─> parity gate ─> upsert pool_daily_metrics ─┐
                 └─> legacy metrics (pandas, shadow) ─┘                                            │
    ┌──────────────────────────────────────────────────────────────────────────────────────────────┘
    └─> forecast dates ─┬─> forecast (Spark, SynapseML) ─> upsert forecasts ─> upsert history ─┬─> evaluation
                        └─> legacy forecast (pandas, holdout dates) ─────────────────────────────┘

``compare_with_legacy=False`` makes the legacy metrics and the parity gate no-ops (the promotion runs
regardless): a flag rather than dsl.If, since KFP forbids a task after a conditional one.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of pipelines.

from kfp import dsl

from components.evaluate_forecasts import evaluate_forecasts
from components.evaluate_metrics_parity import evaluate_metrics_parity
from components.resolve_forecast_dates import resolve_forecast_dates
from components.run_context import make_run_context
from components.run_legacy_forecast import run_legacy_forecast
from components.run_legacy_metrics import run_legacy_metrics
from components.run_spark_job import run_forecast_local, run_pool_metrics_local
from components.upsert_staging import upsert_staging
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

PIPELINE_NAME = "defi-pool-metrics"
METRICS_TABLE = "pool_daily_metrics"
LEGACY_SHADOW_TABLE = "pool_daily_metrics_legacy"
FORECAST_HISTORY_TABLE = "pool_forecast_history"
FORECAST_COLUMNS = ["forecasted_apy", "forecasted_tvl"]


def _reads_database(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    # Every step reads or writes the database: a cached result would be stale.
    task.set_caching_options(False)
    return task.set_display_name(name)


@dsl.pipeline(name=PIPELINE_NAME, description="Daily DeFi pool metrics and next-day APY/TVL forecasts.")
def pool_pipeline(
    database_url: str,
    password_secret: str = "env:DB_PASSWORD",
    start: str = "",
    end: str = "",
    compare_with_legacy: bool = True,
    parity_rel_tol: float = 1e-9,
    as_of: str = "",
    train_days: int = 60,
    holdout_days: int = 3,
    legacy_n_trials: int = 20,
    forecast_gate_enabled: bool = True,
    forecast_gate_tolerance: float = 0.05,
    model_root: str = "",
) -> None:
    """Computes pool metrics for [start, end], promotes them, then forecasts the next day and evaluates.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        password_secret: Secret reference of the database password (``env:VAR`` or Secret Manager name).
        start: First day (ISO date), empty for the first day with data.
        end: Last day (ISO date, inclusive), empty for the last day with data.
        compare_with_legacy: Run the legacy pandas metrics job and promote only when the Spark output matches.
        parity_rel_tol: Relative tolerance of the parity gate.
        as_of: Forecast from this day (ISO date); empty for the latest day with actuals.
        train_days: Training window of the forecasters, in days.
        holdout_days: Backtest as-of dates before as_of on which Spark, legacy and naive forecasts are scored.
        legacy_n_trials: Optuna trials of the legacy forecaster.
        forecast_gate_enabled: Fail the run when the Spark model's APY MAE is worse than legacy's by more than
            ``forecast_gate_tolerance`` (relative).
        forecast_gate_tolerance: Allowed relative excess of the Spark APY MAE over the legacy one.
        model_root: Where model directories go (``gs://…`` on Vertex); empty for ``.local/models``.
    """
    context = make_run_context(pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, model_root=model_root)
    context.set_display_name("run context")
    run_id = context.outputs["run_id"]
    db = {"database_url": database_url, "password_secret": password_secret}

    # --- daily metrics -----------------------------------------------------------------------------------
    metrics = _reads_database(
        run_pool_metrics_local(
            **db, run_id=run_id, staging_table=context.outputs["metrics_staging_table"], start=start, end=end
        ),
        "pool metrics (Spark)",
    )
    legacy_metrics = _reads_database(
        run_legacy_metrics(
            **db,
            shadow_table=LEGACY_SHADOW_TABLE,
            start=start,
            end=end,
            run_id=run_id,
            enabled=compare_with_legacy,
        ),
        "pool metrics (legacy pandas)",
    )
    parity = _reads_database(
        evaluate_metrics_parity(
            **db,
            spark_table=context.outputs["metrics_staging_table"],
            legacy_table=LEGACY_SHADOW_TABLE,
            start=start,
            end=end,
            columns=METRIC_COLUMNS,
            rel_tol=parity_rel_tol,
            fail_on_mismatch=True,
            enabled=compare_with_legacy,
        ),
        "parity gate: Spark vs legacy",
    ).after(metrics, legacy_metrics)
    promote_metrics = _reads_database(
        upsert_staging(
            **db,
            staging_table=context.outputs["metrics_staging_table"],
            target_table=METRICS_TABLE,
            update_columns=METRIC_COLUMNS,
            run_id=run_id,
        ),
        "upsert pool_daily_metrics",
    ).after(parity)

    # --- next-day forecasts --------------------------------------------------------------------------------
    dates = _reads_database(
        resolve_forecast_dates(**db, as_of=as_of, holdout_days=holdout_days), "forecast dates"
    ).after(promote_metrics)
    forecast = _reads_database(
        run_forecast_local(
            **db,
            run_id=run_id,
            staging_table=context.outputs["forecast_staging_table"],
            backtest_table=context.outputs["backtest_staging_table"],
            model_dir=context.outputs["model_dir"],
            as_of=dates.outputs["as_of"],
            holdout_as_of=dates.outputs["holdout_as_of"],
            train_days=train_days,
        ),
        "forecast (Spark, SynapseML LightGBM)",
    )
    legacy_forecast = _reads_database(
        run_legacy_forecast(
            **db,
            run_id=run_id,
            holdout_as_of=dates.outputs["holdout_as_of"],
            history_table=FORECAST_HISTORY_TABLE,
            train_days=train_days,
            n_trials=legacy_n_trials,
        ),
        "legacy forecast (holdout dates)",
    )
    promote_forecasts = _reads_database(
        upsert_staging(
            **db,
            staging_table=context.outputs["forecast_staging_table"],
            target_table=METRICS_TABLE,
            update_columns=FORECAST_COLUMNS,
            run_id=run_id,
            drop_staging=False,  # the history upsert reads it next
        ),
        "upsert forecasts into pool_daily_metrics",
    ).after(forecast)
    forecast_history = _reads_database(
        upsert_staging(
            **db,
            staging_table=context.outputs["forecast_staging_table"],
            target_table=FORECAST_HISTORY_TABLE,
            key_columns=["pool_id", "forecast_date", "model", "run_id"],
            update_columns=["as_of", *FORECAST_COLUMNS],
            run_id=run_id,
        ),
        "upsert forecasts into history",
    ).after(promote_forecasts)
    backtest_history = _reads_database(
        upsert_staging(
            **db,
            staging_table=context.outputs["backtest_staging_table"],
            target_table=FORECAST_HISTORY_TABLE,
            key_columns=["pool_id", "forecast_date", "model", "run_id"],
            update_columns=["as_of", *FORECAST_COLUMNS],
            run_id=run_id,
        ),
        "upsert backtests into history",
    ).after(forecast)
    _reads_database(
        evaluate_forecasts(
            **db,
            run_id=run_id,
            holdout_as_of=dates.outputs["holdout_as_of"],
            history_table=FORECAST_HISTORY_TABLE,
            gate_enabled=forecast_gate_enabled,
            gate_tolerance=forecast_gate_tolerance,
        ),
        "forecast evaluation: Spark vs legacy vs naive",
    ).after(backtest_history, legacy_forecast, forecast_history)
