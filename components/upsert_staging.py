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
    the transaction rolls back: the target is untouched and the staging table is kept for inspection. The SQL
    lives in ``database.promote``.

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
    from database.promote import promote
    from spark_src.common.config import DbConfig

    db = DbConfig.from_url(database_url, password_secret).named("upsert_staging", run_id)
    promotion = promote(db, staging_table, target_table, key_columns, update_columns, drop_staging)
    promoted.uri = db.table_uri(target_table)
    promoted.metadata.update(
        {
            "table": target_table,
            "staging_table": staging_table,
            "run_id": run_id,
            "staging_rows": promotion.staging_rows,
            "inserted": promotion.inserted,
            "updated": promotion.updated,
            "unchanged": promotion.unchanged,
        }
    )
