"""The forecast job end to end in local Spark with a real SynapseML LightGBM fit (not skipped in CI)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os

import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F
from sqlalchemy import text

from database.synthetic import SyntheticSpec, generate, load
from legacy.calculate_pool_metrics import run as run_legacy_metrics
from spark_src.common import jars
from spark_src.common.jdbc import read_query
from spark_src.forecast import quarantine as Q
from spark_src.forecast import transforms as T
from spark_src.forecast.main import main as run_forecast_job

pytestmark = pytest.mark.slow


@pytest.fixture
def metrics_db(db, db_config, monkeypatch):
    load(db, generate(SyntheticSpec(pools=12, days=75, seed=3)))
    run_legacy_metrics(db_config, target_table="pool_daily_metrics")
    for key, value in db_config.env().items():
        monkeypatch.setitem(os.environ, key, value)
    return db


def _forecast_rows(db, table: str) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(
            text(f"SELECT pool_id, forecast_date, as_of, forecasted_apy, forecasted_tvl FROM {table} ORDER BY 1, 2")
        ).all()


def test_forecasts_the_day_after_the_latest_actuals_for_every_forecastable_pool(spark, metrics_db, db_config, tmp_path):
    db = metrics_db
    with db.connect() as conn:
        latest = conn.execute(text("SELECT max(date) FROM pool_daily_metrics")).scalar()
        forecastable = (
            conn.execute(
                text(
                    "SELECT m.pool_id FROM pool_daily_metrics m JOIN pools p USING (pool_id) WHERE m.date = :d "
                    "AND m.actual_apy IS NOT NULL AND p.is_active AND NOT p.is_filtered_out ORDER BY 1"
                ),
                {"d": latest},
            )
            .scalars()
            .all()
        )
    holdout = latest - dt.timedelta(days=1)
    persisted = spark.sparkContext._jsc.getPersistentRDDs().size()

    summary = run_forecast_job(
        ["--run-id", "r1", "--staging-table", "stg_forecast_r1", "--model-dir", str(tmp_path / "model"),
         "--holdout-as-of", holdout.isoformat(), "--backtest-table", "stg_backtest_r1"]
    )  # fmt: skip

    forecasts = _forecast_rows(db, "stg_forecast_r1")
    assert summary["as_of"] == latest.isoformat() and summary["pools_forecast"] == len(forecastable) >= 6
    assert [r.pool_id for r in forecasts] == forecastable
    assert {(r.forecast_date, r.as_of) for r in forecasts} == {(latest + dt.timedelta(days=1), latest)}
    assert all(math.isfinite(r.forecasted_apy) and r.forecasted_apy > -5 for r in forecasts)
    backtests = _forecast_rows(db, "stg_backtest_r1")
    assert {(r.forecast_date, r.as_of) for r in backtests} == {(latest, holdout)}
    # What the job cached (the quarantined panel, the features of both fits, the forecasts) is released: a session
    # that runs it again holds no earlier run's rows.
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == persisted

    # The saved pipeline model reproduces the forecasts from the as-of rows, and the card describes it.
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["features"] == T.MODEL_FEATURE_COLUMNS and card["as_of"] == latest.isoformat()
    assert card["training_rows"] == summary["training_rows"] > 300
    reloaded = PipelineModel.load(str(tmp_path / "model" / "pipeline_model"))
    metrics = read_query(spark, db_config, "SELECT * FROM pool_daily_metrics")
    pools = read_query(spark, db_config, "SELECT * FROM pools")
    clean = Q.clean_metrics(Q.flag_observations(metrics.where(F.col("actual_apy").isNotNull()), Q.QuarantineRule()))
    rows = T.model_frame(clean, pools, latest, 60).where(F.col("date") == F.lit(latest))
    again = sorted(reloaded.transform(rows).select("pool_id", "forecasted_apy").collect())
    assert [(r.pool_id, r.forecasted_apy) for r in again] == [(r.pool_id, r.forecasted_apy) for r in forecasts]

    # Deterministic: a second run gives the same numbers.
    run_forecast_job(["--run-id", "r2", "--staging-table", "stg_forecast_r2", "--model-dir", str(tmp_path / "model2")])
    assert _forecast_rows(db, "stg_forecast_r2") == forecasts


def test_missing_synapseml_classes_name_the_coordinates(spark):
    with pytest.raises(jars.JarResolutionError, match=r"com\.example\.Missing.*synapseml-lightgbm_2\.12:1\.1\.3"):
        jars.require_classes(spark, ["com.example.Missing"], jars.SYNAPSEML_LIGHTGBM)
    jars.require_classes(spark, jars.SYNAPSEML_CLASSES, jars.SYNAPSEML_LIGHTGBM)  # all present: no error
