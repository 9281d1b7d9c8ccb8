"""Promotes a run's forecasts after the evaluation chose the model: one transaction, then the staging is dropped."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def promote_forecasts(
    database_url: str,
    run_id: str,
    model: str,
    forecast_table: str,
    backtest_tables: list,
    quarantine_table: str,
    promoted: dsl.Output[dsl.Dataset],
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Writes ``model``'s forecasts of as_of + 1 into ``pool_daily_metrics`` and every staged row into the history.

    See ``database.promote_forecasts``: the chosen model's plausible forecasts go into ``forecasted_*`` (with
    ``forecast_model``), every staged forecast into ``pool_forecast_history``, the quarantined observations into
    ``pool_observation_quarantine``; all in one transaction, which also drops the staging tables.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run.
        model: The model the evaluation chose (``spark_lgbm_stacked`` or ``naive``).
        forecast_table: Staging table of the forecasts of as_of + 1.
        backtest_tables: Staging tables of the backtests (Spark job's, legacy's).
        quarantine_table: Staging table of the quarantined observations.
        promoted: Output; uri names ``pool_daily_metrics``, metadata the counts and the model.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    from database.promote_forecasts import METRICS_TABLE, promote_forecasts
    from spark_src.common.config import DbConfig

    db = DbConfig.from_url(database_url, password_secret)
    promotion = promote_forecasts(
        db,
        run_id=run_id,
        model=model,
        forecast_table=forecast_table,
        backtest_tables=list(backtest_tables),
        quarantine_table=quarantine_table,
    )
    promoted.uri = db.table_uri(METRICS_TABLE)
    promoted.metadata.update(
        {"table": METRICS_TABLE, "staging_table": forecast_table, "run_id": run_id, **promotion.as_dict()}
    )
