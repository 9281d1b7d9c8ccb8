"""Runs the Vertex AI variant of the pipeline: submit a run, schedule daily runs, publish the compiled template
to Artifact Registry, and compare runs (Vertex AI Experiments, or the kfp.local run folders with ``--local``).

Every request is built with the real client libraries; ``--dry-run`` prints it instead of sending it. No
parameter may carry a password: the database password is named by a Secret Manager reference and read where
it is used.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from pipelines import parameters
from pipelines.local_run import RUNS_DIR, LocalRun
from pipelines.settings import COMPILED_DIR, GcpSettings
from spark_src.common.config import ConfigError, DbConfig, validate_secret_ref

if TYPE_CHECKING:  # aiplatform takes seconds to import: only the commands that talk to Vertex load it
    import pandas as pd
    from google.auth.credentials import Credentials
    from google.cloud import aiplatform, aiplatform_v1

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = COMPILED_DIR / "pool_pipeline_vertex.yaml"
DEFAULT_CRON = "0 6 * * *"
# Experiments keeps one value per metric name and run; the pipeline's metric names carry these prefixes.
METRIC_PREFIXES = ("parity_", "forecast_")
# The metrics outputs of a run (the parity gate's and the forecast evaluation's) that the comparison reads.
_METRIC_OUTPUTS = ("parity", "forecast_metrics")
_DATAPROC_PROJECT_INPUTS = ("project", "location")


# --- the template --------------------------------------------------------------------------------------------
def load_template(template: str | Path, settings: GcpSettings, credentials: Credentials | None = None) -> dict:
    """The pipeline spec (as a dict) of a local YAML file, a ``gs://`` file or an Artifact Registry template URI.

    Read with the same loader ``aiplatform.PipelineJob`` uses, so what is checked here is what gets submitted.
    """
    from google.cloud.aiplatform.utils import yaml_utils

    if credentials is None and str(template).startswith(("https://", "gs://")):
        from google.cloud.aiplatform import initializer

        # Without credentials the loader sends no Authorization header and Artifact Registry refuses the read.
        credentials = initializer.global_config.credentials
    document = yaml_utils.load_yaml(str(template), settings.gcp_project, credentials)
    return document.get("pipelineSpec", document)  # a PipelineJob JSON wraps the spec


def check_no_credentials(parameter_values: Mapping[str, Any]) -> None:
    """Refuses parameter values that carry a credential; the error never repeats the value.

    Pipeline parameters are stored in the PipelineJob resource and shown in the console, so they hold secret
    *references* only. On Vertex AI the reference must name a Secret Manager secret: an ``env:`` reference
    would point at a variable that no Vertex or Dataproc worker has (setting one would mean passing the value).

    Raises:
        ValueError: ``password_secret`` is not a Secret Manager reference, or a URL carries a password.
    """
    for name, value in parameter_values.items():
        if not isinstance(value, str):
            continue
        if name == "password_secret":
            try:
                validate_secret_ref(value)
            except ConfigError:
                raise ValueError(
                    "pipeline parameter 'password_secret' must be a secret reference "
                    "(projects/<p>/secrets/<id>[/versions/<v>]), not a password"
                ) from None
            if value.startswith("env:"):
                raise ValueError(
                    "pipeline parameter 'password_secret' names an environment variable; on Vertex AI it must name "
                    "a Secret Manager secret (projects/<p>/secrets/<id>)"
                )
        elif name == "database_url":
            try:
                DbConfig.from_url(value)
            except ConfigError as err:  # its message names the problem, not the URL
                raise ValueError(f"pipeline parameter 'database_url': {err}") from None
        elif "://" in value and _url_password(value):
            raise ValueError(f"pipeline parameter {name!r} is a URL with a password; pass a secret reference")


def _url_password(value: str) -> bool:
    try:
        return urlsplit(value).password is not None
    except ValueError:  # not a URL after all
        return False


def check_template_matches(spec: Mapping[str, Any], settings: GcpSettings) -> None:
    """Refuses a template compiled for another project or region than ``settings``.

    The Dataproc batches' project and region are compiled into the template (they are not parameters); a
    template compiled with the placeholders of ``compiled/`` would start batches in a project that does not
    exist, and fail only after the first steps ran.

    Raises:
        ValueError: a Dataproc task's project or location differs from the settings.
    """
    expected = {"project": settings.gcp_project, "location": settings.gcp_region}
    for task_name, task in spec.get("root", {}).get("dag", {}).get("tasks", {}).items():
        inputs = task.get("inputs", {}).get("parameters", {})
        if "main_python_file_uri" not in inputs:  # not a Dataproc batch
            continue
        for key in _DATAPROC_PROJECT_INPUTS:
            compiled = inputs.get(key, {}).get("runtimeValue", {}).get("constant")
            if compiled != expected[key]:
                raise ValueError(
                    f"the template's task {task_name} runs in {key} {compiled!r} but the settings say "
                    f"{expected[key]!r}: compile with `compile --settings-from-env` (or use the template Cloud "
                    "Build published)"
                )


def template_uri(settings: GcpSettings, version: str) -> str:
    """The Artifact Registry URI of the published Vertex template at ``version`` (a tag or ``sha256:…``)."""
    from pipelines.pool_pipeline import PIPELINE_NAME
    from pipelines.targets import VertexTarget

    # The registry names the package after the compiled pipeline (see pool_pipeline.build_pipeline).
    return f"{settings.template_host}/{PIPELINE_NAME}-{VertexTarget.name}/{version}"


# --- the job --------------------------------------------------------------------------------------------------
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


def pipeline_job_request(job: aiplatform.PipelineJob, settings: GcpSettings) -> aiplatform_v1.CreatePipelineJobRequest:
    """The CreatePipelineJob request that :func:`submit` sends (``PipelineJob.submit`` adds the same fields)."""
    from google.cloud import aiplatform_v1

    # An unsubmitted PipelineJob exposes its resource only as _gca_resource (the public properties need a name).
    resource = aiplatform_v1.PipelineJob(job._gca_resource)
    resource.service_account = settings.pipeline_service_account
    resource.network = settings.vpc_network
    return aiplatform_v1.CreatePipelineJobRequest(parent=job._parent, pipeline_job=resource, pipeline_job_id=job.job_id)


def schedule_request(
    job: aiplatform.PipelineJob, settings: GcpSettings, cron: str, display_name: str
) -> aiplatform_v1.CreateScheduleRequest:
    """The CreateSchedule request that :func:`schedule` sends (what ``PipelineJobSchedule.create`` builds)."""
    from google.cloud import aiplatform_v1

    source = job._gca_resource
    pipeline_job = aiplatform_v1.PipelineJob(
        runtime_config=source.runtime_config,
        pipeline_spec=source.pipeline_spec,
        labels=source.labels,
        template_uri=source.template_uri,
        service_account=settings.pipeline_service_account,
        network=settings.vpc_network,
    )
    return aiplatform_v1.CreateScheduleRequest(
        parent=job._parent,
        schedule=aiplatform_v1.Schedule(
            display_name=display_name,
            cron=cron,
            max_concurrent_run_count=1,
            create_pipeline_job_request=aiplatform_v1.CreatePipelineJobRequest(
                parent=job._parent, pipeline_job=pipeline_job
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
    job.submit(
        service_account=settings.pipeline_service_account,
        network=settings.vpc_network,
        experiment=experiment or None,
    )
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
    created = job.create_schedule(
        display_name=display_name,
        cron=utc_cron(cron),
        # One run at a time: two runs would upsert the same days concurrently.
        max_concurrent_run_count=1,
        max_run_count=None,
        service_account=settings.pipeline_service_account,
        network=settings.vpc_network,
    )
    from google.cloud import aiplatform

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


# --- comparing runs -------------------------------------------------------------------------------------------
def experiment_table(settings: GcpSettings, experiment: str) -> pd.DataFrame:
    """One row per run of a Vertex AI Experiment: run, state, ``param.*`` and the pipeline's ``metric.*``."""
    from google.cloud import aiplatform

    aiplatform.init(project=settings.gcp_project, location=settings.gcp_region)
    table = aiplatform.get_experiment_df(experiment, include_time_series=False)
    keep = [
        c for c in table.columns if not c.startswith("metric.") or c.removeprefix("metric.").startswith(METRIC_PREFIXES)
    ]
    return table[keep]


def local_runs_table(runs_dir: Path = RUNS_DIR) -> pd.DataFrame:
    """The same kind of table from the kfp.local run folders (``<runs_dir>/<stamp>/<pipeline run>/<task>/``).

    Columns: ``run_id``, ``date`` (UTC start of the run), ``param.*`` (the resolved forecast dates) and every
    ``metric.parity_*``/``metric.forecast_*``. Runs that produced no metric (failed early) are left out.
    """
    import pandas as pd

    rows = []
    run_dirs = sorted({output.parent.parent for output in runs_dir.glob("*/*/*/executor_output.json")})
    for run_dir in run_dirs:
        run = LocalRun(run_dir)
        metrics = {}
        for name in _METRIC_OUTPUTS:
            output = run.find(name)
            metadata = output.metadata if output else {}
            metrics.update(
                {
                    f"metric.{key}": value
                    for key, value in metadata.items()
                    if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float))
                }
            )
        if not metrics:
            continue
        params = run.parameters("as_of", "forecast_date")
        rows.append(
            {
                "run_id": run.context().get("run_id", run_dir.name),
                "date": _run_started(run_dir),
                **{f"param.{key}": value for key, value in sorted(params.items())},
                **metrics,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    leading = ["run_id", "date"]
    params = sorted(c for c in table.columns if c.startswith("param."))
    metric_columns = [c for c in table.columns if c.startswith("metric.")]
    return table[leading + params + metric_columns].sort_values("date", ignore_index=True)


def _run_started(run_dir: Path) -> dt.datetime:
    """``run_local`` names a run's root ``<UTC %Y%m%dT%H%M%S>-<hex>``; other folders fall back to their mtime."""
    match = re.match(r"(\d{8}T\d{6})", run_dir.parent.name)
    if match:
        return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(run_dir.stat().st_mtime, dt.UTC)


# --- command line ---------------------------------------------------------------------------------------------
def _dry_run_credentials(dry_run: bool, template: str) -> Credentials | None:
    """A dry run sends nothing, so it needs no account, unless the template itself must be downloaded."""
    if dry_run and not template.startswith(("https://", "gs://")):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    return None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _job_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that submit and schedule share."""
    command = click.option("--dry-run", is_flag=True, help="Build the request and print it; send nothing.")(command)
    command = click.option(
        "--tag", default=None, help="Use the published template at this tag or sha256: version instead of --template."
    )(command)
    command = click.option(
        "--experiment", default=None, help="Vertex AI Experiment; default: the settings' (EXPERIMENT)."
    )(command)
    command = click.option(
        "--param", "params", multiple=True, metavar="KEY=VALUE", help="Pipeline parameter (repeatable)."
    )(command)
    return click.option(
        "--template",
        default=str(DEFAULT_TEMPLATE),
        show_default=True,
        help="Compiled YAML or Artifact Registry template URI (https://<region>-kfp.pkg.dev/…/<tag|sha256:…>).",
    )(command)


def _fail(err: ValueError) -> click.ClickException:
    from pipelines.errors import known_failure

    return known_failure(err) or click.ClickException(str(err))


def _template(settings: GcpSettings, template: str, tag: str | None) -> str:
    if tag is None:
        return template
    if click.get_current_context().get_parameter_source("template") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("give --template or --tag, not both")
    return template_uri(settings, tag)


@click.command("submit")
@_job_options
def submit_command(
    template: str, params: tuple[str, ...], experiment: str | None, tag: str | None, dry_run: bool
) -> None:
    """Submit one run of the pipeline to Vertex AI Pipelines."""
    settings = GcpSettings.from_env()
    template = _template(settings, template, tag)
    experiment = settings.experiment if experiment is None else experiment
    try:
        values = parameters.parse_pairs(params)
        parameters.refuse_reserved(values, {"experiment": "--experiment"})
        result = submit(
            settings, template, values, experiment, dry_run=dry_run,
            credentials=_dry_run_credentials(dry_run, template),
        )  # fmt: skip
    except ValueError as err:
        raise _fail(err) from None
    if dry_run:
        _echo_json({"experiment": experiment, "request": describe_request(result)})
    else:
        click.echo(f"submitted {result.resource_name}")


@click.command("schedule")
@_job_options
@click.option("--cron", default=DEFAULT_CRON, show_default=True, help="When to run (cron, UTC).")
@click.option("--display-name", default="defi-pool-metrics-daily", show_default=True, help="Schedule name.")
def schedule_command(
    template: str,
    params: tuple[str, ...],
    experiment: str | None,
    tag: str | None,
    dry_run: bool,
    cron: str,
    display_name: str,
) -> None:
    """Schedule runs of the pipeline on Vertex AI (one at a time); each run logs itself to the experiment."""
    settings = GcpSettings.from_env()
    template = _template(settings, template, tag)
    experiment = settings.experiment if experiment is None else experiment
    try:
        values = parameters.parse_pairs(params)
        parameters.refuse_reserved(values, {"experiment": "--experiment"})
        result = schedule(
            settings, template, values, cron, display_name, experiment, dry_run=dry_run,
            credentials=_dry_run_credentials(dry_run, template),
        )  # fmt: skip
    except ValueError as err:
        raise _fail(err) from None
    if dry_run:
        _echo_json({"request": describe_request(result)})
    else:
        click.echo(f"created schedule {result.resource_name} ({utc_cron(cron)})")


@click.command("compare")
@click.option("--experiment", default=None, help="Vertex AI Experiment; default: the settings' (EXPERIMENT).")
@click.option("--local", "local", is_flag=True, help="Compare the kfp.local runs under --runs-dir instead.")
@click.option(
    "--runs-dir", type=click.Path(path_type=Path), default=RUNS_DIR, show_default=True, help="kfp.local runs."
)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Also write the table here.")
@click.option("--transpose", is_flag=True, help="One row per column (reads better for a few runs).")
def compare_command(
    experiment: str | None, local: bool, runs_dir: Path, csv_path: Path | None, transpose: bool
) -> None:
    """Compare runs: one row per run with its parameters and parity_*/forecast_* metrics."""
    if local:
        table = local_runs_table(runs_dir)
    else:
        settings = GcpSettings.from_env()
        table = experiment_table(settings, settings.experiment if experiment is None else experiment)
    if table.empty:
        click.echo("no runs with metrics found")
        return
    click.echo(table.T.to_string() if transpose else table.to_string(index=False))
    if csv_path:
        table.to_csv(csv_path, index=False)
        click.echo(f"wrote {csv_path}")


@click.command("publish")
@click.option(
    "--template",
    "--package",
    "template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_TEMPLATE,
    show_default=True,
    help="Compiled YAML (compiled with the settings of the environment).",
)
@click.option("--tag", "tags", multiple=True, help="Version tag (repeatable); default: CODE_VERSION and latest.")
def publish_command(template: Path, tags: tuple[str, ...]) -> None:
    """Upload the compiled template to Artifact Registry; prints the version's template URI."""
    settings = GcpSettings.from_env()
    try:
        uri = publish(settings, template, list(tags) or None)
    except ValueError as err:
        raise _fail(err) from None
    click.echo(uri)
