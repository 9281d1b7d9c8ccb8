"""The range step against a real PostgreSQL: what the database holds decides an incremental run's days."""

from __future__ import annotations

import pytest
from kfp import dsl
from sqlalchemy import text

from components.resolve_run_range import resolve_run_range
from spark_src.pool_metrics.run_range import RangeError


def _seed(conn) -> None:
    conn.execute(
        text(
            "INSERT INTO pools (pool_id, symbol, chain, project, is_active) VALUES "
            "('p1', 'USDC', 'Ethereum', 'aave', true), ('gone', 'DAI', 'Ethereum', 'aave', false)"
        )
    )
    conn.execute(
        text(
            'INSERT INTO raw_defillama_pool_history (pool_id, "timestamp", raw_json_data) VALUES '
            "('p1', '2026-05-01 08:00+00', '{\"apy\": 1}'), ('p1', '2026-05-20 23:30+00', '{\"apy\": 1}'),"
            # an inactive pool's later day and a future-stamped row do not move the range
            "('gone', '2026-05-25 08:00+00', '{\"apy\": 1}'), ('p1', '2099-06-01 00:00+00', '{\"apy\": 1}')"
        )
    )


def _resolve(db_config, **params):
    artifact = dsl.Artifact(name="run_range", uri="", metadata={})
    outputs = resolve_run_range.python_func(database_url=db_config.url, run_range=artifact, **params)
    return outputs, artifact.metadata


def test_incremental_run_starts_late_days_before_the_last_promoted_day(db, db_config):
    with db.begin() as conn:
        _seed(conn)
        conn.execute(text("INSERT INTO pool_daily_metrics (pool_id, date, actual_apy) VALUES ('p1', '2026-05-18', 1)"))
        # A forecast-only row (as_of + 1) is not a promoted day.
        conn.execute(
            text("INSERT INTO pool_daily_metrics (pool_id, date, forecasted_apy) VALUES ('p1', '2026-05-19', 1)")
        )
    outputs, metadata = _resolve(db_config)
    assert (outputs.start, outputs.end, outputs.mode) == ("2026-05-16", "2026-05-20", "incremental")
    assert metadata["days"] == 5
    assert metadata["last_promoted"] == "2026-05-18"
    assert metadata["late_days"] == 2


def test_empty_target_means_every_day_and_full_and_range_are_explicit(db, db_config):
    with db.begin() as conn:
        _seed(conn)
    assert _resolve(db_config)[0][:2] == ("2026-05-01", "2026-05-20")
    assert _resolve(db_config, mode="full")[0][:2] == ("2026-05-01", "2026-05-20")
    assert _resolve(db_config, mode="range", start="2026-05-10")[0][:2] == ("2026-05-10", "2026-05-20")
    with pytest.raises(RangeError, match="pass mode=range"):
        _resolve(db_config, start="2026-05-10")


def test_the_run_clock_bounds_the_latest_day(db, db_config):
    """The run context's ``now``: no day after its UTC date, whatever this machine's clock says."""
    with db.begin() as conn:
        _seed(conn)
    # 2026-05-20 01:30 in UTC+03:00 is 2026-05-19 22:30 UTC: the 2026-05-20 row is tomorrow for this run.
    assert _resolve(db_config, now="2026-05-20T01:30:00+03:00")[0][:2] == ("2026-05-01", "2026-05-01")
    assert _resolve(db_config, now="2026-05-20T23:59:00+00:00")[0][:2] == ("2026-05-01", "2026-05-20")
