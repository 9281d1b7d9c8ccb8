"""Promotion of a run's staging table into a production table: one transaction that upserts the rows and
(optionally) drops the staging table. The ``upsert_staging`` component is its pipeline interface."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from spark_src.common import faults
from spark_src.common.config import DbConfig
from spark_src.common.pg import lock_for_promotion
from spark_src.common.sql import check_identifiers, table_exists, transaction

log = logging.getLogger(__name__)

CARDINALITY_VIOLATION = "21000"  # SQLSTATE: "ON CONFLICT DO UPDATE command cannot affect row a second time"


@dataclass(frozen=True)
class Promotion:
    staging_rows: int
    inserted: int
    updated: int

    @property
    def unchanged(self) -> int:
        return self.staging_rows - self.inserted - self.updated


def upsert_sql(staging_table: str, target_table: str, key_columns: list[str], update_columns: list[str]) -> str:
    """INSERT … ON CONFLICT DO UPDATE that rewrites only rows whose ``update_columns`` differ, and counts the
    inserted and updated rows.

    Raises:
        ValueError: a name is not a plain identifier, nothing is to be updated, or a key column would be.
    """
    check_identifiers(staging_table, target_table, *key_columns, *update_columns)
    if not update_columns:
        raise ValueError("update_columns is empty: nothing to promote")
    overlap = set(key_columns) & set(update_columns)
    if overlap:
        raise ValueError(f"key columns cannot be updated: {sorted(overlap)}")
    column_list = ", ".join(f'"{c}"' for c in [*key_columns, *update_columns])
    keys = ", ".join(f'"{c}"' for c in key_columns)
    target_values = ", ".join(f't."{c}"' for c in update_columns)
    new_values = ", ".join(f'EXCLUDED."{c}"' for c in update_columns)
    assignments = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in update_columns)
    # Row constructors need two or more fields; ROW() makes the one-column case work too.
    return f"""
        WITH upserted AS (
            INSERT INTO "{target_table}" AS t ({column_list})
            SELECT {column_list} FROM "{staging_table}"
            ON CONFLICT ({keys}) DO UPDATE SET {assignments}, updated_at = now()
            WHERE ROW({target_values}) IS DISTINCT FROM ROW({new_values})
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
        FROM upserted
    """


def promote(
    db: DbConfig,
    staging_table: str,
    target_table: str,
    key_columns: list[str],
    update_columns: list[str],
    drop_staging: bool = True,
) -> Promotion:
    """Upserts ``staging_table`` into ``target_table`` (and drops the staging table) in one transaction.

    On any error the transaction rolls back: the target is untouched and the staging table is kept (the cleanup
    step of a later run removes it). Promotions into one target are serialised by a transaction-scoped advisory
    lock: overlapping runs queue, they do not interleave.

    Raises:
        ValueError: see :func:`upsert_sql` (raised before connecting).
        RuntimeError: the staging table is missing or holds a key twice; nothing promoted.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    sql = upsert_sql(staging_table, target_table, key_columns, update_columns)
    try:
        with transaction(db) as conn:
            # Promotions into one target queue here, one transaction at a time (up to lock_timeout).
            lock_for_promotion(conn, target_table)
            if not table_exists(conn, staging_table):
                raise RuntimeError(f"staging table {staging_table} does not exist (did the Spark step write it?)")
            staging_rows = conn.execute(text(f'SELECT count(*) FROM "{staging_table}"')).scalar_one()
            inserted, updated = conn.execute(text(sql)).one()
            if drop_staging:
                conn.execute(text(f'DROP TABLE "{staging_table}"'))
            faults.maybe_kill(f"upsert:{target_table}")
    except DBAPIError as error:
        # A key twice in the staging table: PostgreSQL refuses to let one INSERT … ON CONFLICT touch a row twice
        # (the check costs nothing more than the upsert; a count(DISTINCT) beforehand would sort every row).
        if getattr(error.orig, "pgcode", None) != CARDINALITY_VIOLATION:
            raise
        duplicates = _duplicate_keys(db, staging_table, key_columns)
        keys = ", ".join(f'"{c}"' for c in key_columns)
        raise RuntimeError(f"{staging_table} holds {duplicates} duplicate ({keys}) keys; nothing promoted") from None
    promotion = Promotion(staging_rows, inserted, updated)
    log.info(
        "%s -> %s: %d inserted, %d updated, %d unchanged",
        staging_table,
        target_table,
        inserted,
        updated,
        promotion.unchanged,
    )
    return promotion


def _duplicate_keys(db: DbConfig, staging_table: str, key_columns: list[str]) -> int:
    """How many rows of ``staging_table`` repeat a key (read after the failed promotion rolled back)."""
    from sqlalchemy import text

    keys = ", ".join(f'"{c}"' for c in key_columns)
    with transaction(db) as conn:
        return conn.execute(text(f'SELECT count(*) - count(DISTINCT ({keys})) FROM "{staging_table}"')).scalar_one()
