"""The Vertex AI commands of the CLI: ``submit``, ``schedule``, ``compare`` and ``publish``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipelines import parameters
from pipelines.local_run import RUNS_DIR
from pipelines.settings import GcpSettings
from pipelines.vertex.compare import experiment_table, local_runs_table
from pipelines.vertex.jobs import DEFAULT_CRON, describe_request, publish, schedule, submit, utc_cron
from pipelines.vertex.templates import DEFAULT_TEMPLATE, template_uri

if TYPE_CHECKING:
    from google.auth.credentials import Credentials


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


def _job_inputs(
    template: str, params: tuple[str, ...], experiment: str | None, tag: str | None
) -> tuple[GcpSettings, str, str, dict[str, str]]:
    """What submit and schedule both start from: settings, the template, the experiment and the parameters."""
    settings = GcpSettings.from_env()
    template = _template(settings, template, tag)
    experiment = settings.experiment if experiment is None else experiment
    try:
        values = parameters.parse_pairs(params)
        parameters.refuse_reserved(values, {"experiment": "--experiment"})
    except ValueError as err:
        raise _fail(err) from None
    return settings, template, experiment, values


@click.command("submit")
@_job_options
def submit_command(
    template: str, params: tuple[str, ...], experiment: str | None, tag: str | None, dry_run: bool
) -> None:
    """Submit one run of the pipeline to Vertex AI Pipelines."""
    settings, template, experiment, values = _job_inputs(template, params, experiment, tag)
    try:
        result = submit(
            settings,
            template,
            values,
            experiment,
            dry_run=dry_run,
            credentials=_dry_run_credentials(dry_run, template),
        )
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
    settings, template, experiment, values = _job_inputs(template, params, experiment, tag)
    try:
        result = schedule(
            settings,
            template,
            values,
            cron,
            display_name,
            experiment,
            dry_run=dry_run,
            credentials=_dry_run_credentials(dry_run, template),
        )
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
