"""The forecast gate: the run's staged backtests of the Spark model, the legacy model and naive persistence,
scored with MAE, RMSE and WAPE on the same rows, reported as metrics and an HTML page; chooses the model the run
promotes (the Spark model, or ``naive`` when the model loses).
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
    forecast_table: str = "pool_forecast_history",
    legacy_table: str = "pool_forecast_history",
    quarantine_table: str = "",
    metrics_table: str = "pool_daily_metrics",
    gate_enabled: bool = False,
    gate_tolerance: float = 0.05,
    sample_pools: int = 4,
) -> NamedTuple("EvalSummary", spark_apy_mae=float, legacy_apy_mae=float, naive_apy_mae=float, promoted_model=str):
    """Scores the run's staged Spark, legacy and naive next-day forecasts against the actuals; chooses the model.

    For each holdout as-of date ``d`` the forecasts of day ``d + 1`` made as of ``d`` are compared with the
    actual of ``d + 1``. The naive forecast is persistence: the pool's clean value of ``d``, as staged by the
    forecast job. A (pool, forecast date) is scored for a target (APY or TVL) only when its actual and all three
    forecasts of that target exist (NULL, NaN and +-Infinity count as missing) and the actual is not
    quarantined, so every model is scored on the same rows; the others are counted. Metrics per model and
    target: MAE, RMSE and WAPE (sum of absolute errors over the sum of absolute actuals).

    The Spark model is promoted when its APY MAE is at most naive's and at most legacy's times
    ``1 + gate_tolerance``; otherwise naive persistence is (``promoted_model`` = ``naive``). The gate fails,
    and nothing is promoted, only when nothing could be scored. The scoring and the report live in
    ``evaluation.forecasts`` and ``evaluation.forecast_report``. The outputs are written before any failure
    is raised: the HTML report lands in the pipeline root even when the task fails.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run whose forecasts (``run_id`` of the history table) are evaluated.
        holdout_as_of: Comma-separated ISO as-of dates, e.g. ``2026-08-25,2026-08-26``; the forecast dates are
            the days after.
        forecast_metrics: Output; ``forecast_<model>_<target>_<mae|rmse|wape>`` for model spark, legacy and
            naive and target apy and tvl (a WAPE is left out when the actuals sum to 0), and
            ``forecast_rows_evaluated_<target>``, ``forecast_rows_dropped_<target>``,
            ``forecast_rows_quarantined_<target>``, ``forecast_holdout_dates``, ``forecast_gate_pass`` (Spark
            within the legacy tolerance), ``forecast_beats_naive`` and ``forecast_promoted_naive``. All names start
            with ``forecast_``: Vertex AI Experiments merges the metrics of all the run's components into one
            namespace, where a later key overwrites an earlier one.
        report: Output; self-contained HTML page: metrics, coverage per date, a bar chart by model and actual
            against forecasts for a few pools.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        spark_model: The ``model`` of the Spark forecaster's rows.
        legacy_model: The ``model`` of the legacy forecaster's rows.
        forecast_table: The Spark job's backtests, model and naive rows (pool_id, forecast_date, model, run_id,
            as_of, forecasted_apy, forecasted_tvl): the run's staging table, or the history.
        legacy_table: The legacy forecaster's backtests (same columns).
        quarantine_table: The run's quarantined observations (pool_id, date, column_name); empty for none.
        metrics_table: The actuals (pool_id, date, actual_apy, actual_tvl).
        gate_enabled: Choose between the model and naive (True), or promote the model unjudged (False).
        gate_tolerance: How much worse than the legacy APY MAE the Spark one may be, as a fraction.
        sample_pools: How many pools the report plots: those with the most scored APY rows, ties by pool_id.

    Returns:
        spark_apy_mae: The Spark model's APY MAE (each MAE output is finite: an infinite one is 1.797e308).
        legacy_apy_mae: The legacy model's APY MAE.
        naive_apy_mae: The persistence forecast's APY MAE.
        promoted_model: The ``model`` the run promotes: ``spark_model`` or ``naive``.
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
        forecast_table=forecast_table,
        legacy_table=legacy_table,
        quarantine_table=quarantine_table,
        metrics_table=metrics_table,
        gate_tolerance=gate_tolerance,
        sample_pools=sample_pools,
    )
    evaluation = forecasts.score(
        forecasts.read_panel(
            DbConfig.from_url(database_url, password_secret).named("evaluate_forecasts", run_id), request
        ),
        request,
    )
    for name, value in evaluation.metrics(gate_enabled).items():
        forecast_metrics.log_metric(name, value)
    Path(report.path).write_text(render_html(evaluation, gate_enabled), encoding="utf-8")
    logging.getLogger("evaluate_forecasts").info("%s", evaluation.message(gate_enabled))
    evaluation.check()  # after the outputs are written
    maes = evaluation.output_apy_maes()
    summary = namedtuple("EvalSummary", ["spark_apy_mae", "legacy_apy_mae", "naive_apy_mae", "promoted_model"])
    return summary(maes["spark"], maes["legacy"], maes["naive"], evaluation.promoted_model(gate_enabled))
