"""One error handler for the command line: each known failure becomes one line (what went wrong, then the next
step) and a non-zero exit code, instead of a traceback.

Exit codes: 1 a pipeline run failed, 2 settings or parameters (click's usage errors use 2 as well),
3 no Google Cloud credentials, 4 database unreachable, 5 no local run yet.
"""

from __future__ import annotations

import click

RUN_FAILED = 1
SETTINGS = 2
CREDENTIALS = 3
DATABASE = 4
NO_RUN = 5


class Failure(click.ClickException):
    """A known failure: shown as ``error: <what>. Next: <next step>`` on one line of stderr."""

    def __init__(self, what: str, next_step: str, exit_code: int):
        super().__init__(_one_line(what))
        self.next_step = _one_line(next_step)
        self.exit_code = exit_code

    def format_message(self) -> str:
        return f"{self.message.rstrip('.')}. Next: {self.next_step}"

    def show(self, file=None) -> None:
        click.secho(f"error: {self.format_message()}", err=True, fg="red")


def known_failure(err: BaseException) -> Failure | None:
    """The :class:`Failure` of a known exception, or None for an unexpected one (left as a traceback)."""
    from pipelines.local_run import LocalRunFailed, NoLocalRun
    from pipelines.parameters import ParameterError
    from pipelines.preflight import DatabaseUnreachable
    from pipelines.settings import PlaceholderSettings
    from spark_src.common.config import ConfigError

    if isinstance(err, LocalRunFailed):
        return Failure(str(err), err.next_step, RUN_FAILED)
    if isinstance(err, NoLocalRun):
        return Failure(str(err), "run `make demo` or `defi-pipeline run-local` first", NO_RUN)
    if isinstance(err, DatabaseUnreachable):
        return Failure(str(err), err.next_step, DATABASE)
    if isinstance(err, PlaceholderSettings):
        return Failure(
            str(err), "run `make gcp-settings` (writes .env.gcp from Terraform) or export the GCP_* settings", SETTINGS
        )
    if isinstance(err, ParameterError):
        return Failure(str(err), "fix the value (see --help of the command)", SETTINGS)
    if isinstance(err, ConfigError):
        return Failure(
            f"settings: {err}",
            "set DB_URL (or DB_HOST, DB_NAME, DB_USER) and DB_PASSWORD in the environment or .env (see .env.example)",
            SETTINGS,
        )
    if _is_missing_credentials(err):
        return Failure(
            f"no Google Cloud credentials ({type(err).__name__})",
            "run `gcloud auth application-default login`; a --dry-run with a local --template needs none",
            CREDENTIALS,
        )
    return None


def _is_missing_credentials(err: BaseException) -> bool:
    try:
        from google.auth.exceptions import DefaultCredentialsError, RefreshError
    except ImportError:  # pragma: no cover - google-auth comes with aiplatform
        return False
    return isinstance(err, DefaultCredentialsError | RefreshError)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class HandledGroup(click.Group):
    """A click group whose subcommands' known failures are reported by :func:`known_failure`."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as err:
            failure = known_failure(err)
            if failure is None:
                raise
            raise failure from None
