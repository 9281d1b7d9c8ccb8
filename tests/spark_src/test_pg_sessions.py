"""Session settings, identity, retries and the promotion lock of every PostgreSQL connection (spark_src.common.pg).

The retry tests use a fake sleep and errors built in the test; the others talk to the real embedded PostgreSQL.
"""

from __future__ import annotations

import socket
import threading
import time

import psycopg2
import pytest
from sqlalchemy import text

from spark_src.common import pg
from spark_src.common.config import DbConfig


class _Transient(Exception):
    def __str__(self) -> str:
        return "Connection to 10.0.0.5:5432 refused. Check that the hostname and port are correct\nmore detail"


def test_a_transient_error_is_retried_with_backoff_then_fails_with_one_line():
    waits: list[float] = []
    calls = []

    def always_refused():
        calls.append(1)
        raise _Transient()

    with pytest.raises(pg.DatabaseUnavailable) as failure:
        pg.with_retries(always_refused, what="upsert_staging:r1", attempts=4, backoff_s=1.0, sleep=waits.append)
    assert len(calls) == 4
    assert waits == [1.0, 2.0, 4.0]
    message = str(failure.value)
    assert "\n" not in message
    assert message == (
        "upsert_staging:r1: database unreachable after 4 attempts: Connection to 10.0.0.5:5432 refused. "
        "Check that the hostname and port are correct"
    )


def test_a_transient_error_that_clears_is_retried_and_the_result_returned():
    outcomes = iter([_Transient(), _Transient(), "ok"])

    def flaky():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    waits: list[float] = []
    assert pg.with_retries(flaky, what="x", attempts=4, backoff_s=0.5, sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0]


def test_a_non_transient_error_is_not_retried():
    calls = []

    def bad_sql():
        calls.append(1)
        raise ValueError("syntax error at or near SELEC")

    with pytest.raises(ValueError, match="SELEC"):
        pg.with_retries(bad_sql, what="x", sleep=lambda _: None)
    assert calls == [1]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("stg_pool_metrics_abc", True),
        ("stg_pool_metrics_abc\n", False),  # "$" of re.match would accept it
        ("Stg", False),
        ("stg; DROP TABLE pools", False),
        ("a" * 63, True),
        ("a" * 64, False),
    ],
)
def test_identifiers_are_checked_with_fullmatch(name, ok):
    if ok:
        assert pg.check_identifier(name) == name
    else:
        with pytest.raises(ValueError, match="not a plain lower-case SQL identifier"):
            pg.check_identifier(name)


def test_jdbc_properties_carry_the_same_session_settings():
    properties = pg.jdbc_properties("pool_metrics:r1")
    assert properties["ApplicationName"] == "pool_metrics:r1"
    assert properties["tcpKeepAlive"] == "true"
    assert "-c lock_timeout=60000" in properties["options"]
    assert "-c statement_timeout=1800000" in properties["options"]
    assert "-c client_connection_check_interval=5000" in properties["options"]


def test_every_session_is_named_and_bounded(db, db_config):
    with pg.engine(db_config, "upsert_staging", "run42") as engine, engine.connect() as conn:
        settings = conn.execute(
            text(
                "SELECT current_setting('application_name'), current_setting('lock_timeout'), "
                "current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'), "
                "current_setting('client_connection_check_interval'), current_setting('tcp_keepalives_idle')"
            )
        ).one()
        seen = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'upsert_staging:run42'")
        ).scalar()
    assert tuple(settings) == ("upsert_staging:run42", "1min", "30min", "10min", "5s", "30")
    assert seen == 1


def test_an_unreachable_database_fails_after_bounded_retries_with_one_line(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("DB_PASSWORD_UNREACHABLE", "s3cret-pw")
    monkeypatch.setattr(pg, "BACKOFF_S", 0.01)
    config = DbConfig("127.0.0.1", port, "defi", "nobody", "env:DB_PASSWORD_UNREACHABLE")
    with pg.engine(config, "resolve_forecast_dates") as engine, pytest.raises(pg.DatabaseUnavailable) as failure:
        engine.connect()
    message = str(failure.value)
    assert message.startswith(
        f"resolve_forecast_dates connecting to postgresql://nobody@127.0.0.1:{port}/defi: "
        "database unreachable after 4 attempts: "
    )
    assert "\n" not in message and "s3cret-pw" not in message


def test_promotions_into_one_table_queue_on_the_advisory_lock(db, db_config):
    """The second promoter waits while the first holds the table's lock, and fails after its lock_timeout."""
    with pg.engine(db_config, "upsert_staging", "first") as first, first.begin() as holder:
        pg.lock_for_promotion(holder, "pool_daily_metrics")
        with pg.engine(db_config, "upsert_staging", "second", lock_timeout_ms=300) as second:
            started = time.monotonic()
            with pytest.raises(psycopg2.errors.LockNotAvailable), second.begin() as waiter:
                try:
                    pg.lock_for_promotion(waiter, "pool_daily_metrics")
                except Exception as err:  # SQLAlchemy wraps the driver error
                    raise err.orig from None
            waited = time.monotonic() - started
            # Another table's lock is free.
            with second.begin() as other:
                pg.lock_for_promotion(other, "pool_forecast_history")
    assert waited >= 0.3


def test_a_queued_promotion_proceeds_when_the_first_commits(db, db_config):
    order: list[str] = []
    with pg.engine(db_config, "upsert_staging", "a") as a, pg.engine(db_config, "upsert_staging", "b") as b:
        with a.begin() as first:
            pg.lock_for_promotion(first, "pool_daily_metrics")

            def second_promoter():
                with b.begin() as second:
                    pg.lock_for_promotion(second, "pool_daily_metrics")
                    order.append("second")

            thread = threading.Thread(target=second_promoter)
            thread.start()
            time.sleep(0.5)
            order.append("first")
        thread.join(timeout=10)
    assert order == ["first", "second"]
