"""The forecast dates step against a real PostgreSQL: the run's clock decides which day is the latest with actuals."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from components.resolve_forecast_dates import resolve_forecast_dates


def _seed(conn) -> None:
    conn.execute(
        text(
            "INSERT INTO pool_daily_metrics (pool_id, date, actual_apy) VALUES "
            "('p1', '2026-05-18', 1), ('p1', '2026-05-19', 1), ('p1', '2026-05-20', 1)"
        )
    )


def _resolve(db_config, **params):
    return resolve_forecast_dates.python_func(database_url=db_config.url, **params)


def test_the_run_clock_decides_the_default_as_of(db, db_config):
    """2026-05-20 01:30 in UTC+03:00 is 2026-05-19 22:30 UTC: the 2026-05-20 row is tomorrow for this run."""
    with db.begin() as conn:
        _seed(conn)
    early = _resolve(db_config, now="2026-05-20T01:30:00+03:00", holdout_days=2)
    assert (early.as_of, early.forecast_date, early.holdout_as_of) == (
        "2026-05-19",
        "2026-05-20",
        "2026-05-17,2026-05-18",
    )
    late = _resolve(db_config, now="2026-05-20T23:59:00+00:00", holdout_days=1)
    assert (late.as_of, late.forecast_date, late.holdout_as_of) == ("2026-05-20", "2026-05-21", "2026-05-19")


def test_an_as_of_after_the_run_clocks_latest_day_is_refused(db, db_config):
    with db.begin() as conn:
        _seed(conn)
    with pytest.raises(
        ValueError, match=r"as_of 2026-05-20 is after the latest day up to today with actuals \(2026-05-19\)"
    ):
        _resolve(db_config, as_of="2026-05-20", now="2026-05-19T12:00:00+00:00")
