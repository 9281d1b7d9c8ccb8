"""Database connection settings, shared by the Spark jobs, the components and the local tooling.

Non-secret settings travel as a password-less URL (``postgresql://user@host:port/dbname``) or as the
``DB_HOST``/``DB_PORT``/``DB_NAME``/``DB_USER`` environment variables. The password never travels as a value:
it is named by a *secret reference* and resolved where it is used:

- ``env:VAR``: read from the environment variable ``VAR`` (local runs, tests);
- ``projects/<p>/secrets/<id>[/versions/<v>]``: read from Secret Manager (Dataproc, Vertex AI).

This module is pure Python (no pyspark import) so that components can import it too.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

DEFAULT_PASSWORD_SECRET = "env:DB_PASSWORD"
_SECRET_MANAGER_REF = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")


class ConfigError(ValueError):
    """Raised for missing or malformed connection settings."""


@dataclass(frozen=True)
class DbConfig:
    """Where the database is and how to find its password (never the password itself)."""

    host: str
    port: int
    name: str
    user: str
    password_secret: str = DEFAULT_PASSWORD_SECRET
    # ``<component>:<run_id>`` of the sessions opened with this config (spark_src.common.pg); not a secret.
    application_name: str = ""

    def __post_init__(self) -> None:
        validate_secret_ref(self.password_secret)

    @classmethod
    def from_url(cls, url: str, password_secret: str = DEFAULT_PASSWORD_SECRET) -> DbConfig:
        """Parses ``postgresql://user@host:port/dbname``; a URL that carries a password is refused."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"expected a postgresql:// URL, got scheme {parts.scheme!r}")
        if parts.password is not None:
            raise ConfigError("the database URL must not contain a password; name it with a secret reference instead")
        name = parts.path.lstrip("/")
        if not (parts.hostname and parts.username and name):
            raise ConfigError("the database URL needs user, host and database name: postgresql://user@host:port/db")
        return cls(parts.hostname, parts.port or 5432, name, parts.username, password_secret)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DbConfig:
        """Reads ``DB_URL`` or ``DB_HOST``/``DB_PORT``/``DB_NAME``/``DB_USER``, and ``DB_PASSWORD_SECRET``."""
        env = os.environ if environ is None else environ
        secret = env.get("DB_PASSWORD_SECRET", DEFAULT_PASSWORD_SECRET)
        if env.get("DB_URL"):
            return cls.from_url(env["DB_URL"], secret)
        missing = [k for k in ("DB_HOST", "DB_NAME", "DB_USER") if not env.get(k)]
        if missing:
            raise ConfigError(f"database settings missing from the environment: {', '.join(missing)} (or DB_URL)")
        return cls(env["DB_HOST"], int(env.get("DB_PORT", "5432")), env["DB_NAME"], env["DB_USER"], secret)

    @classmethod
    def from_args_or_env(cls, database_url: str | None, password_secret: str | None) -> DbConfig:
        """A job's ``--database-url``/``--password-secret`` (Dataproc passes them as batch args), else the env."""
        if database_url:
            return cls.from_url(database_url, password_secret or DEFAULT_PASSWORD_SECRET)
        config = cls.from_env()
        return cls(config.host, config.port, config.name, config.user, password_secret or config.password_secret)

    def named(self, component: str, run_id: str = "") -> DbConfig:
        """This config for the sessions of ``component`` in run ``run_id`` (their ``application_name``)."""
        from spark_src.common.pg import application_name

        return replace(self, application_name=application_name(component, run_id))

    @property
    def url(self) -> str:
        """Password-less URL, safe to log and to pass as a pipeline parameter."""
        return f"postgresql://{quote(self.user)}@{self.host}:{self.port}/{self.name}"

    @property
    def jdbc_url(self) -> str:
        # reWriteBatchedInserts turns JDBC batches into multi-row INSERTs (several times faster on PostgreSQL);
        # stringtype=unspecified lets the server cast Spark's strings to the column's own type (jsonb, date, …).
        return (
            f"jdbc:postgresql://{self.host}:{self.port}/{self.name}?reWriteBatchedInserts=true&stringtype=unspecified"
        )

    def table_uri(self, table: str) -> str:
        """Lineage URI of a table: ``postgresql://host:port/db/table`` (no credentials)."""
        return f"postgresql://{self.host}:{self.port}/{self.name}/{table}"

    def env(self) -> dict[str, str]:
        """The environment variables that :meth:`from_env` reads back (no password value)."""
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_NAME": self.name,
            "DB_USER": self.user,
            "DB_PASSWORD_SECRET": self.password_secret,
        }

    def password(self) -> str:
        return resolve_secret(self.password_secret)

    def sqlalchemy_url(self):
        """A SQLAlchemy URL object with the resolved password (its str() masks the password).

        Its query carries the session settings of :mod:`spark_src.common.pg` (application_name, timeouts,
        keepalives), so every engine made from it gets them; :func:`spark_src.common.pg.create_engine` also
        retries the connect.
        """
        from sqlalchemy.engine import URL

        from spark_src.common.pg import psycopg2_connect_args

        settings = psycopg2_connect_args(self.application_name or "defi-pipeline")
        return URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password(),
            host=self.host,
            port=self.port,
            database=self.name,
            query={key: str(value) for key, value in settings.items()},
        )


def optional_date(text: str) -> dt.date | None:
    """argparse type of an optional ISO date: an empty string (a pipeline's "not set") is None."""
    return dt.date.fromisoformat(text) if text.strip() else None


def validate_secret_ref(ref: str) -> None:
    if ref.startswith("env:") and re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", ref):
        return
    if _SECRET_MANAGER_REF.match(ref):
        return
    raise ConfigError(
        "a password secret reference is 'env:VAR' or 'projects/<p>/secrets/<id>[/versions/<v>]'; "
        "got a value of another shape (a password value is never accepted here)"
    )


def resolve_secret(ref: str) -> str:
    """Returns the secret named by ``ref``. The value is never logged."""
    validate_secret_ref(ref)
    if ref.startswith("env:"):
        var = ref[4:]
        value = os.environ.get(var)
        if value is None:
            raise ConfigError(f"the environment variable {var} (named by the secret reference) is not set")
        return value
    name = ref if "/versions/" in ref else f"{ref}/versions/latest"
    try:
        from google.cloud import secretmanager
    except ImportError:  # Dataproc's Python may lack the client: the REST call needs only the standard library
        return _access_secret_rest(name)
    response = secretmanager.SecretManagerServiceClient().access_secret_version(name=name)
    return response.payload.data.decode("utf-8")


METADATA_TOKEN_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"


def secret_access_request(name: str, token: str):
    """The Secret Manager REST request that reads version ``name`` (built apart from sending, to be testable)."""
    import urllib.request

    return urllib.request.Request(
        f"https://secretmanager.googleapis.com/v1/{name}:access", headers={"Authorization": f"Bearer {token}"}
    )


def _access_secret_rest(name: str) -> str:
    import base64
    import json
    import urllib.request

    token_request = urllib.request.Request(METADATA_TOKEN_URL, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(token_request, timeout=10) as response:
        token = json.load(response)["access_token"]
    with urllib.request.urlopen(secret_access_request(name, token), timeout=10) as response:
        payload = json.load(response)["payload"]["data"]
    return base64.b64decode(payload).decode("utf-8")
