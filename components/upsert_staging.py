"""Promotes a run's staging table into a target table in one transaction, then drops the staging table.

One component for every promotion of the pipeline: the metrics upsert updates the metric columns, the
forecast upsert the ``forecasted_*`` columns; neither touches the other's columns.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def upsert_staging(
    database_url: str,
    staging_table: str,
    target_table: str,
    update_columns: list,
    promoted: dsl.Output[dsl.Dataset],
    key_columns: list = ["pool_id", "date"],  # KFP compiles the default; it is not a shared mutable
    password_secret: str = "env:DB_PASSWORD",
    run_id: str = "",
    drop_staging: bool = True,
) -> None:
    """Upserts ``staging_table`` into ``target_table`` and drops the staging table, all in one transaction.

    Rows whose key is new are inserted; rows whose ``update_columns`` differ are updated (and their
    ``updated_at`` set); rows with identical values are not rewritten. Columns not named in
    ``update_columns`` (for example ``forecasted_*`` during a metrics upsert) are never changed. On any error
    the transaction rolls back: the target is untouched and the staging table is kept for inspection.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        staging_table: The run's staging table (written by a Spark job).
        target_table: The table to promote into, e.g. ``pool_daily_metrics``.
        update_columns: Columns copied from staging (inserted, and updated on conflict).
        promoted: Output; uri names the target table, metadata counts inserted/updated/unchanged rows.
        key_columns: The target's conflict key.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        run_id: The pipeline run, recorded in the output's metadata.
        drop_staging: Drop the staging table in the same transaction (False when another upsert reads it next).
    """
    import logging
    import re

    from sqlalchemy import create_engine, text

    from spark_src.common.config import DbConfig

    log = logging.getLogger("upsert_staging")
    identifier = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
    for name in [staging_table, target_table, *key_columns, *update_columns]:
        if not identifier.match(name):
            raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    if not update_columns:
        raise ValueError("update_columns is empty: nothing to promote")
    overlap = set(key_columns) & set(update_columns)
    if overlap:
        raise ValueError(f"key columns cannot be updated: {sorted(overlap)}")

    db = DbConfig.from_url(database_url, password_secret)
    columns = [*key_columns, *update_columns]
    column_list = ", ".join(f'"{c}"' for c in columns)
    keys = ", ".join(f'"{c}"' for c in key_columns)
    target_values = ", ".join(f't."{c}"' for c in update_columns)
    new_values = ", ".join(f'EXCLUDED."{c}"' for c in update_columns)
    assignments = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in update_columns)
    # Row constructors need two or more fields; ROW() makes the one-column case work too.
    upsert_sql = f"""
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

    engine = create_engine(db.sqlalchemy_url())
    try:
        with engine.begin() as conn:
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": f'public."{staging_table}"'}).scalar() is None:
                raise RuntimeError(f"staging table {staging_table} does not exist (did the Spark step write it?)")
            staging_rows, distinct_keys = conn.execute(
                text(f'SELECT count(*), count(DISTINCT ({keys})) FROM "{staging_table}"')
            ).one()
            if staging_rows != distinct_keys:
                raise RuntimeError(
                    f"{staging_table} holds {staging_rows - distinct_keys} duplicate ({keys}) keys; nothing promoted"
                )
            inserted, updated = conn.execute(text(upsert_sql)).one()
            if drop_staging:
                conn.execute(text(f'DROP TABLE "{staging_table}"'))
    finally:
        engine.dispose()

    unchanged = staging_rows - inserted - updated
    log.info(
        "%s -> %s: %d inserted, %d updated, %d unchanged", staging_table, target_table, inserted, updated, unchanged
    )
    promoted.uri = db.table_uri(target_table)
    promoted.metadata.update(
        {
            "table": target_table,
            "staging_table": staging_table,
            "run_id": run_id,
            "staging_rows": staging_rows,
            "inserted": inserted,
            "updated": updated,
            "unchanged": unchanged,
        }
    )
