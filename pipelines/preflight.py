"""Checks made before a local run starts kfp.local: a dead database should cost one line and a second, not a
226-line traceback from the first task a minute later."""

from __future__ import annotations

import re
from collections.abc import Sequence

from spark_src.common import sql
from spark_src.common.config import DbConfig

# The tables a run reads or writes (database/schema.sql); the raw ones are filled upstream.
REQUIRED_TABLES = (
    "pools",
    "raw_defillama_pool_history",
    "raw_coinmarketcap_ohlcv",
    "gas_fees_daily",
    "pool_daily_metrics",
    "pool_forecast_history",
    "pipeline_runs",
)


class DatabaseUnreachable(ConnectionError):
    """The database of a run cannot be reached, refuses the login, or lacks the platform's tables."""

    def __init__(self, url: str, reason: str, next_step: str):
        super().__init__(f"cannot use the database {url}: {reason}")
        self.next_step = next_step


def check_database(db: DbConfig, required_tables: Sequence[str] = REQUIRED_TABLES, timeout_seconds: int = 5) -> None:
    """Connects to ``db`` (resolving its password) and checks that ``required_tables`` exist.

    Raises:
        ConfigError: the password's secret reference cannot be resolved (e.g. ``DB_PASSWORD`` unset).
        DatabaseUnreachable: no connection within ``timeout_seconds``, login refused, or tables missing.
    """
    from sqlalchemy.exc import DBAPIError

    try:
        with sql.engine(db, connect_args={"connect_timeout": timeout_seconds}) as engine, engine.connect() as conn:
            missing = [table for table in required_tables if not sql.table_exists(conn, table)]
    except DBAPIError as err:
        raise DatabaseUnreachable(
            db.url,
            _first_line(err.orig if err.orig is not None else err),
            "check that the server is up and DB_URL (or DB_HOST/DB_PORT/DB_NAME/DB_USER) and DB_PASSWORD are right",
        ) from None
    if missing:
        raise DatabaseUnreachable(
            db.url,
            f"tables missing: {', '.join(missing)}",
            "create them with database/schema.sql (idempotent) and fill the raw tables",
        )


def _first_line(err: BaseException) -> str:
    """psycopg2 messages span lines (host, port, hints); the first line names the cause. Never a password:
    libpq does not echo it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[0]) if lines else type(err).__name__
