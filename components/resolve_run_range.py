"""Fixes the days a run computes, once, so the Spark job, the legacy shadow and the parity gate cover the same."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def resolve_run_range(
    database_url: str,
    run_range: dsl.Output[dsl.Artifact],
    mode: str = "incremental",
    start: str = "",
    end: str = "",
    late_days: int = 2,
    now: str = "",
    password_secret: str = "env:DB_PASSWORD",
) -> NamedTuple("RunRange", start=str, end=str, mode=str):
    """Resolves the run's [start, end] from the database (see ``spark_src.pool_metrics.run_range``).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_range: Output; metadata holds the mode, the days, why, and what the database held.
        mode: ``incremental`` (default): from the last promoted day minus ``late_days`` to the latest day with
            data; ``range``: a backfill of [start, end]; ``full``: every day with data.
        start: First day of a backfill (ISO date; ``mode=range`` only); empty: the first day with data.
        end: Last day of a backfill (ISO date, inclusive; ``mode=range`` only); empty: the latest day with data.
        late_days: Days before the last promoted day that an incremental run recomputes, for observations
            that arrive late or are corrected upstream.
        now: The run's clock (ISO timestamp, the run context's): no day after its UTC date; empty: this step's.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).

    Returns:
        start: First day the run computes (ISO date).
        end: Last day the run computes (ISO date, inclusive).
        mode: The mode that resolved them.
    """
    from collections import namedtuple

    from spark_src.common import time_bounds
    from spark_src.common.config import DbConfig
    from spark_src.common.sql import connect
    from spark_src.pool_metrics import run_range as rr

    with connect(DbConfig.from_url(database_url, password_secret).named("resolve_run_range")) as conn:
        bounds = rr.fetch_bounds(conn, today=time_bounds.parse_now(now).date())
    resolved = rr.resolve(mode, start, end, late_days, bounds)
    run_range.metadata.update(
        {**resolved.as_dict(), "late_days": late_days, **{k: str(v) for k, v in bounds.__dict__.items()}}
    )
    print(f"run range: {resolved.start}..{resolved.end} ({resolved.days} days, {mode}): {resolved.reason}")
    return namedtuple("RunRange", ["start", "end", "mode"])(
        resolved.start.isoformat(), resolved.end.isoformat(), resolved.mode
    )
