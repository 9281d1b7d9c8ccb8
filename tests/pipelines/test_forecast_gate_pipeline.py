"""The forecast gate in the whole local pipeline (kfp.local, real Spark, SynapseML, PostgreSQL), forced two ways.

A first run promotes the Spark model's forecasts (gate disabled). Then a PostgreSQL event trigger plants a
fault in the next run's Spark backtest staging table (``stg_backtest_<run>``) as the Spark job writes it: the
model's backtest APYs are wrecked, so the model loses to naive on the holdout and the run promotes the
persistence forecast, labelled ``naive``: tomorrow's rows hold exactly the pools' clean values of the as-of
day, every other row and column is byte-identical, and the history gains this run's staged rows only.
(The gate that cannot choose, and fails the run, leaving both tables byte-identical, is tested at the
promotion level in tests/database/test_promote_forecasts.py.)

Run status is not trusted (kubeflow/pipelines#13332): the checks read the tables and the outputs.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from database.synthetic import SyntheticSpec, generate, load
from pipelines.local_run import run_local

pytestmark = pytest.mark.slow

PLANT_SQL = """
CREATE TABLE plant_mode (mode text NOT NULL);
INSERT INTO plant_mode VALUES ('none');
CREATE FUNCTION plant_backtest_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.model = 'spark_lgbm_stacked' AND (SELECT mode FROM plant_mode) = 'wreck_model' THEN
        NEW.forecasted_apy := NEW.forecasted_apy * 10 + 50;
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION plant_on_backtest_table() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE created record;
BEGIN
    FOR created IN SELECT DISTINCT object_identity FROM pg_event_trigger_ddl_commands()
                   WHERE object_type = 'table' AND starts_with(object_identity, 'public.stg_backtest_') LOOP
        EXECUTE 'CREATE OR REPLACE TRIGGER plant BEFORE INSERT ON ' || created.object_identity
            || ' FOR EACH ROW EXECUTE FUNCTION plant_backtest_row()';
    END LOOP;
END $$;
CREATE EVENT TRIGGER plant_on_backtest_table ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION plant_on_backtest_table();
"""
HISTORY_SQL = """
SELECT pool_id, forecast_date, model, run_id, as_of, forecasted_apy, forecasted_tvl, created_at
FROM pool_forecast_history ORDER BY pool_id, forecast_date, model, run_id
"""
METRICS_SQL = "SELECT to_jsonb(m) - 'updated_at' AS row FROM pool_daily_metrics m ORDER BY pool_id, date"


def _plant(db, mode: str) -> None:
    with db.begin() as conn:
        conn.execute(text("UPDATE plant_mode SET mode = :mode"), {"mode": mode})


def _snapshot(db) -> tuple[list, list]:
    with db.connect() as conn:
        return conn.execute(text(METRICS_SQL)).scalars().all(), conn.execute(text(HISTORY_SQL)).all()


def test_a_model_that_loses_on_the_holdout_promotes_exactly_the_naive_forecast(db, db_config):
    load(db, generate(SyntheticSpec(pools=6, days=40, seed=17)))
    with db.begin() as conn:
        conn.exec_driver_sql(PLANT_SQL)
    try:
        first = run_local(db_config, forecast_gate_enabled=False, legacy_n_trials=2, holdout_days=1)
        assert first.metadata("forecast_metrics")["forecast_promoted_naive"] == 0.0
        metrics_before, history_before = _snapshot(db)
        with db.connect() as conn:
            as_of = conn.execute(text("SELECT max(date) FROM pool_daily_metrics WHERE actual_apy IS NOT NULL")).scalar()
        tomorrow = as_of + dt.timedelta(days=1)
        first_models = {r["forecast_model"] for r in metrics_before if r["date"] == tomorrow.isoformat()}
        assert first_models == {"spark_lgbm_stacked"}

        # The model loses to naive on the holdout: naive persistence is promoted, labelled so.
        _plant(db, "wreck_model")
        third = run_local(db_config, forecast_gate_enabled=True, legacy_n_trials=2, holdout_days=1)
        evaluation = third.metadata("forecast_metrics")
        assert (evaluation["forecast_beats_naive"], evaluation["forecast_promoted_naive"]) == (0.0, 1.0)
        assert "promoted naive: the model lost" in (third.root / "forecast_report.html").read_text()
        metrics_after, history_after = _snapshot(db)
        with db.connect() as conn:
            # What the rule says tomorrow holds: each forecast pool's clean APY and TVL of as_of (a quarantined
            # TVL is NULL), computed here from the promoted metrics and the quarantine table.
            persistence = conn.execute(
                text(
                    "SELECT m.pool_id, m.actual_apy, CASE WHEN q.pool_id IS NULL THEN m.actual_tvl END AS actual_tvl "
                    "FROM pool_daily_metrics m LEFT JOIN pool_observation_quarantine q "
                    "ON q.pool_id = m.pool_id AND q.date = m.date AND q.column_name = 'actual_tvl' "
                    "WHERE m.date = :d"
                ),
                {"d": as_of},
            ).all()
        persistence = {r.pool_id: (r.actual_apy, r.actual_tvl) for r in persistence}
        expected = []
        for row in metrics_before:
            if row["date"] == tomorrow.isoformat():
                apy, tvl = persistence[row["pool_id"]]
                row = row | {"forecasted_apy": apy, "forecasted_tvl": tvl, "forecast_model": "naive"}
            expected.append(row)
        assert len(expected) == len(metrics_after) and len(first_models) == 1
        assert metrics_after == expected  # every other row and column byte-identical
        third_run = {r.run_id for r in history_after} - {r.run_id for r in history_before}
        assert len(third_run) == 1
        assert [r for r in history_after if r.run_id not in third_run] == history_before
        naive_tomorrow = {
            r.pool_id: (r.forecasted_apy, r.forecasted_tvl)
            for r in history_after
            if r.run_id in third_run and r.model == "naive" and r.forecast_date == tomorrow
        }
        assert naive_tomorrow == {p: persistence[p] for p in naive_tomorrow} and len(naive_tomorrow) >= 2
    finally:
        with db.begin() as conn:
            conn.execute(text("DROP EVENT TRIGGER IF EXISTS plant_on_backtest_table"))
