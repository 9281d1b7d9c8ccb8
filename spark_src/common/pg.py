"""How every connection of the platform talks to PostgreSQL: who it is, how long it may wait, and what happens
when the server cannot be reached.

- Identity: ``application_name = <component>:<run_id>`` (``pg_stat_activity`` shows which run holds a lock).
- Timeouts on every transaction of the session: ``lock_timeout`` (a writer queued behind another fails after
  :data:`LOCK_TIMEOUT_MS` instead of waiting forever), ``statement_timeout``, and
  ``idle_in_transaction_session_timeout``.
- A dead client is noticed by the server: TCP keepalives on both ends and ``client_connection_check_interval``
  (a session whose client was killed while it waited on a lock is ended, not left queued ahead of others).
- Connecting is retried :data:`CONNECT_ATTEMPTS` times with exponential backoff on a transient error
  (refused, reset, server starting or shutting down, too many clients), then fails with one line:
  :class:`DatabaseUnavailable`.

The same settings reach psycopg2 (SQLAlchemy engines) and JDBC (the Spark jobs pass them as connection
properties from their own arguments, so a Dataproc batch gets them too). Pure Python: sqlalchemy and psycopg2 are
imported inside the functions that use them (the Dataproc runtime has neither).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from spark_src.common.sql import check_identifier

__all__ = ["check_identifier"]  # the one identifier check, re-exported for the callers of this module

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from spark_src.common.config import DbConfig

log = logging.getLogger(__name__)

LOCK_TIMEOUT_MS = 60_000
STATEMENT_TIMEOUT_MS = 30 * 60_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 10 * 60_000
CLIENT_CONNECTION_CHECK_MS = 5_000
CONNECT_TIMEOUT_S = 10
KEEPALIVES_IDLE_S, KEEPALIVES_INTERVAL_S, KEEPALIVES_COUNT = 30, 10, 3
CONNECT_ATTEMPTS = 4
BACKOFF_S = 1.0  # 1, 2, 4 s between the attempts

T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached after the bounded retries (the message is one line)."""


def application_name(component: str, run_id: str = "") -> str:
    """``<component>:<run_id>``, cut to PostgreSQL's 63 bytes."""
    return (f"{component}:{run_id}" if run_id else component)[:63]


def server_options(
    lock_timeout_ms: int = LOCK_TIMEOUT_MS, statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
) -> dict[str, str]:
    """The session's server settings (the same for psycopg2 and JDBC)."""
    return {
        "lock_timeout": str(lock_timeout_ms),
        "statement_timeout": str(statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS),
        "client_connection_check_interval": str(CLIENT_CONNECTION_CHECK_MS),
        "tcp_keepalives_idle": str(KEEPALIVES_IDLE_S),
        "tcp_keepalives_interval": str(KEEPALIVES_INTERVAL_S),
        "tcp_keepalives_count": str(KEEPALIVES_COUNT),
    }


def _options_string(options: dict[str, str]) -> str:
    return " ".join(f"-c {key}={value}" for key, value in options.items())


def psycopg2_connect_args(name: str, **timeouts: int) -> dict[str, object]:
    """Keyword arguments of ``psycopg2.connect`` (libpq) for a session named ``name``."""
    return {
        "application_name": name,
        "options": _options_string(server_options(**timeouts)),
        "connect_timeout": CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE_S,
        "keepalives_interval": KEEPALIVES_INTERVAL_S,
        "keepalives_count": KEEPALIVES_COUNT,
    }


def jdbc_properties(name: str, **timeouts: int) -> dict[str, str]:
    """pgjdbc connection properties (Spark hands unknown JDBC options to the driver) for a session ``name``."""
    return {
        "ApplicationName": name,
        "options": _options_string(server_options(**timeouts)),
        "connectTimeout": str(CONNECT_TIMEOUT_S),
        "tcpKeepAlive": "true",
    }


# psycopg2: no SQLSTATE = the connection itself failed; class 08 = connection exception; 57P01-03 = the server
# is shutting down or starting; 53300 = too many connections. Everything else (syntax, lock timeout) is not.
_TRANSIENT_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}
# The same conditions as pgjdbc words them (a Py4JJavaError's text in the Spark jobs).
_TRANSIENT_JDBC = re.compile(
    r"Connection to \S+ refused|The connection attempt failed|Connection reset|"
    r"the database system is (starting up|shutting down)|terminating connection due to administrator command|"
    r"sorry, too many clients already|SQLState: 08",
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a connection failure that a retry may cure."""
    try:
        import psycopg2
    except ImportError:  # the Dataproc runtime: only JDBC errors occur there
        psycopg2 = None
    if psycopg2 is not None and isinstance(error, psycopg2.OperationalError):
        code = error.pgcode
        return code is None or code.startswith("08") or code in _TRANSIENT_SQLSTATES
    return bool(_TRANSIENT_JDBC.search(str(error)))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def with_retries(
    action: Callable[[], T],
    *,
    what: str,
    attempts: int | None = None,
    backoff_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Runs ``action``; on a transient error retries it up to ``attempts`` times in all, waiting ``backoff_s``,
    2 and 4 times that in between. Raises :class:`DatabaseUnavailable` (one line) when they are used up; other errors
    propagate at once. Defaults: :data:`CONNECT_ATTEMPTS`, :data:`BACKOFF_S`."""
    attempts = CONNECT_ATTEMPTS if attempts is None else attempts
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt == attempts:
                raise DatabaseUnavailable(
                    f"{what}: database unreachable after {attempts} attempts: {first_line(error)}"
                ) from None
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.0f s",
                what,
                attempt,
                attempts,
                first_line(error),
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")


def create_engine(db: DbConfig, component: str = "", run_id: str = "", **timeouts: int) -> Engine:
    """A SQLAlchemy engine whose every connection carries the session settings and retries its connect.

    Args:
        db: Where the database is; the password is resolved from its secret reference.
        component: The component or job, for ``application_name`` (default: ``db.application_name``).
        run_id: The pipeline run, for ``application_name``.
        **timeouts: ``lock_timeout_ms`` / ``statement_timeout_ms`` overrides.
    """
    import psycopg2
    import sqlalchemy

    url = db.sqlalchemy_url()
    name = application_name(component, run_id) if component else (db.application_name or "defi-pipeline")
    connect_args = psycopg2_connect_args(name, **timeouts)

    def connect():
        return with_retries(
            lambda: psycopg2.connect(
                host=url.host,
                port=url.port,
                dbname=url.database,
                user=url.username,
                password=url.password,
                **connect_args,
            ),
            what=f"{name} connecting to {db.url}",
        )

    return sqlalchemy.create_engine("postgresql+psycopg2://", creator=connect)


@contextmanager
def engine(db: DbConfig, component: str = "", run_id: str = "", **timeouts: int) -> Iterator[Engine]:
    """:func:`create_engine`, disposed of on exit."""
    eng = create_engine(db, component, run_id, **timeouts)
    try:
        yield eng
    finally:
        eng.dispose()


def advisory_lock_key(target_table: str) -> str:
    """The text whose ``hashtext`` names the advisory lock that serialises promotions into ``target_table``."""
    return f"promote:{target_table}"


def lock_for_promotion(conn, target_table: str) -> None:
    """Takes the transaction-scoped advisory lock of ``target_table`` (SQLAlchemy connection, in a transaction):
    overlapping promotions into one table queue here (up to ``lock_timeout``), they never interleave."""
    from sqlalchemy import text

    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": advisory_lock_key(target_table)})
