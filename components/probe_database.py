"""The one step of the ``gcp-smoke`` pipeline: reach the database the way every pipeline step does (the pipeline
job's network path, the password from Secret Manager) and run one query."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def probe_database(database_url: str, password_secret: str) -> str:
    """Reads the password from its secret reference, connects (10 s timeout) and asks the server who it is.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        password_secret: Secret reference of the password (a Secret Manager name on Vertex).

    Returns:
        ``<database> on PostgreSQL <version>``.
    """
    from sqlalchemy import create_engine, text

    from spark_src.common.config import DbConfig

    engine = create_engine(DbConfig.from_url(database_url, password_secret).sqlalchemy_url(),
                           connect_args={"connect_timeout": 10})  # fmt: skip
    try:
        with engine.connect() as conn:
            database, version = conn.execute(text("SELECT current_database(), current_setting('server_version')")).one()
    finally:
        engine.dispose()
    return f"{database} on PostgreSQL {version}"
