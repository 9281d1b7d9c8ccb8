"""Lightweight components that run the spark_src jobs in local Spark: the local pipeline's stand-ins for the
Dataproc Serverless batches, running the very code Dataproc runs (same module, same ``main(argv)``)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def run_pool_metrics_local(
    database_url: str,
    run_id: str,
    staging_table: str,
    staging: dsl.Output[dsl.Dataset],
    start: str = "",
    end: str = "",
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Runs ``spark_src.pool_metrics`` in local mode and records the staging table it wrote.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``; handed to the job as DB_* variables.
        run_id: The pipeline run.
        staging_table: The run's staging table the job writes.
        staging: Output; uri names the staging table, metadata is the job's run summary.
        start: First day (ISO date) or empty for all.
        end: Last day (ISO date, inclusive) or empty for all.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    from spark_src.common.config import DbConfig
    from spark_src.common.launch import run_job

    argv = ["--run-id", run_id, "--staging-table", staging_table]
    argv += ["--start", start] if start else []
    argv += ["--end", end] if end else []
    summary = run_job("pool_metrics", argv, DbConfig.from_url(database_url, password_secret))
    staging.uri = summary["table_uri"]
    staging.metadata.update(summary)


@dsl.component(base_image=component_base_image())
def run_forecast_local(
    database_url: str,
    run_id: str,
    staging_table: str,
    backtest_table: str,
    quarantine_table: str,
    model_dir: str,
    as_of: str,
    holdout_as_of: str,
    forecasts: dsl.Output[dsl.Dataset],
    model: dsl.Output[dsl.Model],
    train_days: int = 60,
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Runs ``spark_src.forecast`` (SynapseML LightGBM) in local mode.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``; handed to the job as DB_* variables.
        run_id: The pipeline run.
        staging_table: Staging table of the forecasts for as_of + 1.
        backtest_table: Staging table of the backtest forecasts on the holdout as-of dates.
        quarantine_table: Staging table of the observations the job quarantined.
        model_dir: Directory (local or gs://) for the fitted pipeline model and its model card.
        as_of: Last day of actuals to train on (ISO date).
        holdout_as_of: Comma-separated backtest as-of dates (may be empty).
        forecasts: Output; uri names the forecast staging table, metadata is the job's run summary.
        model: Output; uri is the model directory, metadata the model card.
        train_days: Training window in days.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    import json
    from pathlib import Path

    from spark_src.common.config import DbConfig
    from spark_src.common.launch import run_job

    argv = ["--run-id", run_id, "--staging-table", staging_table, "--model-dir", model_dir, "--with-naive"]
    argv += ["--as-of", as_of, "--train-days", str(train_days), "--quarantine-table", quarantine_table]
    if holdout_as_of:
        argv += ["--holdout-as-of", holdout_as_of, "--backtest-table", backtest_table]
    summary = run_job("forecast", argv, DbConfig.from_url(database_url, password_secret))
    forecasts.uri = summary["table_uri"]
    forecasts.metadata.update(summary)
    model.uri = summary["model_dir"]
    card = json.loads(Path(summary["model_card"]).read_text())
    model.metadata.update({k: v for k, v in card.items() if k != "features"} | {"features": len(card["features"])})
