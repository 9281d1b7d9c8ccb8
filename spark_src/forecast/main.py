"""Forecast Spark job: next-day APY and TVL of every forecastable pool with SynapseML LightGBM.

    python -m spark_src.forecast.main --run-id r1 --staging-table stg_forecast_r1 --model-dir .local/models/r1 \
        [--as-of D] [--holdout-as-of D1,D2] [--backtest-table stg_backtest_r1] [--train-days 60]

Trains on the ``--train-days`` days of ``pool_daily_metrics`` ending at ``--as-of`` (default: the latest day
with actuals, never today's date) and writes forecasts for as_of + 1 to ``--staging-table``; saves the fitted
Spark pipeline and a model card under ``--model-dir`` (local path or gs://). For each ``--holdout-as-of`` date
it repeats the fit on the window ending that day and writes those forecasts (whose day has actuals) to
``--backtest-table`` for evaluation. Connection settings come from the environment, as for pool_metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_src.common import faults, jars, pg, time_bounds
from spark_src.common.caching import cached, released
from spark_src.common.config import DbConfig, optional_date
from spark_src.common.jdbc import read_query, write_table
from spark_src.common.session import build_session, release_unfinalized_executors, running_under_spark_submit
from spark_src.common.sql import check_identifier
from spark_src.common.storage import code_version, write_text
from spark_src.forecast import model as M
from spark_src.forecast import quarantine as Q
from spark_src.forecast import transforms as T
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

log = logging.getLogger("forecast")

FORECAST_COLUMNS = ["pool_id", "date", "forecast_date", "as_of", "model", "run_id", "forecasted_apy", "forecasted_tvl"]


def _dates(text: str) -> list[dt.date]:  # empty: none
    return [dt.date.fromisoformat(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="forecast", description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--staging-table", required=True, type=check_identifier, help="forecasts for as_of + 1")
    parser.add_argument("--model-dir", required=True, help="where the fitted pipeline and model card go")
    parser.add_argument("--as-of", type=optional_date, help="default: the latest day with actuals")
    # int(float(…)): Vertex stores integer parameters as numbers, and one placed in a batch's args may read "60.0".
    parser.add_argument("--train-days", type=lambda text: int(float(text)), default=60)
    parser.add_argument("--holdout-as-of", type=_dates, default=[], help="comma-separated backtest as-of dates")
    parser.add_argument("--backtest-table", type=check_identifier, help="backtest forecasts (with --holdout-as-of)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--apy-objective", choices=sorted(M.OBJECTIVES), default=M.APY_OBJECTIVE)
    parser.add_argument("--quarantine-table", type=check_identifier, help="flagged observations of this run")
    parser.add_argument(
        "--with-naive", action="store_true", help="also stage the persistence forecast (model 'naive') per as-of"
    )
    parser.add_argument("--database-url", help="postgresql://user@host:port/db (no password); default: DB_* env")
    parser.add_argument("--password-secret", help="secret reference of the password; default: DB_PASSWORD_SECRET")
    parser.add_argument("--code-version", default="", help="version of the code (the batch's); default: detected")
    args = parser.parse_args(list(argv))
    if args.holdout_as_of and not args.backtest_table:
        parser.error("--holdout-as-of needs --backtest-table")
    if args.train_days < 2:
        parser.error("--train-days must be at least 2")
    return args


def latest_actuals_date(spark: SparkSession, db: DbConfig) -> dt.date:
    row = read_query(spark, db, time_bounds.latest_actuals_query(time_bounds.utc_now())).first()
    if row is None or row["as_of"] is None:
        raise RuntimeError("pool_daily_metrics has no actuals up to today: run the metrics pipeline first")
    return row["as_of"]


def extract(spark: SparkSession, db: DbConfig, first_day: dt.date, last_day: dt.date) -> tuple[DataFrame, DataFrame]:
    metrics = read_query(
        spark,
        db,
        f"SELECT pool_id, date, {', '.join(f'{c}::double precision AS {c}' for c in METRIC_COLUMNS)} "
        "FROM pool_daily_metrics WHERE actual_apy IS NOT NULL "
        f"AND date BETWEEN DATE '{first_day.isoformat()}' AND DATE '{last_day.isoformat()}'",
    )
    pools = read_query(spark, db, "SELECT pool_id, pool_group, is_active, is_filtered_out FROM pools")
    return metrics, pools


def forecast_as_of(
    clean: DataFrame,
    pools: DataFrame,
    as_of: dt.date,
    args: argparse.Namespace,
    rule: Q.QuarantineRule,
    frames: list[DataFrame],
) -> tuple[M.FittedForecaster, DataFrame]:
    """Fits on the window ending ``as_of``; forecasts as_of + 1 (model and naive rows) for the pools whose
    clean panel has a row on ``as_of``. The frames it caches are added to ``frames``."""
    features = cached(T.model_frame(clean, pools, as_of, args.train_days), frames)
    training = features.where((F.col("date") < F.lit(as_of)) & F.col("target_apy").isNotNull())
    fitted = M.fit(training, rule=rule, seed=args.seed, apy_objective=args.apy_objective)
    if fitted.training_rows == 0:
        raise RuntimeError(f"no training rows before {as_of} with a next-day actual")
    forecast_date = as_of + dt.timedelta(days=1)
    today = features.where(F.col("date") == F.lit(as_of))
    frames = [(M.MODEL_NAME, M.forecast(fitted.model, today))]
    if args.with_naive:
        frames.append((M.NAIVE_MODEL_NAME, M.persistence(today)))
    forecasts = None
    for name, frame in frames:
        labelled = frame.select(
            "pool_id",
            F.lit(forecast_date).alias("date"),
            F.lit(forecast_date).alias("forecast_date"),
            F.lit(as_of).alias("as_of"),
            F.lit(name).alias("model"),
            F.lit(args.run_id).alias("run_id"),
            "forecasted_apy",
            "forecasted_tvl",
        )
        forecasts = labelled if forecasts is None else forecasts.unionByName(labelled)
    return fitted, forecasts


def model_card(fitted: M.FittedForecaster, args: argparse.Namespace, as_of: dt.date, spark: SparkSession) -> dict:
    return {
        "model": M.MODEL_NAME,
        "run_id": args.run_id,
        "as_of": as_of.isoformat(),
        "forecast_date": (as_of + dt.timedelta(days=1)).isoformat(),
        "training_date_range": [
            (as_of - dt.timedelta(days=args.train_days - 1)).isoformat(),
            (as_of - dt.timedelta(days=1)).isoformat(),
        ],
        "train_days": args.train_days,
        "training_rows": fitted.training_rows,
        "tvl_training_rows": fitted.tvl_training_rows,
        "features": T.MODEL_FEATURE_COLUMNS,
        "stacked_feature": M.STACKED_FEATURE,
        "targets": {
            "tvl": "ln(tvl[d+1]) - ln(tvl[d]), winsorised",
            "apy": "slog(apy[d+1]) - slog(apy[d]) minus the reversion, winsorised; slog(x) = sign(x) ln(1 + |x|)",
        },
        "reversion_weight": fitted.reversion_weight,
        "reversion": "forecast slog change = -reversion_weight * (slog(apy[d]) - slog(3-day median apy))"
        " + correction_shrink * model",
        "correction_shrink": fitted.correction_shrink,
        "validation_days": M.VALIDATION_DAYS,
        "winsor_quantiles": list(M.WINSOR_QUANTILES),
        "winsor_bounds": fitted.bounds,
        "apy_objective": args.apy_objective,
        "tvl_objective": M.TVL_OBJECTIVE,
        "plausible_range": f"pool's clean 30-day [min, max] widened by {M.RANGE_MARGIN} x its width per side",
        "quarantine_rule": Q.QuarantineRule().as_dict(),
        "parameters": {
            "common": dict(M.COMMON_PARAMS) | {"seed": args.seed},
            "tvl": M.TVL_PARAMS | M.OBJECTIVES[M.TVL_OBJECTIVE],
            "apy": M.APY_PARAMS | M.OBJECTIVES[args.apy_objective],
        },
        "training_metrics": fitted.training_metrics,
        "code_version": code_version(args.code_version),
        "spark_version": spark.version,
        "synapseml": "1.1.3",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def quarantine(
    metrics: DataFrame, rule: Q.QuarantineRule, first_day: dt.date, frames: list[DataFrame]
) -> tuple[DataFrame, DataFrame]:
    """(clean rows, quarantine rows dated first_day or later) of the extracted metric rows; the frames it
    caches are added to ``frames``."""
    flagged = cached(Q.flag_observations(metrics, rule), frames)
    clean = cached(Q.clean_metrics(flagged), frames)
    rows = cached(Q.quarantine_rows(flagged).where(F.col("date") >= F.lit(first_day)), frames)
    return clean, rows


def run(spark: SparkSession, db: DbConfig, args: argparse.Namespace) -> dict:
    """Runs the job in ``spark``; what it caches is released when it returns or fails."""
    with released() as frames:
        return _run(spark, db, args, frames)


def _run(spark: SparkSession, db: DbConfig, args: argparse.Namespace, frames: list[DataFrame]) -> dict:
    started = time.monotonic()
    rule = Q.QuarantineRule()
    as_of = args.as_of or latest_actuals_date(spark, db)
    holdouts = sorted(set(args.holdout_as_of))
    if any(day >= as_of for day in holdouts):
        raise ValueError(f"holdout as-of dates must be before the as-of date {as_of}: {holdouts}")
    first_day = min([as_of, *holdouts]) - dt.timedelta(days=args.train_days - 1)
    history_start = first_day - dt.timedelta(days=T.LOOKBACK_DAYS + rule.reference_days)
    metrics, pools = extract(spark, db, history_start, as_of)
    clean, quarantined = quarantine(metrics, rule, first_day - dt.timedelta(days=T.LOOKBACK_DAYS), frames)

    fitted, forecasts = forecast_as_of(clean, pools, as_of, args, rule, frames)
    forecasts = cached(forecasts, frames)
    pools_forecast = forecasts.where(F.col("model") == M.MODEL_NAME).count()
    if pools_forecast == 0:
        raise RuntimeError(f"no forecastable pool has a plausible row on {as_of}")
    write_table(forecasts.select(*FORECAST_COLUMNS), db, args.staging_table)
    quarantine_counts = {
        row["reason"]: row["n"] for row in quarantined.groupBy("reason").agg(F.count("*").alias("n")).collect()
    }
    as_of_quarantined = quarantined.where(
        (F.col("date") == F.lit(as_of)) & (F.col("column_name") == "actual_apy")
    ).count()
    if args.quarantine_table:
        write_table(quarantined.withColumn("run_id", F.lit(args.run_id)), db, args.quarantine_table)

    model_dir = args.model_dir.rstrip("/")
    fitted.model.write().overwrite().save(f"{model_dir}/pipeline_model")
    card = model_card(fitted, args, as_of, spark)
    write_text(spark, f"{model_dir}/model_card.json", json.dumps(card, indent=2))
    faults.maybe_kill("forecast")

    backtest_rows = 0
    if holdouts:
        backtests = [forecast_as_of(clean, pools, day, args, rule, frames)[1] for day in holdouts]
        combined = backtests[0]
        for frame in backtests[1:]:
            combined = combined.unionByName(frame)
        combined = cached(combined, frames)
        backtest_rows = combined.count()
        write_table(combined.select(*FORECAST_COLUMNS), db, args.backtest_table)
    return {
        "run_id": args.run_id,
        "model": M.MODEL_NAME,
        "as_of": as_of.isoformat(),
        "forecast_date": (as_of + dt.timedelta(days=1)).isoformat(),
        "pools_forecast": pools_forecast,
        "pools_not_forecast_quarantined": as_of_quarantined,
        "quarantined": quarantine_counts,
        "quarantine_table": args.quarantine_table or "",
        "training_rows": fitted.training_rows,
        "staging_table": args.staging_table,
        "table_uri": db.table_uri(args.staging_table),
        "backtest_table": args.backtest_table or "",
        "holdout_as_of": [d.isoformat() for d in holdouts],
        "backtest_rows": backtest_rows,
        "model_dir": model_dir,
        "model_card": f"{model_dir}/model_card.json",
        "in_sample_apy_mae": fitted.training_metrics["in_sample_apy_mae"],
        "reversion_weight": fitted.reversion_weight,
        "correction_shrink": fitted.correction_shrink,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the job; returns (and logs) the run summary."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    db = DbConfig.from_args_or_env(args.database_url, args.password_secret).named("forecast", args.run_id)
    local_jars = (
        None if running_under_spark_submit() else jars.resolve_all([jars.JDBC_DRIVER, *jars.SYNAPSEML_LIGHTGBM])
    )
    spark = build_session("forecast", jars=local_jars)
    jars.require_classes(spark, jars.SYNAPSEML_CLASSES, jars.SYNAPSEML_LIGHTGBM)
    jars.require_python_modules(jars.SYNAPSEML_PYTHON_MODULES, jars.SYNAPSEML_LIGHTGBM)
    # A transient connection error reruns the job (it only overwrites its own staging tables and model dir).
    summary = pg.with_retries(lambda: run(spark, db, args), what=f"forecast {args.run_id}")
    log.info(
        "run %s: forecasts for %s of %d pools into %s; %d backtest rows; model in %s",
        args.run_id, summary["forecast_date"], summary["pools_forecast"], args.staging_table,
        summary["backtest_rows"], summary["model_dir"],
    )  # fmt: skip
    print("RUN_SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
    release_unfinalized_executors(spark)  # the fits' threads would keep the driver JVM from exiting
    return summary


if __name__ == "__main__":
    main()
