"""kill -9 at each step of the local pipeline (kfp.local, real Spark, real PostgreSQL), in the DAG's order, then
one good run.

A task SIGKILLs itself at the step named by ``DEFI_KILL_AT`` (``spark_src.common.faults``): no ``finally``, no
rollback from the client. After each kill nothing the killed step guarded has changed in production
(``pool_daily_metrics``, ``pool_forecast_history``). ``stale_after_minutes=0`` makes every unfinished run
abandoned for the next one, so each killed run is cleaned up by the next run's first step; the one good run at
the end cleans up the last killed run, completes, and leaves metrics equal to the SQL oracle, the forecasts of
its own chosen model, a history holding only its own rows, no ``stg_*`` table and no killed run's model
directory. One recovery run for seven kills keeps the cost bounded (4 pools x 40 days, 2 Optuna trials, one
holdout date).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from database.synthetic import SyntheticSpec, generate, load
from pipelines.local_run import LocalRunFailed, run_local, table_fingerprint
from spark_src.common.faults import KILL_AT_VARIABLE
from spark_src.pool_metrics.transforms import METRIC_COLUMNS
from tests.database.test_run_registry import _tables as _staging_tables
from tests.pipelines.test_local_pipeline import NUMBER, ORACLE_SQL, _close

pytestmark = pytest.mark.slow

SPEC = SyntheticSpec(pools=4, days=40, seed=5)
# The steps before the metrics promotion commits, in the DAG's order.
BEFORE_METRICS_PROMOTION = ["spark_write", "legacy", "parity", "upsert:pool_daily_metrics"]
# The steps after it and before the forecast promotion commits.
BEFORE_FORECAST_PROMOTION = ["forecast", "legacy_forecast", "promote_forecasts"]


def _history(db) -> dict[str, int]:
    """Forecast history rows per run."""
    with db.connect() as conn:
        return dict(conn.execute(text("SELECT run_id, count(*) FROM pool_forecast_history GROUP BY 1")).all())


def _forecasts(db) -> int:
    with db.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pool_daily_metrics WHERE forecasted_apy IS NOT NULL")).scalar()


def _statuses(db) -> dict[str, str]:
    with db.connect() as conn:
        return dict(conn.execute(text("SELECT run_id, status FROM pipeline_runs")).all())


def _killed_run(db_config, monkeypatch, step: str, params: dict) -> str:
    monkeypatch.setenv(KILL_AT_VARIABLE, step)
    try:
        with pytest.raises(LocalRunFailed) as failure:
            run_local(db_config, **params)
    finally:
        monkeypatch.delenv(KILL_AT_VARIABLE)
    return failure.value.run.context()["run_id"]


def test_kill_9_at_every_step_then_one_good_run_leaves_the_clean_state(db, db_config, tmp_path, monkeypatch):
    load(db, generate(SPEC))
    with db.begin() as conn:
        # Unbelievable timestamps in an active pool: rejected and counted, and later runs keep working.
        conn.execute(
            text(
                'INSERT INTO raw_defillama_pool_history (pool_id, "timestamp", raw_json_data) '
                'SELECT pool_id, ts, \'{"apy": 99, "tvlUsd": 1}\'::jsonb FROM '
                "(SELECT min(pool_id) AS pool_id FROM pools WHERE is_active) p, "
                "unnest(ARRAY[TIMESTAMPTZ '2099-06-01 00:00+00', TIMESTAMPTZ '3000-01-01 00:00+00']) ts"
            )
        )
    models = tmp_path / "models"
    params = {
        "legacy_n_trials": 2,
        "holdout_days": 1,
        "forecast_gate_enabled": False,  # about crashes, not about which forecaster wins
        "model_root": str(models),
        "stale_after_minutes": 0,  # every unfinished run other than the current one is abandoned
        "runs_dir": tmp_path / "runs",
    }
    empty = table_fingerprint(db)

    # --- kills before the metrics promotion commits: production stays empty ------------------------------
    killed = []
    for step in BEFORE_METRICS_PROMOTION:
        killed.append(_killed_run(db_config, monkeypatch, step, params))
        assert table_fingerprint(db) == empty, step
        assert _history(db) == {}, step
    # The last kill (in the metrics upsert, rolled back by the server) left its staging and shadow tables; the
    # earlier kills' tables were dropped by the next run's first step.
    assert _staging_tables(db) == [f"stg_legacy_metrics_{killed[-1]}", f"stg_pool_metrics_{killed[-1]}"]
    assert _statuses(db) == {**dict.fromkeys(killed[:-1], "cleaned"), killed[-1]: "running"}

    # --- kills after the metrics promotion, before the forecast promotion commits ------------------------
    promoted = None
    for step in BEFORE_FORECAST_PROMOTION:
        killed.append(_killed_run(db_config, monkeypatch, step, params))
        # The run's metrics passed the gate and were promoted (the same rows each time); no forecast was.
        if promoted is None:
            promoted = table_fingerprint(db)
            with db.connect() as conn:
                assert promoted[0] == len(conn.execute(text(ORACLE_SQL), {"number": NUMBER}).all()) > 90, step
        assert table_fingerprint(db) == promoted, step
        assert _forecasts(db) == 0, step
        assert _history(db) == {}, step
    # Killed in the promotion's transaction after it dropped the staging tables: the drops were rolled back too.
    last = killed[-1]
    assert _staging_tables(db) == sorted(
        f"stg_{kind}_{last}" for kind in ("backtest", "forecast", "legacy_backtest", "legacy_metrics", "quarantine")
    )
    assert (models / last / "model_card.json").is_file()  # the killed run's model directory
    assert sorted(p.name for p in models.iterdir()) == [last]  # the earlier killed runs' were removed

    # --- one good run --------------------------------------------------------------------------------------
    run = run_local(db_config, **params)
    run_id = run.context()["run_id"]

    assert _staging_tables(db) == []
    assert _statuses(db) == {**dict.fromkeys(killed, "cleaned"), run_id: "succeeded"}
    assert sorted(p.name for p in models.iterdir()) == [run_id]
    cleanup = run.metadata("cleanup")
    assert [cleanup[k] for k in ("runs_cleaned", "tables_dropped", "model_dirs_removed")] == [1, 5, 1]
    assert cleanup["history_rows_deleted"] == 0  # no killed run ever reached the history
    assert cleanup["unregistered_staging_tables"] == 0
    staging = run.metadata("staging")
    assert (staging["rejected"]["timestamp_in_future"], staging["rejected"]["timestamp_out_of_range"]) == (2, 0)

    with db.connect() as conn:
        expected = conn.execute(text(ORACLE_SQL), {"number": NUMBER}).all()
        actual = conn.execute(
            text(
                f"SELECT pool_id, date, {', '.join(METRIC_COLUMNS)} FROM pool_daily_metrics "
                "WHERE actual_apy IS NOT NULL ORDER BY pool_id, date"
            )
        ).all()
        latest = conn.execute(text("SELECT max(date) FROM pool_daily_metrics")).scalar()
        # The forecasts shown are exactly the history's rows of the promoted model for as_of + 1.
        shown = conn.execute(
            text(
                "SELECT pool_id, date, forecasted_apy, forecast_model FROM pool_daily_metrics "
                "WHERE forecasted_apy IS NOT NULL ORDER BY 1, 2"
            )
        ).all()
        history = conn.execute(
            text(
                "SELECT h.pool_id, h.forecast_date, h.forecasted_apy, h.model FROM pool_forecast_history h "
                "WHERE h.run_id = :run_id AND h.model = 'spark_lgbm_stacked' AND h.forecast_date = "
                "(SELECT max(forecast_date) FROM pool_forecast_history) ORDER BY 1, 2"
            ),
            {"run_id": run_id},
        ).all()
    assert latest.year == 2026  # the 2099 and year-3000 rows never became days
    assert [r[:2] for r in actual] == [r[:2] for r in expected]
    assert all(_close(a, e) for ra, re_ in zip(actual, expected, strict=True) for a, e in zip(ra[2:], re_[2:]))
    assert shown and shown == history
    assert set(_history(db)) == {run_id}  # only the rows of the run that completed
