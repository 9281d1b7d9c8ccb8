"""Where the Spark steps run: as Dataproc Serverless batches (Vertex AI), or as the same batch requests rehearsed
on this machine by spark-submit in a Dataproc-runtime-shaped Python (kfp.local, :mod:`rehearsal`). The
pipeline's DAG is written once (``pool_pipeline.build_pipeline``); a target only supplies the two Spark tasks and
the parameter defaults of its environment."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kfp import dsl

from pipelines.runtime_profiles import DEFAULT_PROFILE, RuntimeProfile, get_profile
from pipelines.settings import GcpSettings
from spark_src.common.launch import forecast_args, pool_metrics_args


@dataclass(frozen=True)
class SparkStep:
    task: dsl.PipelineTask
    # gcp_resources of the Dataproc batch (a pipeline channel), or "" where there is none.
    batch_resources: Any = ""


# The GCS layout of the local rehearsal: the same layout as on GCP (GcpSettings), under a folder that stands
# for GCS (rehearsal.launcher.LocalGcs). Fixed names: they are compiled into compiled/pool_pipeline_local.yaml.
REHEARSAL_SETTINGS = GcpSettings(
    gcp_project="rehearsal", spark_bucket="rehearsal-spark-staging", pipeline_bucket="rehearsal-pipeline-root",
    code_version="local",
)  # fmt: skip
# The batch request fields the rehearsal reads; the rest (service account, subnetwork, labels) only Dataproc.
_REHEARSED_FIELDS = (
    "main_python_file_uri", "python_file_uris", "jar_file_uris", "runtime_config_version", "runtime_config_properties",
)  # fmt: skip


@dataclass(frozen=True)
class LocalTarget:
    """The Spark steps as Dataproc batches rehearsed on this machine: the batch requests of a VertexTarget with
    :data:`REHEARSAL_SETTINGS` (``runtime_profile`` picks the Dataproc runtime), run by rehearsal.launcher."""

    runtime_profile: str = DEFAULT_PROFILE
    name: str = "local"

    @property
    def settings(self) -> GcpSettings:
        return replace(REHEARSAL_SETTINGS, runtime_profile=self.runtime_profile)

    def defaults(self) -> dict[str, Any]:
        return {"password_secret": "env:DB_PASSWORD", "model_root": "", "project": "", "location": ""}

    def retry(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """No retry: kfp.local honours retry policies too, and a local failure should show at once."""
        return task

    def batch(self, job: str) -> dict[str, Any]:
        """The Vertex batch request of ``job`` (without args, which the component builds from its inputs)."""
        request = VertexTarget(self.settings).batch_request(job, "", [])
        return {key: request[key] for key in _REHEARSED_FIELDS}

    def pool_metrics(
        self, *, database_url, password_secret, run_id, staging_table, start, end, now, batch_id
    ) -> SparkStep:  # fmt: skip
        from components.run_spark_job import run_pool_metrics_local

        task = run_pool_metrics_local(
            batch=self.batch("pool_metrics"),
            database_url=database_url,
            password_secret=password_secret,
            run_id=run_id,
            staging_table=staging_table,
            start=start,
            end=end,
            now=now,
        )
        return SparkStep(task)

    def forecast(
        self, *, database_url, password_secret, run_id, staging_table, backtest_table, quarantine_table, model_dir,
        as_of, holdout_as_of, train_days, batch_id,
    ) -> SparkStep:  # fmt: skip
        from components.run_spark_job import run_forecast_local

        task = run_forecast_local(
            batch=self.batch("forecast"),
            database_url=database_url,
            password_secret=password_secret,
            run_id=run_id,
            staging_table=staging_table,
            backtest_table=backtest_table,
            quarantine_table=quarantine_table,
            model_dir=model_dir,
            as_of=as_of,
            holdout_as_of=holdout_as_of,
            train_days=train_days,
        )
        return SparkStep(task)


# Retry policy of the idempotent database steps on Vertex AI: a transient error (a Cloud SQL failover or
# maintenance restart, a dropped connection, a preempted worker) fails a step that would pass a minute later.
# Those steps are safe to run again: each upsert is one transaction (all or nothing, and a rerun rewrites
# nothing that is already there), a lineage record or the forecast dates only read. 3 retries after 30 s,
# 60 s, 120 s, within 10 minutes.
DB_RETRY = {"num_retries": 3, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}


@dataclass(frozen=True)
class VertexTarget:
    settings: GcpSettings = field(default_factory=GcpSettings)
    name: str = "vertex"

    def retry(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """The retry policy of an idempotent database step (:data:`DB_RETRY`)."""
        return task.set_retry(**DB_RETRY)

    @property
    def profile(self) -> RuntimeProfile:
        return get_profile(self.settings.runtime_profile)

    def defaults(self) -> dict[str, Any]:
        s = self.settings
        return {
            "password_secret": s.cloud_sql_password_secret,
            "model_root": s.model_root,
            "project": s.gcp_project,
            "location": s.gcp_region,
        }

    def batch_request(self, job: str, batch_id, args: list) -> dict[str, Any]:
        """The DataprocPySparkBatchOp inputs of a spark_src job (also what the offline tests rebuild as a Batch)."""
        s, profile = self.settings, self.profile
        return {
            # Explicit: GCPC's default is a placeholder that only Vertex fills in.
            "project": s.gcp_project,
            "location": s.gcp_region,
            "batch_id": batch_id,
            "main_python_file_uri": s.entry_file(job),
            # SynapseML's Python code is inside its jars: jar_file_uris reach the JVM only (spark-submit adds jars to
            # the Python path for --packages, never for --jars), so those jars are python files of the batch too.
            "python_file_uris": [s.spark_src_zip, *(f"{s.jars_prefix}/{n}" for n in profile.python_jar_file_names())],
            # Staged in GCS: the batches' workers have internal IPs only and cannot reach Maven Central.
            "jar_file_uris": [f"{s.jars_prefix}/{name}" for name in profile.jar_file_names()],
            "runtime_config_version": profile.runtime_version,
            "runtime_config_properties": profile.job_properties[job],
            "service_account": s.dataproc_service_account,
            "subnetwork_uri": s.dataproc_subnetwork,
            "labels": {**s.labels, "job": job.replace("_", "-")},
            "args": args,
        }

    def _batch(self, job: str, batch_id, args: list) -> SparkStep:
        from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp

        task = DataprocPySparkBatchOp(**self.batch_request(job, batch_id, args))
        return SparkStep(task, task.outputs["gcp_resources"])

    def pool_metrics(
        self, *, database_url, password_secret, run_id, staging_table, start, end, now, batch_id
    ) -> SparkStep:  # fmt: skip
        args = pool_metrics_args(
            run_id=run_id, staging_table=staging_table, start=start, end=end, now=now, database_url=database_url,
            password_secret=password_secret, code_version=self.settings.code_version,
        )  # fmt: skip
        return self._batch("pool_metrics", batch_id, args)

    def forecast(
        self, *, database_url, password_secret, run_id, staging_table, backtest_table, quarantine_table, model_dir,
        as_of, holdout_as_of, train_days, batch_id,
    ) -> SparkStep:  # fmt: skip
        args = forecast_args(
            run_id=run_id, staging_table=staging_table, backtest_table=backtest_table,
            quarantine_table=quarantine_table, model_dir=model_dir, as_of=as_of, holdout_as_of=holdout_as_of,
            train_days=train_days, database_url=database_url, password_secret=password_secret,
            code_version=self.settings.code_version,
        )  # fmt: skip
        return self._batch("forecast", batch_id, args)
