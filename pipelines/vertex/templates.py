"""The compiled Vertex template: loading it, and the checks a run's parameters and the template itself must pass
before anything is sent (no credential in a parameter, compiled for this project). Typing and validating the
parameter values is ``pipelines.parameters``' job."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipelines.settings import COMPILED_DIR, GcpSettings
from spark_src.common.config import ConfigError, DbConfig, validate_secret_ref

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

DEFAULT_TEMPLATE = COMPILED_DIR / "pool_pipeline_vertex.yaml"
_DATAPROC_PROJECT_INPUTS = ("project", "location")


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
