"""Backtest of the next-day forecasters on holdout as-of dates: the Spark model, the legacy model and a naive
persistence forecast, scored with MAE, RMSE and WAPE on the same rows, reported as metrics and an HTML page,
optionally gating the run on the Spark model not being worse than the legacy one.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def evaluate_forecasts(
    database_url: str,
    run_id: str,
    holdout_as_of: str,
    forecast_metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.HTML],
    password_secret: str = "env:DB_PASSWORD",
    spark_model: str = "spark_lgbm_stacked",
    legacy_model: str = "legacy_rf_lgbm",
    history_table: str = "pool_forecast_history",
    metrics_table: str = "pool_daily_metrics",
    gate_enabled: bool = False,
    gate_tolerance: float = 0.05,
    sample_pools: int = 4,
) -> NamedTuple("EvalSummary", spark_apy_mae=float, legacy_apy_mae=float, naive_apy_mae=float):
    """Scores the run's Spark and legacy next-day forecasts, and a naive one, against the actuals.

    For each holdout as-of date ``d`` the forecasts of day ``d + 1`` made as of ``d`` are compared with the
    actual of ``d + 1``. The naive forecast is persistence: the pool's actual of ``d``. A (pool, forecast date)
    is scored for a target (APY or TVL) only when its actual and all three forecasts of that target exist
    (NULL, NaN and +-Infinity count as missing), so every model is scored on the same rows; the others are
    counted as dropped. Metrics per model and target: MAE, RMSE and WAPE (sum of absolute errors over the sum of
    absolute actuals).

    The gate passes when the Spark APY MAE is at most the legacy APY MAE times ``1 + gate_tolerance``. The
    scoring and the report live in ``evaluation.forecasts`` and ``evaluation.forecast_report``. The outputs are
    written before any failure is raised: the HTML report lands in the pipeline root even when the
    task fails (Vertex AI records the metrics' values only for a task that succeeds; the report repeats them).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run whose forecasts (``run_id`` of the history table) are evaluated.
        holdout_as_of: Comma-separated ISO as-of dates, e.g. ``2026-08-25,2026-08-26``; the forecast dates are
            the days after.
        forecast_metrics: Output; ``forecast_<model>_<target>_<mae|rmse|wape>`` for model spark, legacy and
            naive and target apy and tvl (a WAPE is left out when the actuals sum to 0), and
            ``forecast_rows_evaluated_<target>``, ``forecast_rows_dropped_<target>``, ``forecast_holdout_dates``
            and ``forecast_gate_pass`` (1.0 or 0.0, computed whether or not the gate is enabled). All names start
            with ``forecast_``: Vertex AI Experiments merges the metrics of all the run's components into one
            namespace, where a later key overwrites an earlier one.
        report: Output; self-contained HTML page: metrics, coverage per date, a bar chart by model and actual
            against forecasts for a few pools.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        spark_model: The ``model`` of the Spark forecaster's rows in the history table.
        legacy_model: The ``model`` of the legacy forecaster's rows in the history table.
        history_table: The forecast history (pool_id, forecast_date, model, run_id, as_of, forecasted_apy,
            forecasted_tvl).
        metrics_table: The actuals (pool_id, date, actual_apy, actual_tvl).
        gate_enabled: Raise after writing the outputs when the gate fails (fails the pipeline).
        gate_tolerance: How much worse than the legacy APY MAE the Spark one may be, as a fraction.
        sample_pools: How many pools the report plots: those with the most scored APY rows, ties by pool_id.

    Returns:
        spark_apy_mae: The Spark model's APY MAE.
        legacy_apy_mae: The legacy model's APY MAE.
        naive_apy_mae: The persistence forecast's APY MAE.
    """
    import logging
    from collections import namedtuple
    from pathlib import Path

    from evaluation import forecasts
    from evaluation.forecast_report import render_html
    from spark_src.common.config import DbConfig

    request = forecasts.Request(
        run_id=run_id,
        as_of_dates=forecasts.parse_holdout_dates(holdout_as_of),
        spark_model=spark_model,
        legacy_model=legacy_model,
        history_table=history_table,
        metrics_table=metrics_table,
        gate_tolerance=gate_tolerance,
        sample_pools=sample_pools,
    )
    evaluation = forecasts.score(
        forecasts.read_panel(DbConfig.from_url(database_url, password_secret), request), request
    )
    for name, value in evaluation.metrics().items():
        forecast_metrics.log_metric(name, value)
    Path(report.path).write_text(render_html(evaluation, gate_enabled), encoding="utf-8")
    logging.getLogger("evaluate_forecasts").info("%s", evaluation.message())
    evaluation.check(gate_enabled)  # after the outputs are written
    maes = evaluation.apy_maes()
    summary = namedtuple("EvalSummary", ["spark_apy_mae", "legacy_apy_mae", "naive_apy_mae"])
    return summary(maes["spark"], maes["legacy"], maes["naive"])
