"""The command line of each spark_src job as a Dataproc batch receives it (the batch's ``args``).

One builder per job, used by both launchers: the Vertex target passes pipeline channels (Dataproc gets them
as batch args), the local rehearsal passes the values (spark-submit gets the same list). Pure Python: the
pipeline and the components import it without pyspark.
"""

from __future__ import annotations

from typing import Any

JOBS = ("pool_metrics", "forecast", "smoke")


def pool_metrics_args(
    *, run_id, staging_table, start, end, now, database_url, password_secret, code_version
) -> list[Any]:  # fmt: skip
    """``spark_src.pool_metrics.main`` arguments (an empty start/end means "all days"; an empty now, the job's
    clock)."""
    return [
        "--run-id", run_id, "--staging-table", staging_table, "--start", start, "--end", end, "--now", now,
        "--database-url", database_url, "--password-secret", password_secret, "--code-version", code_version,
    ]  # fmt: skip


def forecast_args(
    *, run_id, staging_table, backtest_table, quarantine_table, model_dir, as_of, holdout_as_of, train_days,
    database_url, password_secret, code_version,
) -> list[Any]:  # fmt: skip
    """``spark_src.forecast.main`` arguments (an empty holdout_as_of means "no backtest"); with the naive forecasts
    the forecast gate compares the model with."""
    return [
        "--run-id", run_id, "--staging-table", staging_table, "--backtest-table", backtest_table,
        "--quarantine-table", quarantine_table, "--with-naive", "--model-dir", model_dir, "--as-of", as_of,
        "--holdout-as-of", holdout_as_of, "--train-days", train_days,
        "--database-url", database_url, "--password-secret", password_secret, "--code-version", code_version,
    ]  # fmt: skip


def smoke_args(*, database_url, password_secret, code_version) -> list[Any]:
    """``spark_src.smoke.main`` arguments."""
    return ["--database-url", database_url, "--password-secret", password_secret, "--code-version", code_version]
