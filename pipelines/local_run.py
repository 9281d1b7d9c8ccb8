"""Runs the pipeline on this machine with ``kfp.local`` (SubprocessRunner, in the current environment)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from pipelines.settings import LOCAL_DIR
from spark_src.common.config import DbConfig

RUNS_DIR = LOCAL_DIR / "runs"
# Compiled task names (KFP numbers repeated components: upsert-staging, upsert-staging-2, …).
METRICS_TASK = "run-pool-metrics-local"
LEGACY_METRICS_TASK = "run-legacy-metrics"
PARITY_TASK = "evaluate-metrics-parity"
METRICS_UPSERT_TASK = "upsert-staging"
FORECAST_TASK = "run-forecast-local"
FORECAST_UPSERT_TASK = "upsert-staging-2"
LAST_TASK = "evaluate-forecasts"


@dataclass(frozen=True)
class LocalRun:
    """A local run's folder: every task's ``executor_output.json`` (artifact URIs, metadata, parameters)."""

    run_dir: Path

    def tasks(self) -> dict[str, dict]:
        """{task name: {"artifacts": {name: {"uri", "metadata"}}, "parameters": {...}}} of the tasks that ran."""
        found = {}
        for output in sorted(self.run_dir.glob("*/executor_output.json")):
            raw = json.loads(output.read_text())
            artifacts = {
                name: {
                    "uri": entry["artifacts"][0].get("uri", ""),
                    "metadata": entry["artifacts"][0].get("metadata", {}),
                }
                for name, entry in raw.get("artifacts", {}).items()
            }
            found[output.parent.name] = {"artifacts": artifacts, "parameters": raw.get("parameterValues", {})}
        return found

    def artifact(self, task: str, name: str) -> dict | None:
        """The artifact ``name`` of ``task`` (the compiled task name, e.g. ``upsert-staging-2``), if it ran."""
        return self.tasks().get(task, {}).get("artifacts", {}).get(name)

    def metadata(self, task: str, name: str) -> dict:
        artifact = self.artifact(task, name)
        if artifact is None:
            raise KeyError(f"task {task} has no output {name} in {self.run_dir}")
        return artifact["metadata"]

    def lineage(self) -> list[dict]:
        """The run's lineage artifacts (tables and model): task, uri and metadata, in task order."""
        found = []
        for task, outputs in self.tasks().items():
            if task.startswith(("record-table", "record-model")):
                for name, artifact in outputs["artifacts"].items():
                    found.append({"task": task, "artifact": name, **artifact})
        return found

    def file(self, task: str, name: str) -> Path | None:
        """Local path of a file artifact (e.g. a Markdown report), also of a task that failed."""
        task_dir = self.run_dir / task
        return next((p for p in sorted(task_dir.rglob(name)) if p.is_file()), None) if task_dir.is_dir() else None


class LocalRunFailed(RuntimeError):
    """A local run that failed; ``next_step`` says where to read why (the reports it left)."""

    def __init__(self, run: LocalRun, cause: BaseException):
        super().__init__(f"the local pipeline run failed: {cause}")
        self.run = run
        reports = [str(path) for task in (PARITY_TASK, LAST_TASK) if (path := run.file(task, "report"))]
        self.next_step = f"read the reports {', '.join(reports)}" if reports else f"look into {run.run_dir}"


class NoLocalRun(FileNotFoundError):
    """No local run folder exists yet."""


def run_local(
    db: DbConfig,
    *,
    start: str = "",
    end: str = "",
    compare_with_legacy: bool = True,
    runs_dir: Path = RUNS_DIR,
    **pipeline_params,
) -> LocalRun:
    """Runs the local variant of the pipeline against ``db``; each run gets its own pipeline-root folder.

    ``pipeline_params`` are further parameters of :func:`pipelines.pool_pipeline.pool_pipeline`.

    Raises:
        LocalRunFailed: a task failed (its outputs written so far, e.g. the parity report, stay readable).
    """
    from kfp import local

    from pipelines.pool_pipeline import pool_pipeline

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    pipeline_root = runs_dir / f"{stamp}-{secrets.token_hex(3)}"
    pipeline_root.mkdir(parents=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    try:
        pool_pipeline(
            database_url=db.url,
            password_secret=db.password_secret,
            start=start,
            end=end,
            compare_with_legacy=compare_with_legacy,
            **pipeline_params,
        )
    except Exception as err:  # kfp.local raises RuntimeError for a failed task
        raise LocalRunFailed(_single_run(pipeline_root), err) from err
    run = _single_run(pipeline_root)
    # Do not trust the reported status alone (kubeflow/pipelines#13332): the promotion must have written output.
    if run.artifact(LAST_TASK, "forecast_metrics") is None:
        raise LocalRunFailed(run, RuntimeError(f"the last task ({LAST_TASK}) left no output"))
    return run


def latest_run(runs_dir: Path = RUNS_DIR) -> LocalRun:
    """The most recent local run."""
    runs = sorted(p for p in runs_dir.glob("*/*") if p.is_dir())
    if not runs:
        raise NoLocalRun(f"no local run under {runs_dir}")
    return LocalRun(runs[-1])


def _single_run(pipeline_root: Path) -> LocalRun:
    children = [p for p in pipeline_root.iterdir() if p.is_dir()]
    return LocalRun(children[0] if len(children) == 1 else pipeline_root)


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
