"""Project settings in one place, read from the environment (and ``.env`` for local use, see :func:`load_dotenv`).

Only names and locations live here, never a password. On GCP the values come from Terraform's outputs
(``make gcp-settings`` writes them to ``.env.gcp``; Cloud Build exports them) so nothing is copied by hand. The
GCS layout that Cloud Build uploads to and the Vertex pipeline reads from is derived here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DIR = REPO_ROOT / ".local"
COMPILED_DIR = REPO_ROOT / "compiled"


# Read from the real environment only (Cloud Build sets it when it compiles for deployment): from a dotenv
# file it would change what `make compile` writes to compiled/ on one machine (see components.base_image).
_NOT_FROM_DOTENV = {"COMPONENT_BASE_IMAGE"}
DOTENV_FILES = (REPO_ROOT / ".env", REPO_ROOT / ".env.gcp")


def load_dotenv(paths: tuple[Path, ...] = DOTENV_FILES) -> None:
    """KEY=VALUE lines of the ``paths`` fill variables the environment does not already set.

    Called where the command line starts (``pipelines.cli``), never at import: importing a module must not
    change the process environment.
    """
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                if key.strip() not in _NOT_FROM_DOTENV:
                    os.environ.setdefault(key.strip(), value.strip().strip("'\""))


# What the defaults below hold in place of a real project: a command that talks to GCP refuses them.
PLACEHOLDER_MARKERS = ("your-gcp-project", "projects/000000000000/")


class PlaceholderSettings(ValueError):
    """GCP settings still holding the documented placeholders (``your-gcp-project``…)."""


@dataclass(frozen=True)
class GcpSettings:
    """Where the pipeline runs on GCP. Environment variable = field name in upper case (e.g. GCP_PROJECT)."""

    gcp_project: str = "your-gcp-project"
    gcp_region: str = "europe-west1"
    # Bucket of Dataproc staging, the packaged spark_src, entry files and jars (Cloud Build uploads there).
    spark_bucket: str = "your-gcp-project-spark-staging"
    # Bucket of the Vertex pipeline root and the model directories.
    pipeline_bucket: str = "your-gcp-project-pipeline-root"
    pipeline_service_account: str = "vertex-pipelines@your-gcp-project.iam.gserviceaccount.com"
    dataproc_service_account: str = "dataproc-spark@your-gcp-project.iam.gserviceaccount.com"
    # How pipeline jobs reach Cloud SQL's private IP (README, "Vertex AI → Cloud SQL"). "psc", the default: each
    # job gets a Private Service Connect interface in the VPC through NETWORK_ATTACHMENT, and so reaches what the
    # VPC's own subnets reach, Cloud SQL's private IP included. "peering": the job is peered with VPC_NETWORK,
    # which reaches only the VPC's own subnets: Cloud SQL's producer network sits behind a second peering, and
    # peering is not transitive.
    vertex_networking: str = "psc"
    network_attachment: str = "projects/your-gcp-project/regions/europe-west1/networkAttachments/defi-vertex-psc"
    # VPC the pipeline job is peered with when vertex_networking is "peering": projects/<number>/global/networks/<n>.
    vpc_network: str = "projects/000000000000/global/networks/defi-vpc"
    dataproc_subnetwork: str = "projects/your-gcp-project/regions/europe-west1/subnetworks/defi-dataproc"
    # Cloud SQL (private IP) as a password-less URL, and the Secret Manager secret holding the password. Not
    # DB_URL / DB_PASSWORD_SECRET: those name the database of a local run (spark_src.common.config.DbConfig).
    cloud_sql_url: str = "postgresql://metrics@10.20.0.3:5432/defi"
    cloud_sql_password_secret: str = "projects/your-gcp-project/secrets/defi-db-password"
    # Dataproc runtime 1.2: out of support since 2026-09-30, available until 2028-09-30 (see runtime_profiles).
    runtime_profile: str = "dataproc-1.2"
    # Version of the uploaded code (Cloud Build: the commit SHA); selects gs://<spark_bucket>/code/<version>/.
    code_version: str = "dev"
    # Artifact Registry repository (format KFP) for pipeline templates.
    template_repository: str = "defi-pipeline-templates"
    experiment: str = "defi-pool-pipeline"
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """The environment variables the settings read (field names upper-cased)."""
        return frozenset(f.name.upper() for f in fields(cls) if f.name != "extra_labels")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, needed: Iterable[str] | None = None) -> GcpSettings:
        """The settings of the environment. Every caller talks to GCP (submit, schedule, publish, compare, stage,
        compile --settings-from-env), so placeholders are refused here, before a request names a project that
        does not exist.

        Args:
            environ: Default: ``os.environ``.
            needed: The variables the caller uses (``stage`` needs only ``SPARK_BUCKET``); default: all.

        Raises:
            PlaceholderSettings: a needed setting is unset and its default is a placeholder, or is set to one.
        """
        env = os.environ if environ is None else environ
        settings = cls(**{name.lower(): env[name] for name in cls.env_names() if name in env})
        wanted = set(cls.env_names() if needed is None else needed)
        placeholders = [name for name in settings.placeholders() if name in wanted]
        if placeholders:
            raise PlaceholderSettings(f"GCP settings still hold the documented placeholders: {', '.join(placeholders)}")
        return settings

    def placeholders(self) -> list[str]:
        """The environment variable names of the settings that still hold a placeholder value."""
        return [
            f.name.upper()
            for f in fields(self)
            if isinstance(getattr(self, f.name), str) and any(m in getattr(self, f.name) for m in PLACEHOLDER_MARKERS)
        ]

    # --- the GCS layout (Cloud Build writes it, the pipeline reads it) ----------------------------------------
    @property
    def code_prefix(self) -> str:
        return f"gs://{self.spark_bucket}/code/{self.code_version}"

    @property
    def spark_src_zip(self) -> str:
        return f"{self.code_prefix}/spark_src.zip"

    def entry_file(self, job: str) -> str:
        """The Dataproc main_python_file_uri of a spark_src job (copy of spark_src/entrypoints/<job>.py)."""
        return f"{self.code_prefix}/entrypoints/{job}.py"

    @property
    def jars_prefix(self) -> str:
        return f"gs://{self.spark_bucket}/jars"

    @property
    def pipeline_root(self) -> str:
        return f"gs://{self.pipeline_bucket}/pipeline-root"

    @property
    def model_root(self) -> str:
        return f"gs://{self.pipeline_bucket}/models"

    @property
    def template_host(self) -> str:
        return f"https://{self.gcp_region}-kfp.pkg.dev/{self.gcp_project}/{self.template_repository}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": "defi-pool-pipeline", "code-version": self.code_version.lower()[:63], **self.extra_labels}
