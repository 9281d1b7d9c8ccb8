"""Runs the pipeline on this machine with ``kfp.local`` (SubprocessRunner, in the current environment); its Spark
steps are Dataproc batches rehearsed from a local copy of the staged code (see :func:`stage_rehearsal`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from sqlalchemy import Engine, text

from pipelines.settings import LOCAL_DIR
from spark_src.common.config import DbConfig

if TYPE_CHECKING:
    from pipelines.run_log import TaskResult

RUNS_DIR = LOCAL_DIR / "runs"
RUN_LOG = "run.log"
# Report artifacts are files named after the output ("report"): copied beside run.log under a name a browser or
# an editor opens, found by the component that writes them (a failed task leaves its report, but no outputs).
REPORTS = {"comp-evaluate-metrics-parity": "parity.md", "comp-evaluate-forecasts": "forecast_report.html"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's failure message names the failed task (colour codes around the quoted name).
_FAILED_TASK = re.compile(r"Inner task failed: (?:\x1b\[[0-9;]*m)?'([^']+)'")


@dataclass(frozen=True)
class Output:
    """One output artifact of a task of a local run."""

    task: str
    name: str
    uri: str
    metadata: dict


@dataclass(frozen=True)
class LocalRun:
    """A local run's folder: every task's ``executor_output.json`` (artifact URIs, metadata, parameters).

    Outputs are found by what they are (the output's name in its component, its metadata: table, staging
    table, role), never by the task names KFP numbers when a component is used twice (``upsert-staging-2``).
    """

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

    def outputs(self, name: str | None = None, **metadata) -> list[Output]:
        """The output artifacts called ``name`` (any name if None) whose metadata holds the given values."""
        return [
            Output(task, artifact_name, artifact["uri"], artifact["metadata"])
            for task, outputs in self.tasks().items()
            for artifact_name, artifact in outputs["artifacts"].items()
            if name in (None, artifact_name)
            and all(artifact["metadata"].get(key) == value for key, value in metadata.items())
        ]

    def find(self, name: str, **metadata) -> Output | None:
        """The one output artifact called ``name`` with that metadata, None if no task wrote it.

        Raises:
            LookupError: several outputs match (the question needs more metadata to be unambiguous).
        """
        found = self.outputs(name, **metadata)
        if len(found) > 1:
            raise LookupError(f"{len(found)} outputs {name} {metadata} in {self.run_dir}: {[o.task for o in found]}")
        return found[0] if found else None

    def metadata(self, name: str, **metadata) -> dict:
        """The metadata of the one output ``name`` (see :meth:`find`); KeyError when no task wrote it."""
        output = self.find(name, **metadata)
        if output is None:
            raise KeyError(f"no output {name} {metadata or ''} in {self.run_dir}")
        return output.metadata

    def sibling(self, output: Output, name: str) -> Output | None:
        """The output ``name`` of the task that wrote ``output`` (e.g. the model beside the forecasts)."""
        artifact = self.tasks().get(output.task, {}).get("artifacts", {}).get(name)
        return Output(output.task, name, artifact["uri"], artifact["metadata"]) if artifact else None

    def parameters(self, *names: str) -> dict:
        """The output parameters of the one task that outputs all of ``names`` ({} if none ran)."""
        found = [t["parameters"] for t in self.tasks().values() if set(names) <= set(t["parameters"])]
        if len(found) > 1:
            raise LookupError(f"{len(found)} tasks output the parameters {names} in {self.run_dir}")
        return found[0] if found else {}

    def context(self) -> dict:
        """The run context: run id, the staging tables, model dir, batch ids."""
        return self.parameters("run_id")

    def promotion(self, staging_output: str, table: str) -> Output | None:
        """The upsert of the run's staging table ``staging_output`` (a run-context output) into ``table``."""
        staging_table = self.context().get(staging_output)
        return self.find("promoted", table=table, staging_table=staging_table) if staging_table else None

    def missing_tasks(self) -> list[str]:
        """The local pipeline's tasks that left no output in this run: none for a run that finished."""
        from pipelines.pool_pipeline import pool_pipeline

        return sorted(set(pool_pipeline.pipeline_spec.root.dag.tasks) - set(self.tasks()))

    def lineage(self) -> list[dict]:
        """The run's lineage artifacts (tables and model): task, uri and metadata, in task order."""
        return [
            {"task": o.task, "artifact": o.name, "uri": o.uri, "metadata": o.metadata}
            for o in self.outputs()
            if (o.name == "dataset" and "role" in o.metadata) or (o.name == "model" and "model_card" in o.metadata)
        ]

    @property
    def root(self) -> Path:
        """The run's own folder under ``.local/runs/`` (``run.log``, ``parity.md``, ``forecast_report.html``);
        kfp.local's folder of the pipeline run, with a folder per task, is inside it."""
        return self.run_dir if (self.run_dir / RUN_LOG).exists() else self.run_dir.parent

    def reports(self) -> dict[str, Path]:
        """The reports copied beside ``run.log`` under readable names (those the run wrote)."""
        from pipelines.pool_pipeline import pool_pipeline

        found = {}
        for task, spec in pool_pipeline.pipeline_spec.root.dag.tasks.items():
            name = REPORTS.get(spec.component_ref.name)
            source = self.file(task, "report") if name else None
            if source is not None:
                target = self.root / name
                if not target.exists():
                    shutil.copyfile(source, target)
                found[name] = target
        return found

    def file(self, task: str, name: str) -> Path | None:
        """Local path of a file artifact (e.g. a Markdown report), also of a task that failed."""
        task_dir = self.run_dir / task
        return next((p for p in sorted(task_dir.rglob(name)) if p.is_file()), None) if task_dir.is_dir() else None


class LocalRunFailed(RuntimeError):
    """A local run that failed: the failed task with its own last error line, and the files to read."""

    def __init__(self, run: LocalRun, cause: BaseException, failed: TaskResult | None = None):
        if failed is not None:
            what = f"the local run failed in task '{failed.display_name}' after {failed.seconds:.0f} s"
            what += f": {failed.error_line}" if failed.error_line else ""
        else:
            what = f"the local pipeline run failed: {_ANSI.sub('', str(cause))}"
        super().__init__(what)
        self.run = run
        self.failed = failed
        match = _FAILED_TASK.search(str(cause))
        # The compiled name of the task that failed, as kfp.local reports it (None if it names none).
        self.failed_task = match.group(1) if match else None
        reads = [str(path) for path in (run.root / RUN_LOG, *run.reports().values()) if path.exists()]
        self.next_step = f"read {', '.join(reads)}" if reads else f"look into {run.run_dir}"


class NoLocalRun(FileNotFoundError):
    """No local run folder exists yet."""


def stage_rehearsal(runtime_profile: str | None = None, gcs_root: Path | None = None) -> dict[str, str]:
    """Packages spark_src and stages it, the entry files and the profile's jars into the rehearsal's stand-in for
    GCS, with the very ``package``/``stage`` code Cloud Build runs; returns the staging plan."""
    from pipelines.deploy import package, stage
    from pipelines.targets import LocalTarget
    from rehearsal.launcher import DEFAULT_GCS_ROOT, LocalGcs

    target = LocalTarget(runtime_profile) if runtime_profile else LocalTarget()
    dist_dir = LOCAL_DIR / "dist"
    package(dist_dir)
    return stage(target.settings, dist_dir, client=LocalGcs(gcs_root or DEFAULT_GCS_ROOT), quiet=True)


def run_local(
    db: DbConfig,
    *,
    start: str = "",
    end: str = "",
    compare_with_legacy: bool = True,
    runs_dir: Path = RUNS_DIR,
    out: TextIO | None = None,
    **pipeline_params,
) -> LocalRun:
    """Runs the local variant of the pipeline against ``db``; each run gets its own pipeline-root folder.

    kfp.local's stream (executor inputs, the tasks' own logs) goes to ``run.log`` in that folder; ``out`` (default:
    stderr) gets one line per finished task (see :mod:`pipelines.run_log`). ``pipeline_params`` are further
    parameters of :func:`pipelines.pool_pipeline.pool_pipeline`.

    Raises:
        LocalRunFailed: a task failed (its outputs written so far, e.g. the parity report, stay readable).
    """
    from google.protobuf import json_format
    from kfp import local

    from pipelines import run_log
    from pipelines.pool_pipeline import pool_pipeline

    stage_rehearsal()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    pipeline_root = runs_dir / f"{stamp}-{secrets.token_hex(3)}"
    pipeline_root.mkdir(parents=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    names = run_log.display_names(json_format.MessageToDict(pool_pipeline.pipeline_spec))
    out = out or sys.stderr
    out.write(f"  full log: {pipeline_root / RUN_LOG}\n")  # to follow a long step with tail -f
    with run_log.capture(pipeline_root / RUN_LOG, names, out=out) as progress:
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
            progress.abort()
            raise LocalRunFailed(_single_run(pipeline_root), err, progress.failed()) from err
    run = _single_run(pipeline_root)
    run.reports()
    # Do not trust the reported status alone (kubeflow/pipelines#13332): every task must have left its outputs.
    missing = run.missing_tasks()
    if missing:
        raise LocalRunFailed(run, RuntimeError(f"tasks reported done but left no output: {', '.join(missing)}"))
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
