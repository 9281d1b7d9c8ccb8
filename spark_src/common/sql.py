"""SQL names and connections shared by the jobs, the components and the tooling.

Pure Python at import (no pyspark, no SQLAlchemy): the Dataproc jobs import the identifier check, and only
callers of :func:`connect`, :func:`transaction` and :func:`table_exists` need SQLAlchemy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from spark_src.common.config import DbConfig

# Plain lower-case PostgreSQL identifiers (at most 63 bytes): the only names built into SQL text.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_identifier(name: str) -> str:
    """``name`` if it is a plain lower-case SQL identifier, else a ValueError naming it."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    return name


def check_identifiers(*names: str) -> None:
    for name in names:
        check_identifier(name)


def table_exists(conn: Connection, table: str) -> bool:
    """Whether ``table`` (a plain identifier, checked) resolves on ``conn``'s search path: the table that the
    unqualified name in the SQL that follows the check would reach."""
    from sqlalchemy import text

    return conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{check_identifier(table)}"'}).scalar() is not None


@contextmanager
def engine(db: DbConfig, **options) -> Iterator[Engine]:
    """A SQLAlchemy engine for ``db`` (``options`` go to ``create_engine``), disposed of (its pooled connections
    closed) on exit.

    Its sessions carry the settings of :mod:`spark_src.common.pg` (``application_name`` of ``db``, timeouts,
    keepalives); without ``options`` its connect is also retried on a transient error.
    """
    from sqlalchemy import create_engine

    from spark_src.common import pg

    created = create_engine(db.sqlalchemy_url(), **options) if options else pg.create_engine(db)
    try:
        yield created
    finally:
        created.dispose()


@contextmanager
def connect(db: DbConfig) -> Iterator[Connection]:
    """One connection to ``db`` (no transaction opened for the caller), the engine disposed of on exit."""
    with engine(db) as created, created.connect() as conn:
        yield conn


@contextmanager
def transaction(db: DbConfig) -> Iterator[Connection]:
    """One connection in a transaction (committed on success, rolled back on error), the engine disposed of."""
    with engine(db) as created, created.begin() as conn:
        yield conn
