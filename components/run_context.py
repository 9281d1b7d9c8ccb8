"""Names every per-run resource (staging and shadow tables, model directory) from the pipeline job id, so two
runs never share one, and fixes the run's clock. Every table is ``stg_*_<run_id>``: the cleanup of abandoned runs
finds them by that name."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def make_run_context(pipeline_job_id: str, model_root: str = "") -> NamedTuple(
    "RunContext",
    run_id=str,
    metrics_staging_table=str,
    forecast_staging_table=str,
    backtest_staging_table=str,
    legacy_backtest_staging_table=str,
    quarantine_staging_table=str,
    legacy_shadow_table=str,
    model_dir=str,
    metrics_batch_id=str,
    forecast_batch_id=str,
    now=str,
):
    """Derives the run id, the names of the run's staging tables and model directory, and the run's clock.

    Args:
        pipeline_job_id: The pipeline job's unique id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        model_root: Where models go (``gs://bucket/models`` on Vertex); empty: ``.local/models`` here.

    Returns:
        run_id: Lower-case alphanumerics of the job id (at most 40), usable in table names and batch ids.
        metrics_staging_table: Staging table of the pool-metrics job.
        forecast_staging_table: Staging table of the forecasts for as_of + 1.
        backtest_staging_table: Staging table of the Spark job's backtest forecasts (model and naive).
        legacy_backtest_staging_table: Staging table of the legacy forecaster's backtest forecasts.
        quarantine_staging_table: Staging table of the observations the forecast job quarantined.
        legacy_shadow_table: The legacy metrics job's shadow table of this run (never shared between runs).
        model_dir: The run's model directory under ``model_root``.
        metrics_batch_id: Dataproc batch id of the metrics job (unique per run: a fixed id clashes on rerun).
        forecast_batch_id: Dataproc batch id of the forecast job.
        now: The run's clock (UTC, ISO): the run range and both metrics jobs bound time by this one instant, so a
            run that crosses midnight does not let its steps disagree on "today".
    """
    import datetime as dt
    import re
    from collections import namedtuple
    from pathlib import Path

    run_id = re.sub(r"[^a-z0-9]", "", pipeline_job_id.lower())[-40:]
    if not run_id:
        raise ValueError(f"pipeline job id {pipeline_job_id!r} has no letters or digits to name a run with")
    root = model_root.rstrip("/") if model_root else str(Path(".local", "models").resolve())
    context = namedtuple(
        "RunContext",
        [
            "run_id",
            "metrics_staging_table",
            "forecast_staging_table",
            "backtest_staging_table",
            "legacy_backtest_staging_table",
            "quarantine_staging_table",
            "legacy_shadow_table",
            "model_dir",
            "metrics_batch_id",
            "forecast_batch_id",
            "now",
        ],
    )
    return context(
        run_id,
        f"stg_pool_metrics_{run_id}",
        f"stg_forecast_{run_id}",
        f"stg_backtest_{run_id}",
        f"stg_legacy_backtest_{run_id}",
        f"stg_quarantine_{run_id}",
        f"stg_legacy_metrics_{run_id}",
        f"{root}/{run_id}",
        f"pool-metrics-{run_id}",  # Dataproc: 4-63 characters of [a-z0-9-]
        f"forecast-{run_id}",
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
