"""Each known failure of the command line is one line (what, then the next step) and a non-zero exit code.

The commands run through the real ``cli`` group (its error handler) with click's CliRunner. Nothing here talks
to GCP: the credentials test points Application Default Credentials at a file that does not exist.
"""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from pipelines import cli as cli_module
from pipelines import errors
from pipelines.cli import cli, score_text
from tests.pipelines.gcp_settings import REAL_SETTINGS

DB_ENV = ("DB_URL", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_PASSWORD_SECRET")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _invoke(args: list[str], env: dict[str, str | None] | None = None):
    result = CliRunner().invoke(cli, args, env=env)
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result, lines


@pytest.fixture
def no_db_settings(monkeypatch):
    for name in DB_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kfp_must_not_start(monkeypatch):
    """Fails the test if the command gets as far as starting the pipeline."""

    def refuse(*args, **kwargs):
        raise AssertionError("run_local was called")

    monkeypatch.setattr(cli_module, "run_local", refuse)


@pytest.mark.usefixtures("no_db_settings", "kfp_must_not_start")
def test_run_local_without_database_settings():
    result, lines = _invoke(["run-local"])
    assert result.exit_code == errors.SETTINGS
    assert lines == [
        "error: settings: database settings missing from the environment: DB_HOST, DB_NAME, DB_USER (or DB_URL). "
        "Next: set DB_URL (or DB_HOST, DB_NAME, DB_USER) and DB_PASSWORD in the environment or .env "
        "(see .env.example)"
    ]


@pytest.mark.usefixtures("no_db_settings", "kfp_must_not_start")
def test_run_local_against_an_unreachable_database_fails_before_kfp_starts():
    port = _closed_port()
    result, lines = _invoke(["run-local", "--database-url", f"postgresql://metrics@127.0.0.1:{port}/defi"],
                            env={"DB_PASSWORD": "not-used"})  # fmt: skip
    assert result.exit_code == errors.DATABASE, result.output
    assert len(lines) == 1
    assert lines[0].startswith(f"error: cannot use the database postgresql://metrics@127.0.0.1:{port}/defi: ")
    assert "Connection refused" in lines[0] and "Next: check that the server is up" in lines[0]
    assert "not-used" not in result.output


@pytest.mark.usefixtures("no_db_settings", "kfp_must_not_start")
def test_a_database_without_the_schema_is_named(embedded_pg, db_config, engine, monkeypatch):
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    result, lines = _invoke(["run-local", "--database-url", db_config.url], env={"DB_PASSWORD": None})
    # DB_PASSWORD was removed: the missing password is a settings error, named before any connection.
    assert result.exit_code == errors.SETTINGS
    assert lines == [
        "error: settings: the environment variable DB_PASSWORD (named by the secret reference) is not set. "
        "Next: set DB_URL (or DB_HOST, DB_NAME, DB_USER) and DB_PASSWORD in the environment or .env "
        "(see .env.example)"
    ]
    monkeypatch.setenv("DB_PASSWORD", embedded_pg.password)
    result, lines = _invoke(["run-local", "--database-url", db_config.url])
    assert result.exit_code == errors.DATABASE
    assert lines == [
        f"error: cannot use the database {db_config.url}: tables missing: pools, raw_defillama_pool_history, "
        "raw_coinmarketcap_ohlcv, gas_fees_daily, pool_daily_metrics, pool_forecast_history, pipeline_runs. Next: "
        "create them "
        "with database/schema.sql (idempotent) and fill the raw tables"
    ]


@pytest.mark.usefixtures("kfp_must_not_start")
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--as-of", "2026-13-45"], "error: as_of must be a date YYYY-MM-DD (or empty), got '2026-13-45'."),
        (["--start", "2026-09-01", "--end", "2026-08-01"], "error: start 2026-09-01 is after end 2026-08-01."),
        (["--param", "password_secret=env:X"], "error: --param password_secret=… is set by this command;"),
        (["--param", "holdout_days=0"], "error: holdout_days must be a number >= 1, got 0."),
    ],
)
@pytest.mark.parametrize("command", ["run-local", "demo"])
def test_bad_parameters_are_refused_before_anything_starts(command, args, line):
    result, lines = _invoke([command, *args])
    assert result.exit_code == errors.SETTINGS, result.output
    assert len(lines) == 1 and lines[0].startswith(line), lines


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--world", "flat"], "error: unknown world 'flat'; one of default, hard, random_walk."),
        (["--pools", "0"], "error: need at least 1 pool and 2 days, got pools=0, days=120."),
    ],
)
def test_a_demo_of_data_that_cannot_be_generated_is_refused_before_anything_starts(args, line):
    result, lines = _invoke(["demo", *args])
    assert result.exit_code == errors.SETTINGS, result.output
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_lineage_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setattr("pipelines.local_run.RUNS_DIR", tmp_path)
    monkeypatch.setattr("pipelines.local_run.latest_run.__defaults__", (tmp_path,))
    result, lines = _invoke(["lineage"])
    assert result.exit_code == errors.NO_RUN
    assert lines == [f"error: no local run under {tmp_path}. Next: run `make demo` or `defi-pipeline run-local` first"]


def test_lineage_of_a_run_that_did_not_finish(tmp_path):
    run_dir = tmp_path / "20261128T010203-abcdef" / "defi-pool-metrics-20261128010203"
    (run_dir / "make-run-context").mkdir(parents=True)
    (run_dir / "make-run-context" / "executor_output.json").write_text('{"parameterValues": {"run_id": "r1"}}')
    result, lines = _invoke(["lineage", str(run_dir)])
    assert result.exit_code == errors.RUN_FAILED
    assert len(lines) == 1 and lines[0].startswith(f"error: the run {run_dir} did not finish"), lines


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--tag", "latest", "--dry-run"],
        ["schedule", "--dry-run"],
        ["publish"],
        ["compare"],
        ["compile", "--settings-from-env", "--out-dir", "{tmp}"],
    ],
)
def test_placeholder_settings_are_refused_by_every_command_that_talks_to_gcp(args, tmp_path, monkeypatch):
    for name in REAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    result, lines = _invoke([arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == errors.SETTINGS, result.output
    assert lines == [
        "error: GCP settings still hold the documented placeholders: GCP_PROJECT, SPARK_BUCKET, PIPELINE_BUCKET, "
        "PIPELINE_SERVICE_ACCOUNT, DATAPROC_SERVICE_ACCOUNT, NETWORK_ATTACHMENT, VPC_NETWORK, DATAPROC_SUBNETWORK, "
        "CLOUD_SQL_PASSWORD_SECRET. Next: run `make gcp-settings` (writes .env.gcp from Terraform) or export the "
        "GCP_* settings"
    ]
    assert not list(tmp_path.iterdir())  # nothing compiled, packaged or staged


def test_stage_refuses_a_placeholder_bucket(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARK_BUCKET", raising=False)
    result, lines = _invoke(["stage", "--dry-run", "--dist-dir", str(tmp_path)])
    assert result.exit_code == errors.SETTINGS
    assert len(lines) == 1 and lines[0].startswith(
        "error: GCP settings still hold the documented placeholders: SPARK_BUCKET."
    )
    assert not list(tmp_path.iterdir())


def test_compile_with_real_settings_refuses_the_placeholder_image(tmp_path, monkeypatch):
    for name, value in REAL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COMPONENT_BASE_IMAGE", "europe-west1-docker.pkg.dev/your-gcp-project/x:latest")
    result, lines = _invoke(["compile", "--settings-from-env", "--out-dir", str(tmp_path)])
    assert result.exit_code == errors.SETTINGS
    assert len(lines) == 1 and "COMPONENT_BASE_IMAGE is the placeholder" in lines[0]


def test_submit_refuses_an_experiment_parameter(monkeypatch):
    for name, value in REAL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    result, lines = _invoke(["submit", "--dry-run", "--param", "experiment=mine"])
    assert result.exit_code == errors.SETTINGS
    assert lines == [
        "error: --param experiment=… is set by this command; use --experiment instead. "
        "Next: fix the value (see --help of the command)"
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--param", "as_of=2026-13-45"], "error: as_of must be a date YYYY-MM-DD (or empty), got '2026-13-45'."),
        (["--param", "start=2026-09-01", "--param", "end=2026-08-01"], "error: start 2026-09-01 is after end"),
    ],
)
@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_submit_and_schedule_validate_dates(command, args, line, monkeypatch, tmp_path):
    """The committed template is compiled for the placeholder project: compile one for REAL_SETTINGS."""
    for name, value in REAL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    template = _real_template(tmp_path)
    result, lines = _invoke([command, "--dry-run", "--template", str(template), *args])
    assert result.exit_code == errors.SETTINGS, result.output
    assert len(lines) == 1 and lines[0].startswith(line), lines


def _real_template(tmp_path):
    from pipelines.cli import compile_pipelines
    from pipelines.settings import GcpSettings

    paths = compile_pipelines(tmp_path, GcpSettings.from_env())
    return next(p for p in paths if p.name == "pool_pipeline_vertex.yaml")


def test_submit_without_credentials(monkeypatch):
    """The template is at a registry URI (--tag), so it must be downloaded: without credentials that fails."""
    for name, value in REAL_SETTINGS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no probe of a metadata server
    result, lines = _invoke(["submit", "--tag", "latest", "--dry-run"])
    assert result.exit_code == errors.CREDENTIALS, result.output
    assert lines == [
        "error: no Google Cloud credentials (DefaultCredentialsError). Next: run `gcloud auth "
        "application-default login`; a --dry-run with a local --template needs none"
    ]


def test_env_example_lists_every_variable():
    import re

    from pipelines.deploy import settings_env_names
    from pipelines.settings import REPO_ROOT
    from spark_src.common.config import DbConfig

    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", (REPO_ROOT / ".env.example").read_text(), re.MULTILINE))
    database = {*DbConfig("h", 5432, "d", "u").env(), "DB_URL", "DB_PASSWORD"}
    assert listed == database | settings_env_names()


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.71325, "0.7133"), (123456.7, "123456.7000"), (4.848e299, "4.848e+299"), (-2e6, "-2e+06"), (None, "n/a")],
)
def test_scores_print_with_4_decimals_or_4_digits_when_huge(value, text):
    assert score_text(value) == text
