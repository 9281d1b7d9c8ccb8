"""Runs the pipeline on this machine with ``kfp.local`` (SubprocessRunner, in the current environment)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from pipelines.settings import LOCAL_DIR
from spark_src.common.config import DbConfig

PIPELINE_ROOT = LOCAL_DIR / "pipeline_root"


@dataclass(frozen=True)
class LocalRunResult:
    """What a local run produced: the artifacts' URIs and metadata (the run's summary)."""

    outputs: dict[str, dict]

    def metadata(self, name: str) -> dict:
        return self.outputs[name]["metadata"]


def run_local(db: DbConfig, *, start: str = "", end: str = "", pipeline_root: Path = PIPELINE_ROOT) -> LocalRunResult:
    """Runs the local variant of the pipeline against ``db`` and returns its outputs.

    Raises:
        RuntimeError: when a task fails (kfp.local raises by default; we also check the outputs exist,
            since some kfp versions reported failed local tasks as successful, kubeflow/pipelines#13332).
    """
    from kfp import local

    from pipelines.pool_pipeline import pool_pipeline

    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    task = pool_pipeline(database_url=db.url, password_secret=db.password_secret, start=start, end=end)
    outputs = {}
    for name, artifact in task.outputs.items():
        if not artifact.metadata:
            raise RuntimeError(f"pipeline output {name} has no metadata: a task did not complete")
        outputs[name] = {"uri": artifact.uri, "metadata": dict(artifact.metadata)}
    return LocalRunResult(outputs)


def table_fingerprint(engine: Engine, table: str = "pool_daily_metrics") -> tuple[int, str]:
    """(row count, md5 of all rows in key order, ``updated_at`` excluded): equal fingerprints = equal tables."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT to_jsonb(t) - 'updated_at' FROM \"{table}\" t ORDER BY pool_id, date")
        ).scalars()
        digest = hashlib.md5()
        count = 0
        for row in rows:
            digest.update(repr(sorted(row.items())).encode())
            count += 1
    return count, digest.hexdigest()
