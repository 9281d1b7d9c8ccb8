"""Runs the legacy pandas pool-metrics job into a shadow table: the reference the parity gate compares with."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def run_legacy_metrics(
    database_url: str,
    shadow: dsl.Output[dsl.Dataset],
    shadow_table: str,
    start: str = "",
    end: str = "",
    now: str = "",
    password_secret: str = "env:DB_PASSWORD",
    run_id: str = "",
    enabled: bool = True,
) -> None:
    """Computes the run's date range with the legacy pandas job into a shadow table (the range is replaced).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        shadow: Output; uri names the shadow table, metadata is the legacy job's summary.
        shadow_table: The run's own shadow table (``stg_legacy_metrics_<run_id>``, created here with the
            production schema); never shared between runs, never the production table.
        start: First day (ISO date) or empty for all.
        end: Last day (ISO date, inclusive) or empty for all.
        now: The run's clock (ISO timestamp, the run context's): later observations are rejected; empty: the
            job's own clock.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        run_id: The pipeline run, recorded in the output's metadata.
        enabled: False skips the job (``compare_with_legacy=False``); the output's metadata says so.
    """
    import datetime as dt

    from legacy.calculate_pool_metrics import run
    from spark_src.common import time_bounds
    from spark_src.common.config import DbConfig

    db = DbConfig.from_url(database_url, password_secret)
    shadow.uri = db.table_uri(shadow_table)
    if not enabled:
        shadow.metadata.update({"skipped": True, "run_id": run_id})
        return
    summary = run(
        db,
        start=dt.date.fromisoformat(start) if start else None,
        end=dt.date.fromisoformat(end) if end else None,
        now=time_bounds.parse_now(now),
        target_table=shadow_table,
        replace_range=True,
        run_id=run_id,
    )
    shadow.metadata.update({**summary, "run_id": run_id})
