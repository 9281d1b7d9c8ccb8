"""The run's first and last database steps: register the run and clean up after abandoned ones; close the run.

Thin adapters over :mod:`database.run_registry`.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def start_run(
    database_url: str,
    run_id: str,
    cleanup: dsl.Output[dsl.Artifact],
    model_dir: str = "",
    stale_after_minutes: int = 360,
    password_secret: str = "env:DB_PASSWORD",
) -> None:
    """Registers the run as running, then removes what abandoned runs left behind.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run.
        cleanup: Output; metadata counts the runs cleaned, tables dropped, forecast history rows deleted, model
            directories removed and unregistered ``stg_*`` tables seen.
        model_dir: The run's model directory (removed by a later cleanup if this run never finishes).
        stale_after_minutes: A run still running after this many minutes is abandoned (longer than any run).
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    from database.run_registry import clean_up_abandoned_runs, register_run
    from spark_src.common import pg
    from spark_src.common.config import DbConfig

    with pg.engine(DbConfig.from_url(database_url, password_secret), "start_run", run_id) as engine:
        register_run(engine, run_id, model_dir)
        counts = clean_up_abandoned_runs(engine, run_id, stale_after_minutes)
    cleanup.metadata.update({**counts, "run_id": run_id})


@dsl.component(base_image=component_base_image())
def finish_run(database_url: str, run_id: str, password_secret: str = "env:DB_PASSWORD") -> None:
    """Drops the run's remaining temporary tables (its legacy shadow) and marks it succeeded.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
    """
    from database.run_registry import finish_run as close_run
    from spark_src.common import pg
    from spark_src.common.config import DbConfig

    with pg.engine(DbConfig.from_url(database_url, password_secret), "finish_run", run_id) as engine:
        close_run(engine, run_id)
