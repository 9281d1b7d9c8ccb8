"""Runs the legacy pandas forecaster on the holdout as-of dates: the reference of the forecast evaluation."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def run_legacy_forecast(
    database_url: str,
    run_id: str,
    holdout_as_of: str,
    staging_table: str,
    backtests: dsl.Output[dsl.Dataset],
    train_days: int = 60,
    n_trials: int = 20,
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Forecasts as_of + 1 from each holdout as-of date with the legacy model into the run's staging table.

    The forecasts reach ``pool_forecast_history`` only through the forecast promotion, after the evaluation.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run; the forecasts are stored under it (model ``legacy_rf_lgbm``).
        holdout_as_of: Comma-separated as-of dates (empty: nothing to do).
        staging_table: The run's legacy backtest staging table (created, even without a date).
        backtests: Output; uri names the staging table, metadata the per-date summaries.
        train_days: Training window in days.
        n_trials: Optuna trials of the random forest's search.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    import datetime as dt

    from legacy.forecast_pools import create_forecast_table, run
    from spark_src.common.config import DbConfig

    db = DbConfig.from_url(database_url, password_secret).named("run_legacy_forecast", run_id)
    create_forecast_table(db, staging_table)
    summaries = []
    for day in [d for d in holdout_as_of.split(",") if d]:
        summary = run(
            db,
            as_of=dt.date.fromisoformat(day),
            train_days=train_days,
            n_trials=n_trials,
            target_table=staging_table,
            run_id=run_id,
        )
        keys = ("as_of", "forecast_date", "pools_forecast", "validation_mae", "values_read_as_missing")
        summaries.append({k: summary[k] for k in keys})
    backtests.uri = db.table_uri(staging_table)
    backtests.metadata.update({"run_id": run_id, "model": "legacy_rf_lgbm", "backtests": summaries})
