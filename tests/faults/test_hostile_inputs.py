"""Hostile inputs: each kind with its expected count or error, the same in the Spark and the legacy metrics jobs.

Real PostgreSQL and local Spark. The run's reference time is fixed (``--now``) so that "in the future" is exact.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os

import pytest
from sqlalchemy import text

from legacy.calculate_pool_metrics import run as run_legacy
from spark_src.pool_metrics.main import main as run_spark_job
from spark_src.pool_metrics.main import parse_args as spark_args

pytestmark = pytest.mark.slow

NOW = dt.datetime(2026, 6, 17, 12, 0, tzinfo=dt.UTC)
START = dt.date(2026, 6, 1)
INJECTED = "x'); DROP TABLE pools;--"

# (pool, timestamp, raw_json_data as JSON text): one hostile kind per day of pool p1 unless said otherwise.
HISTORY = [
    ("p1", "2026-06-01 12:00+00", {"apy": 5, "tvlUsd": 100}),  # fine
    ("p1", "2026-06-02 12:00+00", {"apy": None, "tvlUsd": 100}),  # JSON null -> apy_missing
    ("p1", "2026-06-03 12:00+00", {"tvlUsd": 100}),  # no apy key -> apy_missing
    ("p1", "2026-06-04 12:00+00", {"apy": "n/a", "tvlUsd": 100}),  # apy_not_numeric
    ("p1", "2026-06-05 12:00+00", {"apy": [1, 2], "tvlUsd": 100}),  # JSON array -> apy_not_numeric
    ("p1", "2026-06-06 12:00+00", {"apy": {"v": 1}, "tvlUsd": 100}),  # JSON object -> apy_not_numeric
    ("p1", "2026-06-07 12:00+00", {"apy": "NaN", "tvlUsd": 100}),  # apy_not_finite
    ("p1", "2026-06-08 12:00+00", {"apy": "1e999", "tvlUsd": 100}),  # overflows to inf -> apy_not_finite
    ("p1", "2026-06-09 12:00+00", {"apy": "-Infinity", "tvlUsd": 100}),  # apy_not_finite
    ("p1", "2026-06-10 12:00+00", {"apy": "1_0", "tvlUsd": 100}),  # Python-only number -> apy_not_numeric
    ("p1", "2026-06-11 12:00+00", {"apy": "0x1p3", "tvlUsd": 100}),  # Java-only number -> apy_not_numeric
    ("p1", "2026-06-12 12:00+00", {"apy": 6, "tvlUsd": -5}),  # row kept, tvl_negative
    ("p1", "2026-06-13 12:00+00", {"apy": 7, "tvlUsd": "lots"}),  # row kept, tvl_not_numeric
    ("p1", "2026-06-14 12:00+00", {"apy": 8, "tvlUsd": "Infinity"}),  # row kept, tvl_not_finite
    ("p1", "2026-06-15 08:00+00", {"apy": 1, "tvlUsd": 100}),  # superseded by the 20:00 observation
    ("p1", "2026-06-15 20:00+00", {"apy": 9, "tvlUsd": 100}),
    ("p1", "2026-06-16 12:00+00", [1, 2]),  # JSON root is an array: no apy field -> apy_missing
    ("p1", "2026-06-17 12:05+00", {"apy": 10, "tvlUsd": 100}),  # 5 min ahead of NOW: within the skew, kept
    ("p1", "2026-06-17 12:30+00", {"apy": 99, "tvlUsd": 100}),  # 30 min ahead: timestamp_in_future
    ("p1", "2099-06-01 00:00+00", {"apy": 99, "tvlUsd": 100}),  # timestamp_in_future
    ("p1", "3000-01-01 00:00+00", {"apy": 99, "tvlUsd": 100}),  # beyond pandas' ns range: timestamp_in_future
    ("p1", "infinity", {"apy": 99, "tvlUsd": 100}),  # timestamp_in_future
    ("p1", "-infinity", {"apy": 99, "tvlUsd": 100}),  # timestamp_out_of_range
    ("p1", "1970-01-01 00:00+00", {"apy": 99, "tvlUsd": 100}),  # timestamp_out_of_range
    (INJECTED, "2026-06-01 12:00+00", {"apy": 3, "tvlUsd": 50}),  # SQL in a pool id is plain data
    ("p_inactive", "2099-06-01 00:00+00", {"apy": 99, "tvlUsd": 1}),  # inactive pool: never read, not counted
]
# p_empty is active and has no history: counted as an active pool without rows.
POOLS = [("p1", True), (INJECTED, True), ("p_empty", True), ("p_inactive", False)]
CMC = [
    ("ETH", "2026-05-31 12:00+00", "1000"),
    ("ETH", "2026-06-10 12:00+00", "1100"),
    ("ETH", "2026-06-11 12:00+00", "NaN"),  # unusable close: skipped
    ("ETH", "2099-01-01 00:00+00", "5"),  # future: never used
    ("ETH", "infinity", "6"),  # never read (no crash in either engine)
    ("BTC", "2026-05-31 12:00+00", "60000"),
]
GAS = [("2026-06-01", 20), ("2099-01-01", 99)]

EXPECTED_SUMMARY = {
    "pools": 2,
    "rows_written": 7,
    "rejected": {
        "apy_missing": 3,
        "apy_not_numeric": 5,
        "apy_not_finite": 3,
        "timestamp_in_future": 4,
        "timestamp_out_of_range": 2,
    },
    "tvl_nulled": {"tvl_missing": 0, "tvl_not_numeric": 1, "tvl_not_finite": 1, "tvl_negative": 1},
    "active_pools_without_rows": 1,
    "end": "2026-06-17",  # default: today of --now
}
# (pool, date, actual_apy, actual_tvl, eth_open, btc_open, gas_price_gwei)
EXPECTED_ROWS = [
    ("p1", dt.date(2026, 6, 1), 5.0, 100.0, 1000.0, 60000.0, 20.0),
    ("p1", dt.date(2026, 6, 12), 6.0, None, 1100.0, None, None),  # BTC and gas 11-12 days old: stale
    ("p1", dt.date(2026, 6, 13), 7.0, None, 1100.0, None, None),
    ("p1", dt.date(2026, 6, 14), 8.0, None, 1100.0, None, None),
    ("p1", dt.date(2026, 6, 15), 9.0, 100.0, 1100.0, None, None),
    ("p1", dt.date(2026, 6, 17), 10.0, 100.0, 1100.0, None, None),  # ETH of 06-10: 7 days, the limit
    (INJECTED, dt.date(2026, 6, 1), 3.0, 50.0, 1000.0, 60000.0, 20.0),
]


def _load(db) -> None:
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO pools (pool_id, symbol, chain, project, is_active) VALUES (:p, 'USDC', 'eth', 'x', :a)"),
            [{"p": p, "a": a} for p, a in POOLS],
        )
        conn.execute(
            text(
                'INSERT INTO raw_defillama_pool_history (pool_id, "timestamp", raw_json_data) '
                "VALUES (:p, CAST(:t AS timestamptz), CAST(:j AS jsonb))"
            ),
            [{"p": p, "t": t, "j": json.dumps(j)} for p, t, j in HISTORY],
        )
        conn.execute(
            text(
                "INSERT INTO raw_coinmarketcap_ohlcv (symbol, data_timestamp, raw_json_data) "
                "VALUES (:s, CAST(:t AS timestamptz), CAST(:j AS jsonb))"
            ),
            [{"s": s, "t": t, "j": json.dumps({"USD": {"close": c}})} for s, t, c in CMC],
        )
        gas = [{"d": d, "g": g} for d, g in GAS]
        conn.execute(text("INSERT INTO gas_fees_daily VALUES (CAST(:d AS date), :g)"), gas)


def _rows(db, table: str) -> list[tuple]:
    with db.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    f"SELECT pool_id, date, actual_apy, actual_tvl, eth_open, btc_open, gas_price_gwei FROM {table} "
                    "ORDER BY pool_id = 'p1' DESC, pool_id, date"
                )
            )
        ]


def _assert_rows(actual: list[tuple], expected: list[tuple]) -> None:
    assert [r[:2] for r in actual] == [r[:2] for r in expected]
    for got, want in zip(actual, expected, strict=True):
        for g, w in zip(got[2:], want[2:], strict=True):
            assert (g is None and w is None) or (g is not None and w is not None and math.isclose(g, w)), (got, want)


def test_every_hostile_input_is_rejected_or_counted_the_same_way_by_both_jobs(spark, db, db_config, monkeypatch):
    _load(db)
    for key, value in db_config.env().items():
        monkeypatch.setitem(os.environ, key, value)

    spark_summary = run_spark_job(
        ["--run-id", "hostile", "--staging-table", "stg_pool_metrics_hostile", "--start", START.isoformat(),
         "--now", NOW.isoformat()]
    )  # fmt: skip
    legacy_summary = run_legacy(db_config, start=START, target_table="stg_legacy_metrics_hostile", now=NOW)

    for summary in (spark_summary, legacy_summary):
        assert {k: summary[k] for k in EXPECTED_SUMMARY} == EXPECTED_SUMMARY
    assert spark_summary["observations_superseded"] == 1  # 06-15 08:00
    _assert_rows(_rows(db, "stg_pool_metrics_hostile"), EXPECTED_ROWS)
    _assert_rows(_rows(db, "stg_legacy_metrics_hostile"), EXPECTED_ROWS)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pools")).scalar() == 4  # the injected id did nothing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--staging-table", "stg_x\n"], "invalid check_identifier value"),  # trailing newline: fullmatch refuses
        (["--staging-table", "stg_x; DROP TABLE pools"], "invalid check_identifier value"),
        (["--staging-table", "stg_x", "--start", "2026-06-02", "--end", "2026-06-01"], "is after --end"),
        (["--staging-table", "stg_x", "--end", "2026-13-45"], "invalid optional_date value"),
        (["--staging-table", "stg_x", "--now", "yesterday"], "invalid parse_now value"),
    ],
)
def test_bad_job_arguments_fail_with_one_clear_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        spark_args(["--run-id", "r", *argv])
    assert message in capsys.readouterr().err


def test_a_start_after_the_default_end_is_refused_by_both_jobs(db, db_config):
    with pytest.raises(ValueError, match="after the run's last day 2026-06-17"):
        run_legacy(db_config, start=dt.date(2026, 6, 18), target_table="stg_legacy_metrics_late", now=NOW)


def test_a_staging_table_missing_a_computed_row_fails_the_job(spark, db, db_config, monkeypatch):
    """The job compares the rows it wrote (counted while writing) with the rows its staging table holds: a row
    lost on the way (here deleted right after the write) fails the run with both numbers, before promotion."""
    from spark_src.pool_metrics import main as job

    _load(db)
    for key, value in db_config.env().items():
        monkeypatch.setitem(os.environ, key, value)
    write_table = job.write_table

    def write_then_lose_a_row(df, db_config_, table, **kwargs):
        write_table(df, db_config_, table, **kwargs)
        with db.begin() as conn:
            conn.execute(text(f'DELETE FROM "{table}" WHERE ctid IN (SELECT ctid FROM "{table}" LIMIT 1)'))

    monkeypatch.setattr(job, "write_table", write_then_lose_a_row)
    with pytest.raises(RuntimeError, match="stg_pool_metrics_lossy holds 6 rows, the job computed 7"):
        run_spark_job(
            ["--run-id", "lossy", "--staging-table", "stg_pool_metrics_lossy", "--start", START.isoformat(),
             "--now", NOW.isoformat()]
        )  # fmt: skip


def test_a_database_without_history_gives_an_empty_staging_table_and_zero_counts(spark, db, db_config, monkeypatch):
    """No pool, no observation (a new deployment): the full run writes an empty staging table and counts zeros,
    rather than failing or waiting for counts of rows that do not exist."""
    for key, value in db_config.env().items():
        monkeypatch.setitem(os.environ, key, value)

    summary = run_spark_job(["--run-id", "empty", "--staging-table", "stg_pool_metrics_empty", "--now", str(NOW)])

    assert {k: summary[k] for k in ("pools", "rows_written", "days_observed", "observations_superseded")} == {
        "pools": 0,
        "rows_written": 0,
        "days_observed": 0,
        "observations_superseded": 0,
    }
    assert set(summary["rejected"].values()) == {0} and set(summary["tvl_nulled"].values()) == {0}
    assert summary["read_partitions"] == 1
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM stg_pool_metrics_empty")).scalar() == 0
