"""The gated forecast promotion on a real PostgreSQL: the chosen model only, plausible values only, all or nothing."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import text

from database.promote_forecasts import promote_forecasts
from pipelines.local_run import table_fingerprint

AS_OF = dt.date(2026, 8, 1)
TOMORROW = AS_OF + dt.timedelta(days=1)
RUN = "r1"
STAGING = ["stg_forecast_r1", "stg_backtest_r1", "stg_legacy_backtest_r1", "stg_quarantine_r1"]


def _history(db) -> tuple[int, str]:
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT pool_id, forecast_date, model, run_id, as_of, forecasted_apy, forecasted_tvl "
                "FROM pool_forecast_history ORDER BY 1, 2, 3, 4"
            )
        ).all()
    return len(rows), repr(rows)


@pytest.fixture
def staged(db):
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pool_daily_metrics (pool_id, date, actual_apy, actual_tvl) VALUES "
                "('a', :d, 5.0, 1e6), ('b', :d, 3.0, 2e6), ('c', :d, 1e9, 3e6)"
            ),
            {"d": AS_OF},
        )
        conn.execute(
            text(
                "INSERT INTO pool_forecast_history (pool_id, forecast_date, model, run_id, as_of, forecasted_apy) "
                "VALUES ('a', :d, 'naive', 'earlier', :a, 4.0)"
            ),
            {"d": AS_OF, "a": AS_OF - dt.timedelta(days=1)},
        )
        conn.execute(
            text(
                """
                CREATE TABLE stg_forecast_r1 (pool_id text, date date, forecast_date date, as_of date, model text,
                    run_id text, forecasted_apy double precision, forecasted_tvl double precision);
                INSERT INTO stg_forecast_r1 VALUES
                    ('a', :t, :t, :d, 'spark_lgbm_stacked', 'r1', 5.5, 1.1e6),
                    ('b', :t, :t, :d, 'spark_lgbm_stacked', 'r1', 2e7, 2e6),
                    ('a', :t, :t, :d, 'naive', 'r1', 5.0, 1e6),
                    ('b', :t, :t, :d, 'naive', 'r1', 3.0, 2e6);
                CREATE TABLE stg_backtest_r1 (LIKE stg_forecast_r1);
                INSERT INTO stg_backtest_r1 VALUES
                    ('a', :d, :d, :y, 'spark_lgbm_stacked', 'r1', 4.9, 1e6),
                    ('a', :d, :d, :y, 'naive', 'r1', 4.0, 1e6);
                CREATE TABLE stg_legacy_backtest_r1 (pool_id text, forecast_date date, as_of date, model text,
                    run_id text, forecasted_apy double precision, forecasted_tvl double precision,
                    created_at timestamptz DEFAULT now());
                INSERT INTO stg_legacy_backtest_r1 VALUES ('a', :d, :y, 'legacy_rf_lgbm', 'r1', 4.5, 1e6);
                CREATE TABLE stg_quarantine_r1 (pool_id text, date date, column_name text, value double precision,
                    reference double precision, reason text, run_id text);
                INSERT INTO stg_quarantine_r1 VALUES ('c', :d, 'actual_apy', 1e9, 4.0, 'apy_above_bound', 'r1');
                """
            ),
            {"d": AS_OF, "t": TOMORROW, "y": AS_OF - dt.timedelta(days=1)},
        )
    return db


def _promote(db_config, model: str):
    return promote_forecasts(
        db_config,
        run_id=RUN,
        model=model,
        forecast_table="stg_forecast_r1",
        backtest_tables=["stg_backtest_r1", "stg_legacy_backtest_r1"],
        quarantine_table="stg_quarantine_r1",
    )


def _tomorrow(db) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(
            text(
                "SELECT pool_id, forecasted_apy, forecasted_tvl, forecast_model, actual_apy FROM pool_daily_metrics "
                "WHERE date = :t ORDER BY 1"
            ),
            {"t": TOMORROW},
        ).all()


def test_the_naive_choice_promotes_persistence_labelled_naive_and_keeps_every_staged_row(staged, db_config):
    promotion = _promote(db_config, "naive")

    assert _tomorrow(staged) == [("a", 5.0, 1e6, "naive", None), ("b", 3.0, 2e6, "naive", None)]
    assert (promotion.staged, promotion.inserted, promotion.rejected_implausible) == (2, 2, 0)
    with staged.connect() as conn:
        models = conn.execute(
            text("SELECT model, count(*) FROM pool_forecast_history WHERE run_id = 'r1' GROUP BY 1 ORDER BY 1")
        ).all()
        quarantine = conn.execute(text("SELECT pool_id, date, reason, run_id FROM pool_observation_quarantine")).all()
        left = conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stg_%'")).scalar()
    assert models == [("legacy_rf_lgbm", 1), ("naive", 3), ("spark_lgbm_stacked", 3)]
    assert quarantine == [("c", AS_OF, "apy_above_bound", "r1")]
    assert left == 0
    assert promotion.history_rows == 7 and promotion.quarantine_rows == 1


def test_an_implausible_forecast_never_reaches_pool_daily_metrics(staged, db_config):
    promotion = _promote(db_config, "spark_lgbm_stacked")

    assert _tomorrow(staged) == [("a", 5.5, 1.1e6, "spark_lgbm_stacked", None)]  # b's 2e7 % is refused
    assert (promotion.staged, promotion.inserted, promotion.rejected_implausible) == (2, 1, 1)
    assert math.isclose(promotion.unchanged, 0)


@pytest.mark.parametrize("broken", ["missing staging table", "model without forecasts"])
def test_a_failed_promotion_leaves_metrics_and_history_byte_identical(staged, db_config, broken):
    before = table_fingerprint(staged), _history(staged)
    if broken == "missing staging table":
        with staged.begin() as conn:
            conn.execute(text("DROP TABLE stg_legacy_backtest_r1"))
        with pytest.raises(RuntimeError, match="stg_legacy_backtest_r1 does not exist"):
            _promote(db_config, "naive")
    else:
        with pytest.raises(RuntimeError, match="no forecast of model 'legacy_rf_lgbm'"):
            _promote(db_config, "legacy_rf_lgbm")

    assert (table_fingerprint(staged), _history(staged)) == before
    with staged.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stg_%'")).scalar()
        quarantined = conn.execute(text("SELECT count(*) FROM pool_observation_quarantine")).scalar()
    assert kept == (3 if broken == "missing staging table" else 4) and quarantined == 0


def test_a_forecast_promotion_queues_behind_a_metrics_upsert_of_the_same_table(staged, db_config):
    """Both write pool_daily_metrics: the forecast promotion waits on the table's advisory lock, then proceeds."""
    import threading
    import time

    from spark_src.common import pg

    order: list[str] = []
    with pg.engine(db_config, "upsert_staging", "metrics") as engine, engine.begin() as metrics_upsert:
        pg.lock_for_promotion(metrics_upsert, "pool_daily_metrics")
        promoter = threading.Thread(target=lambda: order.append(_promote(db_config, "naive").model))
        promoter.start()
        time.sleep(1.0)
        order.append("metrics upsert commits")
    promoter.join(timeout=30)
    assert order == ["metrics upsert commits", "naive"]
