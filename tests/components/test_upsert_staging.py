"""The staging upsert against a real PostgreSQL: insert, update, unchanged, forecasts preserved, rollback."""

from __future__ import annotations

import datetime as dt

import pytest
from kfp import dsl
from sqlalchemy import text

from components.upsert_staging import upsert_staging
from spark_src.common.config import ConfigError
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

D = dt.date
STAGING_DDL = (
    "CREATE TABLE {t} (pool_id text, date date, " + ", ".join(f"{c} double precision" for c in METRIC_COLUMNS) + ")"
)


def _metric_row(pool_id: str, day: int, apy: float) -> dict:
    row = {c: None for c in METRIC_COLUMNS}
    row.update(pool_id=pool_id, date=D(2026, 5, day), actual_apy=apy, rolling_apy_7d=apy, actual_tvl=1000.0)
    return row


def _insert(conn, table: str, rows: list[dict]) -> None:
    cols = list(rows[0])
    conn.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"), rows)


def _run(db_config, staging: str, **kwargs) -> dsl.Dataset:
    promoted = dsl.Dataset(name="promoted", uri="", metadata={})
    upsert_staging.python_func(
        database_url=db_config.url,
        staging_table=staging,
        target_table="pool_daily_metrics",
        update_columns=METRIC_COLUMNS,
        promoted=promoted,
        run_id="r1",
        **kwargs,
    )
    return promoted


def _target(conn) -> list[tuple]:
    return conn.execute(
        text("SELECT pool_id, date, actual_apy, forecasted_apy FROM pool_daily_metrics ORDER BY pool_id, date")
    ).all()


def test_inserts_updates_and_leaves_unchanged_rows_and_forecasts_alone(db, db_config):
    with db.begin() as conn:
        _insert(conn, "pool_daily_metrics", [_metric_row("p1", 1, 1.0), _metric_row("p1", 2, 2.0)])
        conn.execute(text("UPDATE pool_daily_metrics SET forecasted_apy = 9.5, updated_at = '2026-01-01'"))
        conn.execute(text(STAGING_DDL.format(t="stg_r1")))
        _insert(
            conn,
            "stg_r1",
            [_metric_row("p1", 1, 1.0), _metric_row("p1", 2, 2.5), _metric_row("p2", 1, 3.0)],
        )

    promoted = _run(db_config, "stg_r1")

    assert promoted.uri == f"postgresql://127.0.0.1:{db_config.port}/defi/pool_daily_metrics"
    assert {k: promoted.metadata[k] for k in ("inserted", "updated", "unchanged", "staging_rows")} == {
        "inserted": 1,
        "updated": 1,
        "unchanged": 1,
        "staging_rows": 3,
    }
    with db.connect() as conn:
        assert _target(conn) == [
            ("p1", D(2026, 5, 1), 1.0, 9.5),
            ("p1", D(2026, 5, 2), 2.5, 9.5),  # metrics updated, forecast kept
            ("p2", D(2026, 5, 1), 3.0, None),
        ]
        # The unchanged row was not rewritten: its updated_at is still the old one.
        rewritten = conn.execute(
            text("SELECT date FROM pool_daily_metrics WHERE pool_id = 'p1' AND updated_at > '2026-01-02'")
        ).scalars()
        assert list(rewritten) == [D(2026, 5, 2)]
        assert conn.execute(text("SELECT to_regclass('stg_r1')")).scalar() is None  # staging dropped


def test_second_identical_upsert_reports_nothing_inserted_or_updated(db, db_config):
    rows = [_metric_row("p1", 1, 1.0), _metric_row("p1", 2, 2.0)]
    for staging in ("stg_a", "stg_b"):
        with db.begin() as conn:
            conn.execute(text(STAGING_DDL.format(t=staging)))
            _insert(conn, staging, rows)
    first = _run(db_config, "stg_a")
    second = _run(db_config, "stg_b")
    assert (first.metadata["inserted"], first.metadata["updated"]) == (2, 0)
    assert (second.metadata["inserted"], second.metadata["updated"], second.metadata["unchanged"]) == (0, 0, 2)


def test_error_rolls_back_and_keeps_staging(db, db_config):
    with db.begin() as conn:
        _insert(conn, "pool_daily_metrics", [_metric_row("p1", 1, 1.0)])
        conn.execute(text(STAGING_DDL.format(t="stg_dup")))
        # The same key twice: promotion must stop before writing anything.
        _insert(conn, "stg_dup", [_metric_row("p1", 1, 5.0), _metric_row("p2", 1, 6.0), _metric_row("p2", 1, 7.0)])

    with pytest.raises(RuntimeError, match="1 duplicate"):
        _run(db_config, "stg_dup")

    with db.connect() as conn:
        assert _target(conn) == [("p1", D(2026, 5, 1), 1.0, None)]
        assert conn.execute(text("SELECT count(*) FROM stg_dup")).scalar() == 3


def test_failure_inside_the_upsert_statement_rolls_back(db, db_config):
    with db.begin() as conn:
        _insert(conn, "pool_daily_metrics", [_metric_row("p1", 1, 1.0)])
        # A staging table whose date column is text with a bad value: the INSERT fails half-way through.
        conn.execute(text(STAGING_DDL.format(t="stg_bad").replace("date date", "date text")))
        _insert(conn, "stg_bad", [_metric_row("p1", 1, 2.0), {**_metric_row("p2", 1, 3.0), "date": "not-a-date"}])

    with pytest.raises(Exception, match="date"):
        _run(db_config, "stg_bad")

    with db.connect() as conn:
        assert _target(conn) == [("p1", D(2026, 5, 1), 1.0, None)]
        assert conn.execute(text("SELECT to_regclass('stg_bad')")).scalar() is not None


def test_missing_staging_table_is_a_clear_error(db, db_config):
    with pytest.raises(RuntimeError, match="stg_missing does not exist"):
        _run(db_config, "stg_missing")


@pytest.mark.parametrize("bad", ["stg; DROP TABLE pools", "Stg", "stg-1"])
def test_table_names_must_be_plain_identifiers(db_config, bad):
    with pytest.raises(ValueError, match="identifier"):
        _run(db_config, bad)


def test_a_url_with_a_password_is_refused(db_config):
    with pytest.raises(ConfigError, match="must not contain a password"):
        upsert_staging.python_func(
            database_url=f"postgresql://defi:hunter2@127.0.0.1:{db_config.port}/defi",
            staging_table="stg",
            target_table="pool_daily_metrics",
            update_columns=["actual_apy"],
            promoted=dsl.Dataset(name="promoted", uri="", metadata={}),
        )


def test_forecast_upserts_create_missing_rows_keep_staging_on_request_and_fill_history(db, db_config):
    with db.begin() as conn:
        _insert(conn, "pool_daily_metrics", [_metric_row("p1", 1, 1.0)])
        conn.execute(
            text(
                "CREATE TABLE stg_fc (pool_id text, date date, forecast_date date, as_of date, model text, "
                "run_id text, forecasted_apy double precision, forecasted_tvl double precision)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO stg_fc VALUES ('p1', '2026-05-01', '2026-05-01', '2026-04-30', 'm', 'r1', 2.5, 10), "
                "('p2', '2026-05-02', '2026-05-02', '2026-05-01', 'm', 'r1', 3.5, 20)"
            )
        )
    common = {"database_url": db_config.url, "staging_table": "stg_fc", "run_id": "r1"}
    into_metrics = dsl.Dataset(name="promoted", uri="", metadata={})
    upsert_staging.python_func(
        **common, target_table="pool_daily_metrics", update_columns=["forecasted_apy", "forecasted_tvl"],
        promoted=into_metrics, drop_staging=False,
    )  # fmt: skip
    into_history = dsl.Dataset(name="promoted", uri="", metadata={})
    upsert_staging.python_func(
        **common, target_table="pool_forecast_history", key_columns=["pool_id", "forecast_date", "model", "run_id"],
        update_columns=["as_of", "forecasted_apy", "forecasted_tvl"], promoted=into_history,
    )  # fmt: skip

    assert (into_metrics.metadata["inserted"], into_metrics.metadata["updated"]) == (1, 1)
    assert (into_history.metadata["inserted"], into_history.metadata["updated"]) == (2, 0)
    with db.connect() as conn:
        assert _target(conn) == [
            ("p1", D(2026, 5, 1), 1.0, 2.5),  # the existing row got its forecast, actuals untouched
            ("p2", D(2026, 5, 2), None, 3.5),  # a day without metrics yet: the row is created
        ]
        history = conn.execute(
            text("SELECT pool_id, forecast_date, as_of, forecasted_apy FROM pool_forecast_history ORDER BY 1")
        ).all()
        assert history == [("p1", D(2026, 5, 1), D(2026, 4, 30), 2.5), ("p2", D(2026, 5, 2), D(2026, 5, 1), 3.5)]
        assert conn.execute(text("SELECT to_regclass('stg_fc')")).scalar() is None  # dropped by the last upsert
