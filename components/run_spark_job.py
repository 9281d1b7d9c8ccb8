"""Lightweight components that run the two Spark steps of the local pipeline as a Dataproc batch would: the
Vertex target's batch request (entry file, python files, jars, properties), read from the rehearsal's staged
copy of GCS, with the same args, through ``spark-submit`` in a Python shaped like the Dataproc runtime
(:mod:`rehearsal.launcher`). Nothing of the project's own environment reaches the job."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def run_pool_metrics_local(
    batch: dict,
    database_url: str,
    run_id: str,
    staging_table: str,
    staging: dsl.Output[dsl.Dataset],
    start: str = "",
    end: str = "",
    now: str = "",
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Runs the ``pool_metrics`` Dataproc batch under the rehearsal and records the staging table it wrote.

    Args:
        batch: The Dataproc batch request without its args (``VertexTarget.batch_request`` of the job).
        database_url: Password-less ``postgresql://user@host:port/db``; a batch argument, as on Dataproc.
        run_id: The pipeline run.
        staging_table: The run's staging table the job writes.
        staging: Output; uri names the staging table, metadata is the job's run summary.
        start: First day (ISO date) or empty for all.
        end: Last day (ISO date, inclusive) or empty for all.
        now: The run's clock (ISO timestamp, the run context's): later observations are rejected; empty: the
            job's own clock.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    from rehearsal.launcher import submit
    from spark_src.common.launch import pool_metrics_args
    from spark_src.common.storage import code_version

    args = pool_metrics_args(
        run_id=run_id, staging_table=staging_table, start=start, end=end, now=now, database_url=database_url,
        password_secret=password_secret, code_version=code_version(),
    )  # fmt: skip
    summary = submit({**batch, "args": args})
    staging.uri = summary["table_uri"]
    staging.metadata.update(summary)


@dsl.component(base_image=component_base_image())
def run_forecast_local(
    batch: dict,
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
    """Runs the ``forecast`` Dataproc batch (SynapseML LightGBM) under the rehearsal.

    Args:
        batch: The Dataproc batch request without its args (``VertexTarget.batch_request`` of the job).
        database_url: Password-less ``postgresql://user@host:port/db``; a batch argument, as on Dataproc.
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

    from rehearsal.launcher import submit
    from spark_src.common.launch import forecast_args
    from spark_src.common.storage import code_version

    args = forecast_args(
        run_id=run_id, staging_table=staging_table, backtest_table=backtest_table,
        quarantine_table=quarantine_table, model_dir=model_dir, as_of=as_of, holdout_as_of=holdout_as_of,
        train_days=train_days, database_url=database_url, password_secret=password_secret,
        code_version=code_version(),
    )  # fmt: skip
    summary = submit({**batch, "args": args})
    forecasts.uri = summary["table_uri"]
    forecasts.metadata.update(summary)
    model.uri = summary["model_dir"]
    card = json.loads(Path(summary["model_card"]).read_text())
    model.metadata.update({k: v for k, v in card.items() if k != "features"} | {"features": len(card["features"])})
