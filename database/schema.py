"""Creates the platform's tables (idempotent)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

SCHEMA_SQL = Path(__file__).with_name("schema.sql")


def init_schema(engine: Engine) -> None:
    """Runs ``schema.sql`` in one transaction; every statement is ``IF NOT EXISTS``."""
    with engine.begin() as conn:
        conn.exec_driver_sql(SCHEMA_SQL.read_text())
