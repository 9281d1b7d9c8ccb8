"""The run's date range: incremental by default, backfill and full recompute only when asked for."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from spark_src.pool_metrics.run_range import DataBounds, RangeError, resolve

D = dt.date
BOUNDS = DataBounds(first_day=D(2026, 5, 1), latest_day=D(2026, 8, 28), last_promoted=D(2026, 8, 27))


def test_incremental_is_last_promoted_minus_late_days_to_latest_day():
    run = resolve("incremental", "", "", 2, BOUNDS)
    assert (run.mode, run.start, run.end, run.days) == ("incremental", D(2026, 8, 25), D(2026, 8, 28), 4)
    assert run.as_dict()["start"] == "2026-08-25" and run.as_dict()["days"] == 4


def test_incremental_without_late_window_recomputes_only_the_last_promoted_day_onwards():
    run = resolve("incremental", "", "", 0, BOUNDS)
    assert (run.start, run.end) == (D(2026, 8, 27), D(2026, 8, 28))


def test_incremental_with_nothing_promoted_is_every_day_with_data():
    run = resolve("incremental", "", "", 2, DataBounds(D(2026, 5, 1), D(2026, 8, 28), None))
    assert (run.start, run.end) == (D(2026, 5, 1), D(2026, 8, 28))


def test_incremental_with_no_new_day_recomputes_the_late_window():
    run = resolve("incremental", "", "", 2, DataBounds(D(2026, 5, 1), D(2026, 8, 28), D(2026, 8, 28)))
    assert (run.start, run.end) == (D(2026, 8, 26), D(2026, 8, 28))


def test_incremental_window_is_clamped_to_the_data():
    early = resolve("incremental", "", "", 30, DataBounds(D(2026, 5, 1), D(2026, 5, 10), D(2026, 5, 3)))
    assert (early.start, early.end) == (D(2026, 5, 1), D(2026, 5, 10))
    # Promoted rows later than the data (history deleted upstream): the latest day is recomputed, no empty range.
    ahead = resolve("incremental", "", "", 2, DataBounds(D(2026, 5, 1), D(2026, 5, 10), D(2026, 6, 30)))
    assert (ahead.start, ahead.end) == (D(2026, 5, 10), D(2026, 5, 10))


def test_full_is_every_day_with_data():
    run = resolve("full", "", "", 2, BOUNDS)
    assert (run.mode, run.start, run.end) == ("full", D(2026, 5, 1), D(2026, 8, 28))


def test_range_is_a_backfill_with_open_ends_at_the_data():
    assert resolve("range", "2026-06-01", "2026-06-30", 2, BOUNDS).start == D(2026, 6, 1)
    assert resolve("range", "2026-06-01", "2026-06-30", 2, BOUNDS).end == D(2026, 6, 30)
    assert resolve("range", "2026-06-01", "", 2, BOUNDS).end == D(2026, 8, 28)
    assert resolve("range", "", "2026-06-30", 2, BOUNDS).start == D(2026, 5, 1)


@pytest.mark.parametrize(
    ("mode", "start", "end", "late_days", "message"),
    [
        ("daily", "", "", 2, "mode 'daily' is not one of incremental, range, full"),
        ("incremental", "2026-06-01", "", 2, "start/end (2026-06-01..-) are for a backfill: pass mode=range"),
        ("full", "", "2026-06-01", 2, "mode=full computes every day with data"),
        ("range", "2026-07-01", "2026-06-01", 2, "start 2026-07-01 is after end 2026-06-01"),
        ("range", "2026-13-01", "", 2, "start '2026-13-01' is not an ISO date"),
        ("incremental", "", "", -1, "late_days must be >= 0, got -1"),
    ],
)
def test_bad_parameters_are_one_clear_line(mode, start, end, late_days, message):
    with pytest.raises(RangeError, match="^" + re.escape(message)):
        resolve(mode, start, end, late_days, BOUNDS)


def test_no_data_is_an_error():
    with pytest.raises(RangeError, match="has no observation of an active pool up to today"):
        resolve("incremental", "", "", 2, DataBounds(None, None, None))


def test_fetch_bounds_counts_only_days_the_jobs_accept(db):
    """Real PostgreSQL. The first and latest days with data are those of an active pool's believable
    observations, as the jobs read them: a row stamped '-infinity' or 1970 (before the earliest believable time,
    rejected by both jobs) does not make a full run start in year 1 or 1970; 'infinity', 2099 and an inactive
    pool's rows do not count either. A forecast-only row (no actual) is not a promoted day."""
    from sqlalchemy import text

    from spark_src.pool_metrics.run_range import fetch_bounds

    history = [
        ("p1", "-infinity"),
        ("p1", "1970-01-01 00:00+00"),
        ("p1", "2026-06-01 12:00+00"),
        ("p1", "2026-06-17 12:00+00"),
        ("p1", "2099-01-01 00:00+00"),
        ("p1", "infinity"),
        ("p_inactive", "2026-05-01 12:00+00"),
    ]
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO pools (pool_id, symbol, chain, project, is_active) VALUES (:p, 'USDC', 'eth', 'x', :a)"),
            [{"p": "p1", "a": True}, {"p": "p_inactive", "a": False}],
        )
        conn.execute(
            text(
                'INSERT INTO raw_defillama_pool_history (pool_id, "timestamp", raw_json_data) '
                "VALUES (:p, CAST(:t AS timestamptz), '{}')"
            ),
            [{"p": p, "t": t} for p, t in history],
        )
        conn.execute(
            text(
                "INSERT INTO pool_daily_metrics (pool_id, date, actual_apy, forecasted_apy) VALUES "
                "('p1', DATE '2026-06-10', 5.0, NULL), ('p1', DATE '2026-06-18', NULL, 6.0)"
            )
        )
    with db.connect() as conn:
        bounds = fetch_bounds(conn, today=D(2026, 6, 17))
    assert bounds == DataBounds(first_day=D(2026, 6, 1), latest_day=D(2026, 6, 17), last_promoted=D(2026, 6, 10))
