"""The registry of pipeline runs (``pipeline_runs``) and the cleanup of what unfinished runs left behind.

Every run registers itself first (status ``running``) and closes itself last (``succeeded``). Every object a run
creates for itself is named after it: tables ``stg_*_<run_id>`` (Spark staging, forecast and backtest staging,
the legacy shadow), rows of ``pool_forecast_history`` with its ``run_id``, and its model directory. A run that is
still ``running`` after ``stale_after_minutes`` was killed or crashed (or failed a gate): the next run's
cleanup drops its tables, deletes its forecast history rows, removes its model directory and marks it
``cleaned``, with the counts in the registry and in the run summary.

The age threshold must exceed the longest healthy run: a younger unfinished run may still be working.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from spark_src.common.pg import check_identifier

log = logging.getLogger(__name__)

STAGING_PREFIX = "stg_"
FORECAST_HISTORY_TABLE = "pool_forecast_history"
DEFAULT_STALE_AFTER_MINUTES = 360
# What components.run_context makes of a pipeline job id: lower-case letters and digits, at most 40.
_RUN_ID = re.compile(r"[a-z0-9]{1,40}")


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"not a run id (1 to 40 lower-case letters and digits): {run_id!r}")
    return run_id


def register_run(engine: Engine, run_id: str, model_dir: str = "") -> None:
    """Records ``run_id`` as running (a retried first step keeps the first start time)."""
    check_run_id(run_id)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pipeline_runs (run_id, status, model_dir) VALUES (:run_id, 'running', :model_dir) "
                "ON CONFLICT (run_id) DO NOTHING"
            ),
            {"run_id": run_id, "model_dir": model_dir},
        )


def run_tables(conn: Connection, run_id: str) -> list[str]:
    """The run's own tables: ``stg_*_<run_id>`` in the public schema."""
    check_run_id(run_id)
    return list(
        conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND starts_with(tablename, :prefix) AND right(tablename, :n) = :suffix ORDER BY 1"
            ),
            {"prefix": STAGING_PREFIX, "n": len(run_id) + 1, "suffix": f"_{run_id}"},
        ).scalars()
    )


def _drop_tables(conn: Connection, tables: list[str]) -> None:
    for table in tables:
        conn.execute(text(f'DROP TABLE IF EXISTS "{check_identifier(table)}"'))


def finish_run(engine: Engine, run_id: str) -> dict[str, int]:
    """Drops the run's remaining temporary tables (e.g. its legacy shadow) and marks it ``succeeded``."""
    with engine.begin() as conn:
        tables = run_tables(conn, run_id)
        _drop_tables(conn, tables)
        conn.execute(
            text(
                "INSERT INTO pipeline_runs (run_id, status, finished_at) VALUES (:run_id, 'succeeded', now()) "
                "ON CONFLICT (run_id) DO UPDATE SET status = 'succeeded', finished_at = now()"
            ),
            {"run_id": run_id},
        )
    log.info("run %s succeeded; dropped its remaining temporary tables %s", run_id, tables)
    return {"tables_dropped": len(tables)}


def remove_model_dir(uri: str) -> bool:
    """Deletes a model directory (local path or ``gs://bucket/prefix``); False when there was nothing."""
    if not uri:
        return False
    if uri.startswith("gs://"):
        from google.cloud import storage

        bucket_name, _, prefix = uri[len("gs://") :].partition("/")
        bucket = storage.Client().bucket(bucket_name)
        blobs = list(bucket.list_blobs(prefix=prefix.rstrip("/") + "/"))
        for blob in blobs:
            blob.delete()
        return bool(blobs)
    path = Path(uri)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def clean_up_abandoned_runs(
    engine: Engine,
    current_run_id: str,
    stale_after_minutes: int = DEFAULT_STALE_AFTER_MINUTES,
    remove_dir: Callable[[str], bool] = remove_model_dir,
) -> dict[str, int]:
    """Removes what runs that did not finish within ``stale_after_minutes`` left behind; marks them ``cleaned``.

    Each abandoned run is cleaned in its own transaction (its row locked, ``SKIP LOCKED``: two cleanups never
    clean one run twice). Unregistered ``stg_*`` tables (not made by a pipeline run) are counted, not dropped.

    Returns:
        ``runs_cleaned``, ``tables_dropped``, ``history_rows_deleted``, ``model_dirs_removed``,
        ``unregistered_staging_tables``.
    """
    check_run_id(current_run_id)
    if stale_after_minutes < 0:
        raise ValueError(f"stale_after_minutes must be >= 0, got {stale_after_minutes}")
    totals = dict.fromkeys(("runs_cleaned", "tables_dropped", "history_rows_deleted", "model_dirs_removed"), 0)
    with engine.connect() as conn:
        candidates = list(
            conn.execute(
                text(
                    "SELECT run_id FROM pipeline_runs WHERE status = 'running' AND run_id <> :current "
                    "AND started_at < now() - make_interval(mins => :minutes) ORDER BY started_at"
                ),
                {"current": current_run_id, "minutes": stale_after_minutes},
            ).scalars()
        )
    for run_id in candidates:
        with engine.begin() as conn:
            model_dir = conn.execute(
                text(
                    "SELECT model_dir FROM pipeline_runs WHERE run_id = :run_id AND status = 'running' "
                    "FOR UPDATE SKIP LOCKED"
                ),
                {"run_id": run_id},
            ).scalar()
            if model_dir is None:  # cleaned or finished meanwhile, or another cleanup holds it
                continue
            tables = run_tables(conn, run_id)
            _drop_tables(conn, tables)
            history_rows = conn.execute(
                text(f"DELETE FROM {FORECAST_HISTORY_TABLE} WHERE run_id = :run_id"), {"run_id": run_id}
            ).rowcount
            removed = remove_dir(model_dir)
            counts = {"tables_dropped": len(tables), "history_rows_deleted": history_rows, "model_dir_removed": removed}
            conn.execute(
                text(
                    "UPDATE pipeline_runs SET status = 'cleaned', finished_at = now(), "
                    "cleanup = CAST(:cleanup AS jsonb) WHERE run_id = :run_id"
                ),
                {"run_id": run_id, "cleanup": json.dumps({**counts, "by_run": current_run_id})},
            )
        log.info("cleaned abandoned run %s: %s", run_id, counts)
        totals["runs_cleaned"] += 1
        totals["tables_dropped"] += len(tables)
        totals["history_rows_deleted"] += history_rows
        totals["model_dirs_removed"] += int(removed)
    with engine.connect() as conn:
        totals["unregistered_staging_tables"] = conn.execute(
            text(
                "SELECT count(*) FROM pg_tables t WHERE t.schemaname = 'public' AND starts_with(t.tablename, :prefix) "
                "AND NOT EXISTS (SELECT 1 FROM pipeline_runs r WHERE right(t.tablename, length(r.run_id) + 1) "
                "= '_' || r.run_id)"
            ),
            {"prefix": STAGING_PREFIX},
        ).scalar_one()
    return totals
