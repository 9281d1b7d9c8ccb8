"""``gcp-smoke``: first contact with GCP in two minutes, before the first scheduled run.

Two requests, built by the same code as the real ones and sent side by side:

- a one-step pipeline job (``probe_database``) with the real pipeline's service account and network path,
  which reads the password from Secret Manager and queries the database;
- a Dataproc batch with the real staged zip, jars and python files (``VertexTarget.batch_request``), whose
  entry file ``spark_src/smoke`` imports ``synapse.ml.lightgbm``, loads the JVM classes, opens JDBC to the
  database and exits.

``--dry-run`` builds and prints both requests with the real client libraries and sends nothing.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of the smoke pipeline.

import datetime as dt
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from pipelines.settings import GcpSettings, PlaceholderSettings
from pipelines.targets import VertexTarget
from spark_src.common.launch import smoke_args

SMOKE_PIPELINE = "defi-gcp-smoke"


def build_smoke_pipeline():
    """The one-step smoke pipeline (built on call: nothing happens at import time)."""
    from kfp import dsl

    from components.probe_database import probe_database

    @dsl.pipeline(name=SMOKE_PIPELINE, description="Reaches the database and its secret the way the pipeline does.")
    def smoke_pipeline(database_url: str, password_secret: str):
        probe_database(database_url=database_url, password_secret=password_secret).set_caching_options(False)

    return smoke_pipeline


def smoke_batch_request(settings: GcpSettings, batch_id: str) -> dict[str, Any]:
    """The DataprocPySparkBatchOp-shaped inputs of the smoke batch: the pipeline's batch request, smoke entry file."""
    args = smoke_args(
        database_url=settings.cloud_sql_url,
        password_secret=settings.cloud_sql_password_secret,
        code_version=settings.code_version,
    )
    return VertexTarget(settings).batch_request("smoke", batch_id, args)


def dataproc_batch(request: dict[str, Any]):
    """The Dataproc ``Batch`` of a batch request dict (what GCPC's launcher sends for the pipeline's batches)."""
    from google.cloud import dataproc_v1

    return dataproc_v1.Batch(
        pyspark_batch=dataproc_v1.PySparkBatch(
            main_python_file_uri=request["main_python_file_uri"],
            args=[str(a) for a in request["args"]],
            python_file_uris=request["python_file_uris"],
            jar_file_uris=request["jar_file_uris"],
        ),
        runtime_config=dataproc_v1.RuntimeConfig(
            version=request["runtime_config_version"], properties=request["runtime_config_properties"]
        ),
        environment_config=dataproc_v1.EnvironmentConfig(
            execution_config=dataproc_v1.ExecutionConfig(
                service_account=request["service_account"], subnetwork_uri=request["subnetwork_uri"]
            )
        ),
        labels=request["labels"],
    )


def create_batch_request(request: dict[str, Any]):
    """The Dataproc CreateBatchRequest of a batch request dict: its :func:`dataproc_batch`, parent and id."""
    from google.cloud import dataproc_v1

    return dataproc_v1.CreateBatchRequest(
        parent=f"projects/{request['project']}/locations/{request['location']}",
        batch=dataproc_batch(request),
        batch_id=request["batch_id"],
    )


def smoke_requests(settings: GcpSettings, stamp: str, workdir: Path, credentials=None) -> tuple[Any, Any, Any]:
    """(PipelineJob, its CreatePipelineJobRequest, the CreateBatchRequest) of one smoke test."""
    from google.cloud import aiplatform
    from kfp import compiler

    from pipelines.vertex.jobs import pipeline_job_request

    template = workdir / "gcp_smoke.yaml"
    compiler.Compiler().compile(build_smoke_pipeline(), str(template))
    job = aiplatform.PipelineJob(
        display_name=f"{SMOKE_PIPELINE}-{settings.code_version}"[:128],
        template_path=str(template),
        job_id=f"{SMOKE_PIPELINE}-{stamp}",
        pipeline_root=settings.pipeline_root,
        parameter_values={
            "database_url": settings.cloud_sql_url,
            "password_secret": settings.cloud_sql_password_secret,
        },
        enable_caching=False,
        labels=settings.labels,
        credentials=credentials,
        project=settings.gcp_project,
        location=settings.gcp_region,
    )
    batch = create_batch_request(smoke_batch_request(settings, f"smoke-{stamp}"))
    return job, pipeline_job_request(job, settings), batch


def run_smoke(settings: GcpSettings, *, dry_run: bool, timeout_seconds: int = 900, echo=click.echo) -> bool:
    """Builds both requests (dry run: prints them) or sends them and waits; True when both succeeded."""
    from pipelines.vertex.jobs import describe_request

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as workdir:
        credentials = None
        if dry_run:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        job, pipeline_request, batch_request = smoke_requests(settings, stamp, Path(workdir), credentials)
        if dry_run:
            echo(json.dumps({"pipeline_job": describe_request(pipeline_request),
                             "dataproc_batch": describe_request(batch_request)}, indent=1))  # fmt: skip
            return True
        from google.cloud import dataproc_v1

        dataproc = dataproc_v1.BatchControllerClient(
            client_options={"api_endpoint": f"{settings.gcp_region}-dataproc.googleapis.com:443"}
        )
        operation = dataproc.create_batch(request=batch_request)
        echo(f"dataproc batch {batch_request.batch_id} submitted")
        job.submit(service_account=settings.pipeline_service_account, network=settings.vpc_network)
        echo(f"pipeline job {job.resource_name} submitted")
        try:
            batch = operation.result(timeout=timeout_seconds)  # raises when the batch fails
            echo(f"dataproc batch: {batch.state.name}")
            batch_ok = batch.state == dataproc_v1.Batch.State.SUCCEEDED
        except Exception as error:  # the operation's error names the batch; its driver log says why
            echo(f"dataproc batch failed: {error}")
            batch_ok = False
        try:
            job.wait()  # raises RuntimeError when the pipeline fails
            echo(f"pipeline job: {job.state.name}")
            pipeline_ok = True
        except RuntimeError as error:
            echo(f"pipeline job failed: {error}")
            pipeline_ok = False
        return batch_ok and pipeline_ok


@click.command("gcp-smoke")
@click.option("--dry-run", is_flag=True, help="Build and print both requests; send nothing (needs no account).")
@click.option("--timeout", "timeout_seconds", type=int, default=900, show_default=True, help="Seconds to wait.")
@click.option(
    "--code-version",
    default=None,
    help="The commit whose staged code to use (gs://<SPARK_BUCKET>/code/<version>/); default: CODE_VERSION.",
)
def gcp_smoke_command(dry_run: bool, timeout_seconds: int, code_version: str | None) -> None:
    """Submit a one-step pipeline (database + secret through the pipeline's network path) and a tiny Dataproc
    batch (staged zip + jars: imports synapse.ml.lightgbm, opens JDBC), and wait for both.

    Settings (.env.gcp) as for submit; run after Cloud Build has staged the code (`stage`).
    """
    try:
        settings = GcpSettings.from_env()
    except PlaceholderSettings as error:
        raise click.ClickException(f"{error}: run `make gcp-settings` (README, Deploy to GCP) first") from None
    if code_version:
        settings = replace(settings, code_version=code_version)
    if not run_smoke(settings, dry_run=dry_run, timeout_seconds=timeout_seconds):
        raise click.ClickException("gcp-smoke failed: see the batch's driver log and the pipeline run above")
