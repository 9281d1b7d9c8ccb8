"""The requests the Vertex commands send, built locally with the real client libraries: a run
(CreatePipelineJob), a schedule (CreateSchedule), and the upload of a template to Artifact Registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines import parameters
from pipelines.settings import GcpSettings
from pipelines.vertex.templates import check_no_credentials, check_template_matches, load_template

if TYPE_CHECKING:  # aiplatform takes seconds to import: only the commands that talk to Vertex load it
    from google.auth.credentials import Credentials
    from google.cloud import aiplatform, aiplatform_v1

log = logging.getLogger(__name__)

DEFAULT_CRON = "0 6 * * *"


def build_pipeline_job(
    settings: GcpSettings,
    template: str | Path,
    parameter_values: Mapping[str, Any],
    job_id: str | None = None,
    enable_caching: bool | None = False,
    credentials: Credentials | None = None,
) -> aiplatform.PipelineJob:
    """The ``aiplatform.PipelineJob`` of one run of ``template`` (built locally; nothing is sent).

    Args:
        settings: Project, region, pipeline root and labels.
        template: Local YAML path, ``gs://`` file or Artifact Registry template URI
            (``https://<region>-kfp.pkg.dev/<project>/<repo>/<package>/<tag or sha256:…>``).
        parameter_values: Pipeline parameters; strings are converted to the declared types.
        job_id: Pipeline job id; default: ``<pipeline name>-<timestamp>``.
        enable_caching: False (default) turns caching off for every task: each step reads or writes the
            database, a cached result would be stale. None keeps the compiled per-task settings.
        credentials: Credentials of the template download and of the client; default: application default.

    Raises:
        ValueError: a parameter carries a credential, is unknown, mistyped or out of range (a date, start after
            end…), or the template was compiled for another project or region.
    """
    from google.cloud import aiplatform

    spec = load_template(template, settings, credentials)
    values = parameters.with_defaults_validated(spec, parameter_values)
    # The compiled defaults are submitted too: check them as well as the overrides.
    defaults = {name: d["defaultValue"] for name, d in parameters.spec_parameters(spec).items() if "defaultValue" in d}
    check_no_credentials({**defaults, **values})
    check_template_matches(spec, settings)
    pipeline_name = spec["pipelineInfo"]["name"]
    return aiplatform.PipelineJob(
        display_name=f"{pipeline_name}-{settings.code_version}"[:128],
        template_path=str(template),
        job_id=job_id,
        pipeline_root=settings.pipeline_root,
        parameter_values=values,
        enable_caching=enable_caching,
        labels=settings.labels,
        credentials=credentials,
        project=settings.gcp_project,
        location=settings.gcp_region,
    )


def location_path(settings: GcpSettings) -> str:
    """``projects/<project>/locations/<region>``: the parent of pipeline jobs and schedules (what
    ``PipelineJob`` computes for itself from the same project and location)."""
    return f"projects/{settings.gcp_project}/locations/{settings.gcp_region}"


def _unsubmitted_resource(job: aiplatform.PipelineJob) -> aiplatform_v1.PipelineJob:
    """The PipelineJob resource the SDK would send, before it is sent.

    SDK gap (google-cloud-aiplatform 1.x): the public ``PipelineJob.gca_resource`` raises "resource has not been
    created" until the job has a name, i.e. until it was submitted, and the SDK offers no public way to build
    the CreatePipelineJob request without sending it. The one private read of the package is here.
    """
    return job._gca_resource


def attach_network(pipeline_job: Any, settings: GcpSettings) -> None:
    """Sets how ``pipeline_job`` (a PipelineJob resource) reaches Cloud SQL: a PSC interface or VPC peering.

    Cloud SQL's private IP sits behind the VPC's private services access peering; a job peered with the VPC
    reaches only the VPC's own subnets (peering is not transitive), a PSC interface in the VPC reaches it too.
    """
    if settings.vertex_networking == "psc":
        # The config type of the resource's own API version (the SDK's compat types, or aiplatform_v1).
        config_type = type(pipeline_job.psc_interface_config)
        pipeline_job.psc_interface_config = config_type(network_attachment=settings.network_attachment)
    elif settings.vertex_networking == "peering":
        pipeline_job.network = settings.vpc_network
    else:
        raise ValueError(f"VERTEX_NETWORKING is psc or peering, not {settings.vertex_networking!r}")


def pipeline_job_request(job: aiplatform.PipelineJob, settings: GcpSettings) -> aiplatform_v1.CreatePipelineJobRequest:
    """The CreatePipelineJob request that :func:`submit` sends (``PipelineJob.submit`` adds the same fields)."""
    from google.cloud import aiplatform_v1

    resource = aiplatform_v1.PipelineJob(_unsubmitted_resource(job))
    resource.service_account = settings.pipeline_service_account
    attach_network(resource, settings)
    return aiplatform_v1.CreatePipelineJobRequest(
        parent=location_path(settings), pipeline_job=resource, pipeline_job_id=job.job_id
    )


def schedule_request(
    job: aiplatform.PipelineJob, settings: GcpSettings, cron: str, display_name: str
) -> aiplatform_v1.CreateScheduleRequest:
    """The CreateSchedule request that :func:`schedule` sends (what ``PipelineJobSchedule.create`` builds)."""
    from google.cloud import aiplatform_v1

    source = _unsubmitted_resource(job)
    pipeline_job = aiplatform_v1.PipelineJob(
        runtime_config=source.runtime_config,
        pipeline_spec=source.pipeline_spec,
        labels=source.labels,
        template_uri=source.template_uri,
        service_account=settings.pipeline_service_account,
    )
    attach_network(pipeline_job, settings)
    return aiplatform_v1.CreateScheduleRequest(
        parent=location_path(settings),
        schedule=aiplatform_v1.Schedule(
            display_name=display_name,
            cron=cron,
            max_concurrent_run_count=1,
            create_pipeline_job_request=aiplatform_v1.CreatePipelineJobRequest(
                parent=location_path(settings), pipeline_job=pipeline_job
            ),
        ),
    )


def describe_request(request: Any) -> dict[str, Any]:
    """The request as JSON-ready dict, with the (long) pipeline spec reduced to its name and task count."""

    def elide(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: f"<pipeline {value.get('pipelineInfo', {}).get('name')}: "
                f"{len(value.get('root', {}).get('dag', {}).get('tasks', {}))} tasks>"
                if key == "pipelineSpec" and isinstance(value, dict)
                else elide(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [elide(item) for item in node]
        return node

    return elide(json.loads(type(request).to_json(request, always_print_fields_with_no_presence=False)))


def utc_cron(cron: str) -> str:
    """``cron`` with an explicit ``TZ=UTC`` prefix: the runs' days are UTC days, whatever the service's default."""
    return cron if cron.startswith(("TZ=", "CRON_TZ=")) else f"TZ=UTC {cron}"


def submit(
    settings: GcpSettings,
    template: str | Path,
    parameter_values: Mapping[str, Any],
    experiment: str,
    *,
    dry_run: bool = False,
    credentials: Credentials | None = None,
) -> aiplatform.PipelineJob | aiplatform_v1.CreatePipelineJobRequest:
    """Submits one run, peered with the VPC (Cloud SQL's private IP) and linked to ``experiment`` by Vertex.

    The pipeline parameter ``experiment`` is set empty: Vertex links the run itself, the pipeline's last step
    must not log it a second time.

    Args:
        settings: GCP settings.
        template: Local YAML path or Artifact Registry template URI.
        parameter_values: Pipeline parameters (no credentials).
        experiment: Vertex AI Experiment of the run; empty: none.
        dry_run: Build and log the request, send nothing.
        credentials: Default: application default credentials.

    Returns:
        The submitted PipelineJob, or (dry run) the CreatePipelineJob request.
    """
    job = build_pipeline_job(settings, template, {**parameter_values, "experiment": ""}, credentials=credentials)
    request = pipeline_job_request(job, settings)
    log.info("create pipeline job (experiment %r): %s", experiment, json.dumps(describe_request(request)))
    if dry_run:
        return request
    # PipelineJob.submit sends its resource as is: the PSC interface (which submit takes no argument for) rides on it.
    attach_network(_unsubmitted_resource(job), settings)
    job.submit(service_account=settings.pipeline_service_account, experiment=experiment or None)
    return job


def schedule(
    settings: GcpSettings,
    template: str | Path,
    parameter_values: Mapping[str, Any],
    cron: str,
    display_name: str,
    experiment: str,
    *,
    dry_run: bool = False,
    credentials: Credentials | None = None,
) -> aiplatform.PipelineJobSchedule | aiplatform_v1.CreateScheduleRequest:
    """Schedules runs at ``cron`` (UTC), one at a time, until the schedule is paused or deleted.

    A schedule cannot be linked to an experiment, so the pipeline parameter ``experiment`` is set and the
    pipeline's last step logs each run's parameters and metrics there.

    Args:
        settings: GCP settings.
        template: Local YAML path or Artifact Registry template URI (a tag such as ``latest`` is resolved when
            the schedule is created: pin a version by publishing first and passing its ``sha256:`` URI).
        parameter_values: Pipeline parameters (no credentials).
        cron: Cron expression, in UTC unless it carries its own ``TZ=`` prefix.
        display_name: The schedule's name.
        experiment: Experiment the pipeline logs each run to.
        dry_run: Build and log the request, send nothing.
        credentials: Default: application default credentials.

    Returns:
        The created schedule, or (dry run) the CreateSchedule request.
    """
    job = build_pipeline_job(
        settings, template, {**parameter_values, "experiment": experiment}, credentials=credentials
    )
    request = schedule_request(job, settings, utc_cron(cron), display_name)
    log.info("create schedule: %s", json.dumps(describe_request(request)))
    if dry_run:
        return request
    from google.cloud import aiplatform

    # What job.create_schedule does, with the network set on the schedule's pipeline job (PSC takes no argument).
    created = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=display_name, credentials=credentials, project=settings.gcp_project,
        location=settings.gcp_region,
    )  # fmt: skip
    # Same SDK gap as _unsubmitted_resource: the schedule's pipeline job is reachable only through its resource.
    attach_network(created._gca_resource.create_pipeline_job_request.pipeline_job, settings)
    created.create(
        cron=utc_cron(cron),
        # One run at a time: two runs would upsert the same days concurrently.
        max_concurrent_run_count=1,
        max_run_count=None,
        service_account=settings.pipeline_service_account,
    )

    # One schedule per name: a rebuild that schedules again replaces the previous schedule instead of adding a
    # second one running side by side (max_concurrent_run_count holds per schedule only).
    for previous in aiplatform.PipelineJobSchedule.list(
        filter=f'display_name="{display_name}"',
        project=settings.gcp_project,
        location=settings.gcp_region,
        credentials=credentials,
    ):
        if previous.resource_name != created.resource_name:
            log.info("deleting the replaced schedule %s", previous.resource_name)
            previous.delete()
    return created


def publish(settings: GcpSettings, template_path: Path, tags: list[str] | None = None, auth: Any = None) -> str:
    """Uploads a compiled template to the Artifact Registry repository of ``settings``.

    Args:
        settings: GCP settings (template repository, project, region).
        template_path: The compiled YAML (compiled with these settings).
        tags: Tags of the version; default: the code version and ``latest``.
        auth: ``requests`` auth or google-auth credentials; default: application default credentials.

    Returns:
        The template URI of the uploaded version (``…/<package>/sha256:…``): immutable, unlike a tag.

    Raises:
        ValueError: the template was compiled for another project or region, or a default carries a credential.
    """
    from kfp.registry import RegistryClient

    spec = load_template(template_path, settings)
    check_template_matches(spec, settings)
    check_no_credentials(
        {name: d["defaultValue"] for name, d in parameters.spec_parameters(spec).items() if "defaultValue" in d}
    )
    client = RegistryClient(host=settings.template_host, auth=auth)
    package, version = client.upload_pipeline(
        file_name=str(template_path), tags=tags or [settings.code_version, "latest"]
    )
    return f"{settings.template_host}/{package}/{version}"
