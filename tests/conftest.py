"""Session fixtures: one real PostgreSQL server (embedded, 127.0.0.1 + free port) and one local Spark session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from database.embedded import EmbeddedPostgres, embedded_postgres
from database.schema import init_schema
from spark_src.common import sql
from spark_src.common.config import DbConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    with embedded_postgres(root=REPO_ROOT / ".local" / "postgres-tests") as pg:
        previous = os.environ.get("DB_PASSWORD")
        os.environ["DB_PASSWORD"] = pg.password  # what env:DB_PASSWORD resolves to
        try:
            yield pg
        finally:
            if previous is None:
                os.environ.pop("DB_PASSWORD", None)
            else:
                os.environ["DB_PASSWORD"] = previous


@pytest.fixture(scope="session")
def db_config(embedded_pg: EmbeddedPostgres) -> DbConfig:
    return embedded_pg.config


@pytest.fixture(scope="session")
def engine(db_config: DbConfig) -> Iterator[Engine]:
    with sql.engine(db_config) as eng:
        yield eng


@pytest.fixture
def db(engine: Engine) -> Engine:
    """A database with the platform schema and no rows (reset for every test)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    init_schema(engine)
    return engine


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (UTC, 2 cores, small shuffles, UI off)."""
    from spark_src.common import jars
    from spark_src.common.session import build_session

    session = build_session(
        "tests",
        jars=jars.resolve_all([jars.JDBC_DRIVER, *jars.SYNAPSEML_LIGHTGBM]),
        extra_conf={"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "2g"},
    )
    yield session
    session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts Spark is ``slow`` (a JVM, then seconds per job): ``pytest -m "not slow"`` is the fast
    loop. Whole-pipeline and forecasting files mark themselves with ``pytestmark``."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
