"""The pool pipeline: daily metrics (Spark, gated by parity with legacy) then next-day forecasts (SynapseML).

    run context ─> start run ─> run range ─┬─> pool metrics (Spark) ──────────┬─> parity gate ─> upsert metrics ─┐
                                           └─> legacy metrics (pandas, shadow) ┘                                   │
    ┌──────────────────────────────────────────────────────────────────────────────────────────────────────────────┘
    └─> forecast dates ─┬─> forecast (Spark, SynapseML; staged: model + naive, backtests, quarantine) ─┐
                        └─> legacy forecast (pandas, holdout dates; staged) ─────────────────────────┴─> evaluation
        (chooses the Spark model or naive) ─> promote forecasts (pool_daily_metrics, history, quarantine) ─┐
                                           └> log to experiment ───────────────────────────────────────────┴> finish run
    + lineage: a Dataset per source, staging and target table, a Model for the forecast model.

Start run registers the run (``pipeline_runs``) and cleans up what abandoned runs left (their ``stg_*_<run_id>``
tables, unpromoted forecast history rows, model directories); finish run, after everything else, drops this
run's remaining tables (its legacy shadow) and marks it succeeded. The run context fixes one clock (``now``) for
the run range and both metrics jobs.

The run range fixes the days the metrics steps compute: incremental by default (from the last promoted day
minus ``late_days`` to the latest day with data), a backfill or a full recompute only on request (``mode``).
One DAG, two targets (``pipelines.targets``): the Spark steps are lightweight components running local Spark
(kfp.local) or Dataproc Serverless batches (Vertex AI). ``compare_with_legacy=False`` turns the legacy metrics
and the parity gate into no-ops (a flag rather than dsl.If: KFP forbids a task after a conditional one).
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of pipelines.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kfp import dsl

from components.evaluate_forecasts import evaluate_forecasts
from components.evaluate_metrics_parity import evaluate_metrics_parity
from components.log_experiment import log_run_to_experiment
from components.promote_forecasts import promote_forecasts
from components.record_lineage import record_model, record_table
from components.resolve_forecast_dates import resolve_forecast_dates
from components.resolve_run_range import resolve_run_range
from components.run_context import make_run_context
from components.run_legacy_forecast import run_legacy_forecast
from components.run_legacy_metrics import run_legacy_metrics
from components.run_registry import finish_run, start_run
from components.upsert_staging import upsert_staging
from database.run_registry import DEFAULT_STALE_AFTER_MINUTES
from pipelines.targets import LocalTarget, SparkStep, VertexTarget
from spark_src.common.columns import METRIC_COLUMNS as _METRIC_COLUMNS

METRIC_COLUMNS = list(_METRIC_COLUMNS)

PIPELINE_NAME = "defi-pool-metrics"
METRICS_TABLE = "pool_daily_metrics"
FORECAST_HISTORY_TABLE = "pool_forecast_history"
QUARANTINE_TABLE = "pool_observation_quarantine"
SOURCE_TABLES = {  # table -> its time column for the lineage date range
    "raw_defillama_pool_history": "timestamp",
    "raw_coinmarketcap_ohlcv": "data_timestamp",
    "gas_fees_daily": "date",
    "pools": "",
}


def _db_step(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    # Every step reads or writes the database: a cached result would be stale.
    task.set_caching_options(False)
    return task.set_display_name(name)


@dataclass(frozen=True)
class BusinessSteps:
    """The tasks of the business steps that lineage records describe (or must run before)."""

    metrics: SparkStep
    promote_metrics: dsl.PipelineTask
    forecast: SparkStep
    legacy_forecast: dsl.PipelineTask
    evaluation: dsl.PipelineTask
    promote_forecasts: dsl.PipelineTask


def record_lineage(
    db: dict, run_id, context: dsl.PipelineTask, steps: BusinessSteps, retry: Callable[[dsl.PipelineTask], Any]
) -> list[dsl.PipelineTask]:
    """A Dataset per source, staging and target table, a Model for the forecast model, each wired to the step
    it describes.

    A record of a table a later step drops or changes must run before that step, so this also orders business
    steps after lineage records: sources before the metrics job, staging tables before the upserts that drop
    them, ``pool_daily_metrics`` as the metrics left it before the forecasts are upserted into it.

    Returns:
        The last records (of the targets after the forecast promotion): the run's last step comes after them.
    """

    def table(name, role: str, label: str, **kwargs) -> dsl.PipelineTask:
        task = _db_step(record_table(**db, table=name, role=role, run_id=run_id, **kwargs), f"lineage: {label}")
        retry(task)  # a record only reads
        return task

    sources = {name: table(name, "source", name, time_column=column) for name, column in SOURCE_TABLES.items()}
    steps.metrics.task.after(*sources.values())

    metrics_staging = table(
        context.outputs["metrics_staging_table"],
        "staging",
        "metrics staging",
        upstream=sources["raw_defillama_pool_history"].outputs["dataset"],
        batch_resources=steps.metrics.batch_resources,
    ).after(steps.metrics.task)
    steps.promote_metrics.after(metrics_staging)

    metrics_target = table(
        METRICS_TABLE, "target", f"{METRICS_TABLE} (metrics)", upstream=metrics_staging.outputs["dataset"]
    ).after(steps.promote_metrics)
    steps.promote_forecasts.after(metrics_target)

    model = record_model(
        model_dir=context.outputs["model_dir"],
        run_id=run_id,
        training_data=metrics_target.outputs["dataset"],
        batch_resources=steps.forecast.batch_resources,
    )
    model.set_display_name("lineage: forecast model").set_caching_options(False).after(steps.forecast.task)

    forecast_staging = [
        table(
            context.outputs[output],
            "staging",
            f"{label} staging",
            upstream=metrics_target.outputs["dataset"],
            batch_resources=steps.forecast.batch_resources,
        ).after(steps.forecast.task)
        for output, label in (
            ("forecast_staging_table", "forecast"),
            ("backtest_staging_table", "backtest"),
            ("quarantine_staging_table", "quarantine"),
        )
    ]
    legacy_staging = table(
        context.outputs["legacy_backtest_staging_table"],
        "staging",
        "legacy backtest staging",
        upstream=metrics_target.outputs["dataset"],
        time_column="forecast_date",  # the legacy forecaster's table has no date column
    ).after(steps.legacy_forecast)
    steps.promote_forecasts.after(*forecast_staging, legacy_staging)

    return [
        table(
            name, "target", f"{name} (forecasts)", upstream=metrics_target.outputs["dataset"], time_column=column
        ).after(model, steps.promote_forecasts)
        for name, column in (
            (METRICS_TABLE, "date"),
            (FORECAST_HISTORY_TABLE, "forecast_date"),
            (QUARANTINE_TABLE, "date"),
        )
    ]


def build_pipeline(target: LocalTarget | VertexTarget):
    """The pipeline function for ``target`` (compile it, or call it under kfp.local)."""
    defaults = target.defaults()
    database_url_default = target.settings.cloud_sql_url if isinstance(target, VertexTarget) else ""

    @dsl.pipeline(
        name=PIPELINE_NAME if target.name == "local" else f"{PIPELINE_NAME}-{target.name}",
        description="Daily DeFi pool metrics (Spark, gated by parity with legacy) and next-day APY/TVL forecasts.",
    )
    def pool_pipeline(
        database_url: str = database_url_default,
        password_secret: str = defaults["password_secret"],
        mode: str = "incremental",
        start: str = "",
        end: str = "",
        late_days: int = 2,
        compare_with_legacy: bool = True,
        parity_rel_tol: float = 1e-9,
        as_of: str = "",
        train_days: int = 60,
        holdout_days: int = 3,
        legacy_n_trials: int = 20,
        forecast_gate_enabled: bool = True,
        forecast_gate_tolerance: float = 0.05,
        model_root: str = defaults["model_root"],
        stale_after_minutes: int = DEFAULT_STALE_AFTER_MINUTES,
        experiment: str = "",
        project: str = defaults["project"],
        location: str = defaults["location"],
    ) -> None:
        """Computes pool metrics for the run's days, promotes them, then forecasts the next day and evaluates.

        Args:
            database_url: Password-less ``postgresql://user@host:port/db``.
            password_secret: Secret reference of the database password (``env:VAR`` or Secret Manager name).
            mode: ``incremental`` (the default, what the schedule runs): from the last promoted day minus
                ``late_days`` to the latest day with data; ``range``: a backfill of [start, end]; ``full``: every
                day with data.
            start: First day of a backfill (ISO date, ``mode=range``), empty for the first day with data.
            end: Last day of a backfill (ISO date, inclusive, ``mode=range``), empty for the latest day with data.
            late_days: Days before the last promoted day an incremental run recomputes, for observations that
                arrive late or are corrected upstream.
            compare_with_legacy: Run the legacy pandas metrics job; promote only when the Spark output matches.
            parity_rel_tol: Relative tolerance of the parity gate.
            as_of: Forecast from this day (ISO date); empty for the latest day with actuals.
            train_days: Training window of the forecasters, in days.
            holdout_days: Backtest as-of dates before as_of on which Spark, legacy and naive are scored.
            legacy_n_trials: Optuna trials of the legacy forecaster.
            forecast_gate_enabled: Promote the Spark model's forecasts only when its holdout APY MAE is at most
                naive's and at most legacy's x (1 + ``forecast_gate_tolerance``), else promote naive persistence
                (``model = naive``); False: promote Spark's without comparing.
            forecast_gate_tolerance: Allowed relative excess of the Spark APY MAE over the legacy one.
            model_root: Where model directories go (``gs://…`` on Vertex); empty for ``.local/models``.
            stale_after_minutes: A run unfinished after this many minutes (default 360) is abandoned: this run's
                first step removes its staging and shadow tables, forecast history rows and model directory.
                It must exceed the longest healthy run.
            experiment: Vertex AI Experiment to log the run to (scheduled runs); empty: none.
            project: GCP project of the experiment.
            location: Region of the experiment.
        """
        db = {"database_url": database_url, "password_secret": password_secret}
        context = make_run_context(pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, model_root=model_root)
        # Never cached: a cached context would hand a rerun the same run id, staging tables and batch ids.
        context.set_display_name("run context").set_caching_options(False)
        run_id = context.outputs["run_id"]
        metrics_staging = context.outputs["metrics_staging_table"]
        forecast_staging = context.outputs["forecast_staging_table"]
        backtest_staging = context.outputs["backtest_staging_table"]
        legacy_staging = context.outputs["legacy_backtest_staging_table"]
        quarantine_staging = context.outputs["quarantine_staging_table"]
        legacy_shadow = context.outputs["legacy_shadow_table"]
        now = context.outputs["now"]  # one clock: the run range, both metrics jobs and the forecast dates
        started = _db_step(
            start_run(
                **db, run_id=run_id, model_dir=context.outputs["model_dir"], stale_after_minutes=stale_after_minutes
            ),
            "start run: register, clean up abandoned runs",
        )
        target.retry(started)  # registering and cleaning up are idempotent

        # --- the run's days: the Spark job, the legacy shadow and the parity gate cover the same ------------
        run_range = _db_step(
            resolve_run_range(**db, mode=mode, start=start, end=end, late_days=late_days, now=now), "run range"
        ).after(started)
        days = {"start": run_range.outputs["start"], "end": run_range.outputs["end"], "now": now}

        # --- daily metrics -------------------------------------------------------------------------------
        metrics = target.pool_metrics(
            **db,
            run_id=run_id,
            staging_table=metrics_staging,
            **days,
            batch_id=context.outputs["metrics_batch_id"],
        )
        _db_step(metrics.task, "pool metrics (Spark)")
        legacy_metrics = _db_step(
            run_legacy_metrics(
                **db,
                shadow_table=legacy_shadow,
                **days,
                run_id=run_id,
                enabled=compare_with_legacy,
            ),
            "pool metrics (legacy pandas)",
        )
        parity = _db_step(
            evaluate_metrics_parity(
                **db,
                spark_table=metrics_staging,
                legacy_table=legacy_shadow,
                start=days["start"],
                end=days["end"],
                columns=METRIC_COLUMNS,
                rel_tol=parity_rel_tol,
                fail_on_mismatch=True,
                enabled=compare_with_legacy,
            ),
            "parity gate: Spark vs legacy",
        ).after(metrics.task, legacy_metrics)
        promote_metrics = _db_step(
            upsert_staging(
                **db,
                staging_table=metrics_staging,
                target_table=METRICS_TABLE,
                update_columns=METRIC_COLUMNS,
                run_id=run_id,
            ),
            "upsert pool_daily_metrics",
        ).after(parity)
        target.retry(promote_metrics)  # one transaction: all or nothing

        # --- next-day forecasts --------------------------------------------------------------------------
        dates = _db_step(
            resolve_forecast_dates(**db, as_of=as_of, holdout_days=holdout_days, now=now),
            "forecast dates",
        ).after(promote_metrics)
        target.retry(dates)  # reads only
        forecast = target.forecast(
            **db,
            run_id=run_id,
            staging_table=forecast_staging,
            backtest_table=backtest_staging,
            quarantine_table=quarantine_staging,
            model_dir=context.outputs["model_dir"],
            as_of=dates.outputs["as_of"],
            holdout_as_of=dates.outputs["holdout_as_of"],
            train_days=train_days,
            batch_id=context.outputs["forecast_batch_id"],
        )
        _db_step(forecast.task, "forecast (Spark, SynapseML LightGBM)")
        legacy_forecast = _db_step(
            run_legacy_forecast(
                **db,
                run_id=run_id,
                holdout_as_of=dates.outputs["holdout_as_of"],
                staging_table=legacy_staging,
                train_days=train_days,
                n_trials=legacy_n_trials,
            ),
            "legacy forecast (holdout dates)",
        )
        evaluation = _db_step(
            evaluate_forecasts(
                **db,
                run_id=run_id,
                holdout_as_of=dates.outputs["holdout_as_of"],
                forecast_table=backtest_staging,
                legacy_table=legacy_staging,
                quarantine_table=quarantine_staging,
                gate_enabled=forecast_gate_enabled,
                gate_tolerance=forecast_gate_tolerance,
            ),
            "forecast gate: Spark vs legacy vs naive",
        ).after(forecast.task, legacy_forecast)
        promotion = _db_step(
            promote_forecasts(
                **db,
                run_id=run_id,
                model=evaluation.outputs["promoted_model"],
                forecast_table=forecast_staging,
                backtest_tables=[backtest_staging, legacy_staging],
                quarantine_table=quarantine_staging,
            ),
            "promote forecasts",
        )
        target.retry(promotion)  # one transaction: all or nothing
        logged = log_run_to_experiment(
            experiment=experiment,
            project=project,
            location=location,
            run_id=run_id,
            params={
                "mode": run_range.outputs["mode"],
                "start": run_range.outputs["start"],
                "end": run_range.outputs["end"],
                "as_of": dates.outputs["as_of"],
                "train_days": train_days,
                "holdout_days": holdout_days,
                "compare_with_legacy": compare_with_legacy,
            },
            parity=parity.outputs["parity"],
            forecast=evaluation.outputs["forecast_metrics"],
        )
        logged.set_display_name("log to experiment").set_caching_options(False)

        # --- lineage (orders itself before the steps that drop or change what it describes) ---------------
        last_records = record_lineage(
            db,
            run_id,
            context,
            BusinessSteps(
                metrics=metrics,
                promote_metrics=promote_metrics,
                forecast=forecast,
                legacy_forecast=legacy_forecast,
                evaluation=evaluation,
                promote_forecasts=promotion,
            ),
            retry=target.retry,
        )

        # --- last: the run's remaining tables dropped, the run marked succeeded -----------------------------
        finished = _db_step(finish_run(**db, run_id=run_id), "finish run: drop its shadow table, mark it succeeded")
        target.retry(finished.after(logged, *last_records))  # idempotent

    return pool_pipeline


pool_pipeline = build_pipeline(LocalTarget())
