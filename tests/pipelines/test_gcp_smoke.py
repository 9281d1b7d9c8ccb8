"""gcp-smoke: its dry run offline (the real client libraries build both requests; nothing is sent, no account),
and its Dataproc batch under the rehearsal against the test session's real PostgreSQL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.gcp_smoke import smoke_batch_request
from pipelines.local_run import stage_rehearsal
from pipelines.settings import GcpSettings
from pipelines.targets import LocalTarget, VertexTarget
from rehearsal.launcher import submit
from spark_src.common.launch import smoke_args
from tests.pipelines.gcp_settings import REAL_SETTINGS

ENV = {
    **REAL_SETTINGS,
    "CLOUD_SQL_URL": "postgresql://metrics@10.8.0.5:5432/defi",
    "CODE_VERSION": "3f9c2ab",
}
JARS = "gs://acme-defi-spark-staging/jars"


def test_dry_run_prints_the_pipeline_job_and_the_batch_and_sends_nothing(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DB_PASSWORD", "never-printed-9f2c")

    result = CliRunner().invoke(cli, ["gcp-smoke", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert "never-printed-9f2c" not in result.output
    printed = json.loads(result.output[result.output.index("{") :])
    job = printed["pipeline_job"]
    assert job["parent"] == "projects/acme-defi/locations/europe-west4"
    assert job["pipelineJob"]["serviceAccount"] == ENV["PIPELINE_SERVICE_ACCOUNT"]
    # The pipeline's own network path: a PSC interface into the VPC (the default), as the real runs.
    assert job["pipelineJob"]["pscInterfaceConfig"] == {"networkAttachment": ENV["NETWORK_ATTACHMENT"]}
    assert "network" not in job["pipelineJob"]
    assert job["pipelineJob"]["pipelineSpec"] == "<pipeline defi-gcp-smoke: 1 tasks>"
    assert job["pipelineJob"]["runtimeConfig"]["parameterValues"] == {
        "database_url": ENV["CLOUD_SQL_URL"],
        "password_secret": ENV["CLOUD_SQL_PASSWORD_SECRET"],
    }
    batch = printed["dataproc_batch"]
    assert batch["parent"] == "projects/acme-defi/locations/europe-west4"
    spark = batch["batch"]["pysparkBatch"]
    assert spark["mainPythonFileUri"] == "gs://acme-defi-spark-staging/code/3f9c2ab/entrypoints/smoke.py"
    assert spark["pythonFileUris"] == [
        "gs://acme-defi-spark-staging/code/3f9c2ab/spark_src.zip",
        f"{JARS}/com.microsoft.azure__synapseml-lightgbm_2.12-1.1.3.jar",
        f"{JARS}/com.microsoft.azure__synapseml-core_2.12-1.1.3.jar",
    ]
    assert spark["args"] == [
        "--database-url", ENV["CLOUD_SQL_URL"], "--password-secret", ENV["CLOUD_SQL_PASSWORD_SECRET"],
        "--code-version", "3f9c2ab",
    ]  # fmt: skip
    execution = batch["batch"]["environmentConfig"]["executionConfig"]
    assert execution == {
        "serviceAccount": ENV["DATAPROC_SERVICE_ACCOUNT"],
        "subnetworkUri": ENV["DATAPROC_SUBNETWORK"],
    }


def test_the_smoke_batch_has_the_forecast_batchs_code_and_jars():
    settings = GcpSettings.from_env(ENV)
    smoke = smoke_batch_request(settings, "smoke-1")
    forecast = VertexTarget(settings).batch_request("forecast", "f-1", [])
    for key in ("python_file_uris", "jar_file_uris", "runtime_config_version", "subnetwork_uri", "service_account"):
        assert smoke[key] == forecast[key], key


def test_placeholder_settings_are_refused_in_one_line(monkeypatch):
    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    result = CliRunner().invoke(cli, ["gcp-smoke", "--dry-run"])
    assert result.exit_code != 0
    assert "placeholders" in result.output and "make gcp-settings" in result.output


@pytest.mark.slow
def test_the_smoke_batch_passes_under_the_rehearsal(db, db_config, tmp_path):
    """The smoke entry file, staged like on GCP, in the runtime-shaped Python: imports synapse.ml.lightgbm from
    the jars, creates a LightGBM estimator, reads the password and queries the database over JDBC."""
    gcs = tmp_path / "gcs"
    stage_rehearsal(gcs_root=gcs)
    batch = LocalTarget().batch("smoke") | {
        "args": smoke_args(database_url=db_config.url, password_secret="env:DB_PASSWORD", code_version="t1")
    }
    summary = submit(batch, gcs_root=gcs, echo=lambda line: None)
    assert summary["database"] == db_config.name
    assert summary["server_version"].startswith("16.")
    assert summary["synapseml_estimator"] == "LightGBMRegressor"
    assert summary["code_version"] == "t1"


def test_code_version_option_picks_the_staged_commit(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["gcp-smoke", "--dry-run", "--code-version", "77aa01b"])
    assert result.exit_code == 0, result.output
    spark = json.loads(result.output[result.output.index("{") :])["dataproc_batch"]["batch"]["pysparkBatch"]
    assert spark["mainPythonFileUri"] == "gs://acme-defi-spark-staging/code/77aa01b/entrypoints/smoke.py"
    assert spark["pythonFileUris"][0] == "gs://acme-defi-spark-staging/code/77aa01b/spark_src.zip"
