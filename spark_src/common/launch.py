"""Runs a spark_src job in this process (local mode), as a Dataproc batch would run its entry file."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

from spark_src.common.config import DbConfig

JOBS = ("pool_metrics", "forecast")


def run_job(job: str, argv: Sequence[str], db: DbConfig) -> dict:
    """Calls ``spark_src.<job>.main.main(argv)`` with the DB_* environment of ``db``; returns its summary."""
    if job not in JOBS:
        raise ValueError(f"unknown spark_src job {job!r}; expected one of {list(JOBS)}")
    os.environ.update(db.env())
    return importlib.import_module(f"spark_src.{job}.main").main([str(a) for a in argv])
