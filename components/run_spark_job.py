"""Runs a spark_src job in local Spark inside a lightweight component: the local pipeline's stand-in for the
Dataproc Serverless batch, running the very code Dataproc runs (same module, same ``main(argv)``)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from pipelines.settings import COMPONENT_BASE_IMAGE


@dsl.component(base_image=COMPONENT_BASE_IMAGE)
def run_spark_job_local(
    job: str,
    database_url: str,
    run_id: str,
    staging_table: str,
    staging: dsl.Output[dsl.Dataset],
    start: str = "",
    end: str = "",
    password_secret: str = "env:DB_PASSWORD",
    extra_args: list = [],  # KFP compiles the default; it is not a shared mutable
) -> None:
    """Runs ``spark_src.<job>.main.main(argv)`` in local mode and records the staging table it wrote.

    Args:
        job: The spark_src job package, e.g. ``pool_metrics``.
        database_url: Password-less ``postgresql://user@host:port/db``; handed to the job as DB_* variables.
        run_id: The pipeline run.
        staging_table: The run's staging table the job writes.
        staging: Output; uri names the staging table, metadata is the job's run summary.
        start: First day (ISO date) or empty for all.
        end: Last day (ISO date, inclusive) or empty for all.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        extra_args: More command-line arguments for the job.
    """
    import importlib
    import os

    from spark_src.common.config import DbConfig

    allowed_jobs = {"pool_metrics"}
    if job not in allowed_jobs:
        raise ValueError(f"unknown spark_src job {job!r}; expected one of {sorted(allowed_jobs)}")
    os.environ.update(DbConfig.from_url(database_url, password_secret).env())
    argv = ["--run-id", run_id, "--staging-table", staging_table, *map(str, extra_args)]
    if start:
        argv += ["--start", start]
    if end:
        argv += ["--end", end]
    summary = importlib.import_module(f"spark_src.{job}.main").main(argv)
    staging.uri = summary["table_uri"]
    staging.metadata.update(summary)
