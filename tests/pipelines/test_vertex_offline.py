"""The Vertex AI variant, checked offline with the real client libraries (kfp, google-cloud-aiplatform, GCPC,
google-cloud-dataproc): the compiled spec, the PipelineJob and Schedule requests, the Dataproc batches, the
runtime profiles, the handling of secrets and the comparison of local runs.

Google Cloud is not reachable from the tests. Requests are built by the libraries themselves; only the calls
that would go over the network are replaced, each named in the docstring of the test that replaces it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from google.auth.credentials import AnonymousCredentials
from google.protobuf import json_format

from pipelines.cli import compile_pipelines
from pipelines.runtime_profiles import DEFAULT_PROFILE, PROFILES, ProfileError, RuntimeProfile, check_profile
from pipelines.settings import GcpSettings
from pipelines.vertex import commands, compare, jobs, templates
from spark_src.common.config import secret_access_request, validate_secret_ref
from spark_src.common.jars import JDBC_DRIVER, SYNAPSEML_LIGHTGBM

# Recognisable, so that a leak anywhere (YAML, request, log, stdout) is found by a plain substring search.
TEST_PASSWORD = "pw-MUST-NOT-LEAK-7f3a9c"
EXPERIMENT = "defi-test-experiment"
SAMPLE_JOB_UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")
DATAPROC_LAUNCHER = "google_cloud_pipeline_components.container.v1.dataproc.create_pyspark_batch.launcher"

SETTINGS = GcpSettings(
    gcp_project="defi-test-project",
    gcp_region="europe-west4",
    spark_bucket="defi-test-spark",
    pipeline_bucket="defi-test-pipelines",
    pipeline_service_account="vertex-pipelines@defi-test-project.iam.gserviceaccount.com",
    dataproc_service_account="dataproc-spark@defi-test-project.iam.gserviceaccount.com",
    vpc_network="projects/123456789012/global/networks/defi-vpc",
    network_attachment="projects/defi-test-project/regions/europe-west4/networkAttachments/defi-vertex-psc",
    dataproc_subnetwork="projects/defi-test-project/regions/europe-west4/subnetworks/defi-dataproc",
    cloud_sql_url="postgresql://metrics@10.20.0.3:5432/defi",
    cloud_sql_password_secret="projects/defi-test-project/secrets/defi-db-password",
    code_version="abc1234",
    experiment=EXPERIMENT,
)


# --- fixtures and helpers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    """Both variants compiled with SETTINGS while DB_PASSWORD holds the test password."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DB_PASSWORD", TEST_PASSWORD)
        paths = compile_pipelines(tmp_path_factory.mktemp("compiled"), SETTINGS)
    return {path.stem.removeprefix("pool_pipeline_"): path for path in paths}


def read_spec(path: Path):
    """(PipelineSpec proto, PlatformSpec proto or None, spec dict) of a compiled file.

    A compiled file is one YAML document, or two when it carries a platform spec. ParseDict is strict: an unknown
    field name fails.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec()) if len(documents) > 1 else None
    return spec, platform, documents[0]


@pytest.fixture(scope="module")
def vertex_spec(compiled) -> dict:
    return read_spec(compiled["vertex"])[2]


@pytest.fixture
def offline_aiplatform(monkeypatch):
    """A fresh aiplatform configuration (project, region, anonymous credentials), undone after the test.

    ``aiplatform.init`` is ``initializer.global_config.init``; calling it on a fresh ``_Config`` keeps the settings
    from leaking into other tests.
    """
    from google.cloud.aiplatform import initializer

    config = initializer._Config()
    config.init(project=SETTINGS.gcp_project, location=SETTINGS.gcp_region, credentials=AnonymousCredentials())
    monkeypatch.setattr(initializer, "global_config", config)
    return config


@pytest.fixture
def settings_env(monkeypatch) -> None:
    """SETTINGS as environment variables, for the commands (GcpSettings.from_env)."""
    for f in dataclasses.fields(GcpSettings):
        if f.name != "extra_labels":
            monkeypatch.setenv(f.name.upper(), str(getattr(SETTINGS, f.name)))


def parameter_values(job) -> dict[str, Any]:
    return dict(json_format.MessageToDict(job._gca_resource._pb.runtime_config)["parameterValues"])


def dataproc_tasks(spec: dict) -> dict[str, dict]:
    """{task name: task} of the root DAG's DataprocPySparkBatchOp tasks (found by the GCPC launcher they run)."""
    executors = spec["deploymentSpec"]["executors"]
    found = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        component = spec["components"][task["componentRef"]["name"]]
        container = executors[component["executorLabel"]].get("container", {})
        if DATAPROC_LAUNCHER in container.get("command", []):
            found[name] = task
    return found


SAMPLE_NOW = "2026-06-19T23:59:58+00:00"  # a run that starts two seconds before midnight


def sample_outputs() -> dict[tuple[str, str], str]:
    """What the upstream tasks output at run time, by (component, output): the real run-context function on a
    sample job uuid, and sample forecast dates."""
    from components.run_context import make_run_context

    context = make_run_context.python_func(pipeline_job_id=SAMPLE_JOB_UUID, model_root=SETTINGS.model_root)
    return {
        **{("comp-make-run-context", key): value for key, value in context._asdict().items()},
        ("comp-make-run-context", "now"): SAMPLE_NOW,  # the real one is the clock: a fixed sample instead
        ("comp-resolve-run-range", "start"): "2026-06-17",
        ("comp-resolve-run-range", "end"): "2026-06-19",
        ("comp-resolve-run-range", "mode"): "incremental",
        ("comp-resolve-forecast-dates", "as_of"): "2026-06-19",
        ("comp-resolve-forecast-dates", "forecast_date"): "2026-06-20",
        ("comp-resolve-forecast-dates", "holdout_as_of"): "2026-06-16,2026-06-17,2026-06-18",
    }


def producer_component(spec: dict, output: dict) -> str:
    """The component (not the task name, which KFP numbers) that produces a ``taskOutputParameter``."""
    return spec["root"]["dag"]["tasks"][output["producerTask"]]["componentRef"]["name"]


def task_inputs(spec: dict, task_name: str) -> dict[str, Any]:
    """A task's input values as a run sees them: constants, the pipeline's defaults, upstream outputs (samples),
    with the ``{{$.inputs.parameters[…]}}`` placeholders inside constants filled in; unset inputs take the
    component's defaults."""
    task = spec["root"]["dag"]["tasks"][task_name]
    component = spec["components"][task["componentRef"]["name"]]
    pipeline_inputs = spec["root"]["inputDefinitions"]["parameters"]
    samples = sample_outputs()
    raw = {}
    for name, source in task["inputs"]["parameters"].items():
        if "runtimeValue" in source:
            raw[name] = source["runtimeValue"]["constant"]
        elif "componentInputParameter" in source:
            definition = pipeline_inputs[source["componentInputParameter"]]
            value = definition.get("defaultValue")
            # YAML holds integer defaults as 60.0; a run renders an integer parameter as 60.
            raw[name] = int(value) if definition["parameterType"] == "NUMBER_INTEGER" else value
        else:
            output = source["taskOutputParameter"]
            raw[name] = samples[(producer_component(spec, output), output["outputParameterKey"])]

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return INPUT_PLACEHOLDER.sub(lambda m: str(raw[m.group(1)]), value)
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    values = {
        name: d["defaultValue"]
        for name, d in component["inputDefinitions"]["parameters"].items()
        if "defaultValue" in d
    }
    values.update({name: fill(value) for name, value in raw.items() if not name.startswith("pipelinechannel--")})
    return values


def launcher_batch(spec: dict, task_name: str, inputs: dict[str, Any]):
    """The Batch the GCPC launcher sends: its compiled payload template filled with ``inputs``, emptied fields
    removed as the launcher does, parsed strictly into ``dataproc_v1.Batch``. Also the launcher's --project."""
    from google.cloud import dataproc_v1
    from google_cloud_pipeline_components.container.v1.gcp_launcher.utils import json_util

    task = spec["root"]["dag"]["tasks"][task_name]
    executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    args = spec["deploymentSpec"]["executors"][executor]["container"]["args"]

    def render(text: str) -> str:
        def value(match: re.Match) -> str:
            item = inputs[match.group(1)]
            return json.dumps(item) if isinstance(item, list | dict) else str(item)

        return INPUT_PLACEHOLDER.sub(value, text)

    payload = "".join(render(part) for part in json.loads(args[args.index("--payload") + 1])["Concat"])
    request = json_util.recursive_remove_empty(json.loads(payload))
    batch = dataproc_v1.Batch.wrap(json_format.ParseDict(request, dataproc_v1.Batch.pb()()))
    return batch, render(args[args.index("--project") + 1])


# --- the compiled spec ----------------------------------------------------------------------------------------
def test_both_variants_parse_into_the_pipeline_spec_proto(compiled):
    for variant, path in compiled.items():
        spec, platform, _ = read_spec(path)
        assert spec.pipeline_info.name.startswith("defi-pool-metrics"), variant
        assert spec.root.dag.tasks, variant
        assert platform is None or platform.platforms is not None
    vertex_defaults = read_spec(compiled["vertex"])[0].root.input_definitions.parameters
    assert vertex_defaults["password_secret"].default_value.string_value == SETTINGS.cloud_sql_password_secret
    assert vertex_defaults["database_url"].default_value.string_value == SETTINGS.cloud_sql_url


# --- the PipelineJob ------------------------------------------------------------------------------------------
def test_pipeline_job_carries_root_parameters_and_labels(compiled, offline_aiplatform):
    job = jobs.build_pipeline_job(SETTINGS, compiled["vertex"], {"train_days": "30", "start": "2026-06-01"})

    resource = job._gca_resource
    assert resource.runtime_config.gcs_output_directory == SETTINGS.pipeline_root
    # Dates without a mode ask for a backfill: the mode is made explicit in the run's parameters.
    assert parameter_values(job) == {"train_days": 30, "start": "2026-06-01", "mode": "range"}
    assert dict(resource.labels) == SETTINGS.labels == {"app": "defi-pool-pipeline", "code-version": "abc1234"}
    assert resource.display_name == "defi-pool-metrics-vertex-abc1234"
    assert resource.template_uri == ""  # a local file: no registry link
    assert job._parent == f"projects/{SETTINGS.gcp_project}/locations/{SETTINGS.gcp_region}"
    # enable_caching=False (the default) switches caching off for every task, whatever was compiled.
    tasks = json_format.MessageToDict(resource._pb.pipeline_spec)["root"]["dag"]["tasks"]
    assert {name: task["cachingOptions"] for name, task in tasks.items()} == {
        name: {"enableCache": False} for name in tasks
    }


def test_pipeline_job_from_a_registry_template_links_it(compiled, offline_aiplatform, monkeypatch):
    """Replaced network call: ``urllib.request.urlopen`` (the template download from Artifact Registry); it
    answers with the compiled YAML and records the request."""
    from google.oauth2.credentials import Credentials

    sent = []

    def urlopen(request, *args, **kwargs):
        sent.append(request)
        return mock.Mock(read=lambda: compiled["vertex"].read_bytes())

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    uri = f"{SETTINGS.template_host}/defi-pool-metrics-vertex/sha256:{'0' * 64}"
    job = jobs.build_pipeline_job(SETTINGS, uri, {}, credentials=Credentials(token="test-token"))

    assert job._gca_resource.template_uri == uri
    assert uri.startswith(f"https://{SETTINGS.gcp_region}-kfp.pkg.dev/{SETTINGS.gcp_project}/")
    assert [r.full_url for r in sent] == [uri, uri]  # our checks and PipelineJob read the same version
    assert {r.get_header("Authorization") for r in sent} == {"Bearer test-token"}


@pytest.mark.usefixtures("offline_aiplatform", "settings_env")
def test_schedule_by_tag_reads_the_published_template(compiled, vertex_spec, monkeypatch):
    """Replaced network call: ``urllib.request.urlopen`` (the template download from Artifact Registry)."""
    monkeypatch.setattr(
        "urllib.request.urlopen", lambda request, *a, **k: mock.Mock(read=compiled["vertex"].read_bytes)
    )
    # The registry names the package after the pipeline: the tag URI must point at what publish uploads.
    assert templates.template_uri(SETTINGS, "abc1234") == (
        f"{SETTINGS.template_host}/{vertex_spec['pipelineInfo']['name']}/abc1234"
    )
    runner = CliRunner()
    result = runner.invoke(commands.schedule_command, ["--tag", "abc1234", "--dry-run"])
    assert result.exit_code == 0, result.output
    sent = json.loads(result.output)["request"]["schedule"]["createPipelineJobRequest"]["pipelineJob"]
    assert sent["templateUri"] == templates.template_uri(SETTINGS, "abc1234")
    both = runner.invoke(commands.schedule_command, ["--tag", "abc1234", "--template", "x.yaml", "--dry-run"])
    assert both.exit_code != 0 and "not both" in both.output


@pytest.mark.parametrize(
    ("params", "secret"),
    [
        ({"password_secret": TEST_PASSWORD}, TEST_PASSWORD),
        ({"password_secret": "env:DB_PASSWORD"}, None),  # no Vertex or Dataproc worker has that variable
        ({"database_url": f"postgresql://metrics:{TEST_PASSWORD}@10.20.0.3:5432/defi"}, TEST_PASSWORD),
        ({"model_root": f"https://user:{TEST_PASSWORD}@example.com/models"}, TEST_PASSWORD),
    ],
)
def test_parameters_carrying_a_credential_are_refused(compiled, offline_aiplatform, params, secret):
    with pytest.raises(ValueError) as refused:
        jobs.build_pipeline_job(SETTINGS, compiled["vertex"], params)
    if secret:
        assert secret not in str(refused.value)


def test_unknown_or_mistyped_parameters_are_refused(compiled, offline_aiplatform):
    with pytest.raises(ValueError, match="no parameter 'password'"):
        jobs.build_pipeline_job(SETTINGS, compiled["vertex"], {"password": "x"})
    with pytest.raises(ValueError, match="train_days"):
        jobs.build_pipeline_job(SETTINGS, compiled["vertex"], {"train_days": "sixty"})


def test_a_template_compiled_for_another_project_is_refused(compiled, offline_aiplatform):
    elsewhere = dataclasses.replace(SETTINGS, gcp_project="another-project")
    with pytest.raises(ValueError, match="another-project"):
        jobs.build_pipeline_job(elsewhere, compiled["vertex"], {})


def test_submit_sends_service_account_network_and_no_password(compiled, offline_aiplatform, monkeypatch):
    """Replaced network calls: ``PipelineServiceClient.create_pipeline_job`` (the API call; it records the
    request), the pipeline-root bucket check of ``PipelineJob.submit`` (Cloud Storage and Resource Manager; it
    retries for two minutes offline) and the Metadata-service calls that validate and link the experiment."""
    from google.cloud import aiplatform, aiplatform_v1
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient

    monkeypatch.setenv("DB_PASSWORD", TEST_PASSWORD)
    sent = {}

    def create_pipeline_job(client, *, parent, pipeline_job, pipeline_job_id, timeout=None):
        sent["request"] = aiplatform_v1.CreatePipelineJobRequest(
            parent=parent, pipeline_job=pipeline_job, pipeline_job_id=pipeline_job_id
        )
        created = aiplatform_v1.PipelineJob(pipeline_job)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return created

    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", create_pipeline_job)
    monkeypatch.setattr(
        "google.cloud.aiplatform.utils.gcs_utils.create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        mock.Mock(return_value=SETTINGS.pipeline_root),
    )
    validate, associate = mock.Mock(), mock.Mock()
    monkeypatch.setattr(aiplatform.PipelineJob, "_validate_experiment", validate, raising=False)
    monkeypatch.setattr(aiplatform.PipelineJob, "_associate_to_experiment", associate, raising=False)

    job = jobs.submit(SETTINGS, compiled["vertex"], {"start": "2026-06-01"}, EXPERIMENT)

    request = sent["request"]
    assert request.parent == f"projects/{SETTINGS.gcp_project}/locations/{SETTINGS.gcp_region}"
    assert request.pipeline_job.service_account == SETTINGS.pipeline_service_account
    # Private Service Connect interface, the default: peering would reach the VPC's subnets, not Cloud SQL.
    assert request.pipeline_job.psc_interface_config.network_attachment == SETTINGS.network_attachment
    assert request.pipeline_job.network == ""
    assert job.resource_name.endswith(f"/pipelineJobs/{request.pipeline_job_id}")
    sent_parameters = json_format.MessageToDict(request.pipeline_job._pb.runtime_config)["parameterValues"]
    # Vertex links the run to the experiment, not the pipeline: its experiment parameter stays empty.
    assert sent_parameters == {"start": "2026-06-01", "mode": "range", "experiment": ""}
    validate.assert_called_once_with(EXPERIMENT)
    associate.assert_called_once_with(EXPERIMENT)
    serialized = aiplatform_v1.CreatePipelineJobRequest.to_json(request)
    assert TEST_PASSWORD not in serialized
    assert not re.search(r"postgres(ql)?://[^/@\s\"]+:[^/@\s\"]+@", serialized), "a database URL with a password"
    compiled_inputs = request.pipeline_job.pipeline_spec["root"]["inputDefinitions"]["parameters"]
    validate_secret_ref(compiled_inputs["password_secret"]["defaultValue"])  # the default the run uses

    # The dry run shows what is sent: same request but for the job id (a timestamp).
    dry = jobs.submit(SETTINGS, compiled["vertex"], {"start": "2026-06-01"}, EXPERIMENT, dry_run=True)
    dry.pipeline_job_id = request.pipeline_job_id
    assert dry == request


def test_peering_is_one_setting_away(compiled, offline_aiplatform):
    peering = dataclasses.replace(SETTINGS, vertex_networking="peering")
    job = jobs.submit(peering, compiled["vertex"], {}, EXPERIMENT, dry_run=True).pipeline_job
    assert (job.network, job.psc_interface_config.network_attachment) == (SETTINGS.vpc_network, "")
    scheduled = jobs.schedule(peering, compiled["vertex"], {}, jobs.DEFAULT_CRON, "d", EXPERIMENT, dry_run=True)
    assert scheduled.schedule.create_pipeline_job_request.pipeline_job.network == SETTINGS.vpc_network
    with pytest.raises(ValueError, match="psc or peering"):
        jobs.submit(dataclasses.replace(SETTINGS, vertex_networking="vpn"), compiled["vertex"], {}, "", dry_run=True)


def test_schedule_sends_cron_one_run_at_a_time_and_the_experiment(compiled, offline_aiplatform, monkeypatch):
    """Replaced network calls: ``ScheduleServiceClient.create_schedule`` (records the request),
    ``PipelineJobSchedule.list`` (answers with the new and a previous schedule of the same name) and
    ``PipelineJobSchedule.delete`` (records which schedule is deleted)."""
    from google.cloud import aiplatform, aiplatform_v1
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient

    deleted = []
    listed = {}

    def list_schedules(filter=None, **kwargs):
        listed["filter"] = filter
        return [
            mock.Mock(resource_name=f"{prefix}/schedules/{number}", delete=lambda n=number: deleted.append(n))
            for number in ("1234567890", "111")
        ]

    prefix = f"projects/{SETTINGS.gcp_project}/locations/{SETTINGS.gcp_region}"
    monkeypatch.setattr(aiplatform.PipelineJobSchedule, "list", staticmethod(list_schedules))

    sent = {}

    def create_schedule(client, *, parent, schedule, timeout=None):
        sent["parent"], sent["schedule"] = parent, aiplatform_v1.Schedule(schedule)
        created = aiplatform_v1.Schedule(schedule)
        created.name = f"{parent}/schedules/1234567890"
        return created

    monkeypatch.setattr(ScheduleServiceClient, "create_schedule", create_schedule)

    created = jobs.schedule(SETTINGS, compiled["vertex"], {}, jobs.DEFAULT_CRON, "defi-daily", EXPERIMENT)

    schedule = sent["schedule"]
    assert schedule.cron == "TZ=UTC 0 6 * * *"
    assert schedule.max_concurrent_run_count == 1
    assert schedule.max_run_count == 0  # unlimited
    assert schedule.display_name == "defi-daily"
    pipeline_job = schedule.create_pipeline_job_request.pipeline_job
    assert pipeline_job.service_account == SETTINGS.pipeline_service_account
    assert pipeline_job.psc_interface_config.network_attachment == SETTINGS.network_attachment
    assert pipeline_job.network == ""
    parameters = json_format.MessageToDict(pipeline_job._pb.runtime_config)["parameterValues"]
    assert parameters["experiment"] == EXPERIMENT  # schedules take no experiment: the last step logs the run
    assert TEST_PASSWORD not in aiplatform_v1.Schedule.to_json(schedule)
    assert created.resource_name.endswith("/schedules/1234567890")
    # The earlier schedule of the same name is replaced, the new one kept.
    assert (listed["filter"], deleted) == ('display_name="defi-daily"', ["111"])

    dry = jobs.schedule(SETTINGS, compiled["vertex"], {}, jobs.DEFAULT_CRON, "defi-daily", EXPERIMENT, dry_run=True)
    assert dry.parent == sent["parent"]
    assert dry.schedule == schedule


def test_publish_uploads_with_the_code_version_and_latest(compiled, monkeypatch):
    """Replaced network call: ``requests.post`` of the kfp RegistryClient (the upload); it records the call and
    answers like Artifact Registry (``<package>/sha256:<digest>``)."""
    from kfp.registry import ApiAuth

    calls = []

    def post(url, data=None, headers=None, files=None, auth=None):
        calls.append({"url": url, "data": data, "file": files["content"].name})
        return mock.Mock(text=f"defi-pool-metrics-vertex/sha256:{'a' * 64}", raise_for_status=lambda: None)

    monkeypatch.setattr("kfp.registry.registry_client.requests.post", post)
    uri = jobs.publish(SETTINGS, compiled["vertex"], auth=ApiAuth("test-token"))

    assert calls == [
        {"url": SETTINGS.template_host, "data": {"tags": "abc1234,latest"}, "file": str(compiled["vertex"])}
    ]
    assert uri == f"{SETTINGS.template_host}/defi-pool-metrics-vertex/sha256:{'a' * 64}"
    with pytest.raises(ValueError, match=r"database_url|password_secret"):  # local variant: "", env:DB_PASSWORD
        jobs.publish(SETTINGS, compiled["local"], auth=ApiAuth("test-token"))
    assert len(calls) == 1


# --- the Dataproc batches -------------------------------------------------------------------------------------
def test_every_dataproc_task_builds_a_valid_batch(vertex_spec):
    from pipelines.gcp_smoke import dataproc_batch
    from spark_src.forecast.main import parse_args as forecast_args
    from spark_src.pool_metrics.main import parse_args as pool_metrics_args

    parsers = {"pool_metrics": pool_metrics_args, "forecast": forecast_args}
    profile = PROFILES[SETTINGS.runtime_profile]
    tasks = dataproc_tasks(vertex_spec)
    jobs = set()
    for name in tasks:
        inputs = task_inputs(vertex_spec, name)
        job = inputs["labels"]["job"].replace("-", "_")
        jobs.add(job)
        # Field names and types are checked by the real library: a wrong name or type raises here (the args
        # are strings already in the compiled request, not made strings by the builder).
        assert all(isinstance(arg, str) for arg in inputs["args"]), name
        batch = dataproc_batch(inputs)
        # What GCPC's launcher really sends (its compiled payload template) is that same Batch.
        sent, launcher_project = launcher_batch(vertex_spec, name, inputs)
        assert sent == batch, name

        spark = batch.pyspark_batch
        assert spark.main_python_file_uri == SETTINGS.entry_file(job)
        # SynapseML's Python code ships inside its jars, which reach the Python path only as python files.
        assert list(spark.python_file_uris) == [
            SETTINGS.spark_src_zip,
            f"{SETTINGS.jars_prefix}/com.microsoft.azure__synapseml-lightgbm_2.12-1.1.3.jar",
            f"{SETTINGS.jars_prefix}/com.microsoft.azure__synapseml-core_2.12-1.1.3.jar",
        ]
        assert set(spark.python_file_uris[1:]) <= set(spark.jar_file_uris)
        assert parsers[job](list(spark.args)).code_version == SETTINGS.code_version  # no git on Dataproc
        assert spark.jar_file_uris and all(uri.endswith(".jar") for uri in spark.jar_file_uris)
        assert any("postgresql" in uri for uri in spark.jar_file_uris)
        # Jars built for the runtime's Scala line only (synapseml-lightgbm_2.12 on Scala 2.12).
        assert {m for uri in spark.jar_file_uris for m in re.findall(r"_(2\.1\d)-", uri)} <= {profile.scala_version}
        assert batch.runtime_config.version == profile.runtime_version
        assert dict(batch.runtime_config.properties) == profile.job_properties[job]
        assert batch.environment_config.execution_config.service_account == SETTINGS.dataproc_service_account
        assert batch.environment_config.execution_config.subnetwork_uri == SETTINGS.dataproc_subnetwork
        assert inputs["project"] == launcher_project == SETTINGS.gcp_project  # not GCPC's placeholder default
        assert inputs["location"] == SETTINGS.gcp_region

        args = list(spark.args)
        secret = args[args.index("--password-secret") + 1]
        validate_secret_ref(secret)
        assert secret == SETTINGS.cloud_sql_password_secret
        parsed = parsers[job](args)  # the job's own argument parser accepts what the batch passes
        assert parsed.database_url == SETTINGS.cloud_sql_url
        if job == "forecast":
            assert batch.runtime_config.properties["spark.dynamicAllocation.enabled"] == "false"
            assert parsed.train_days == 60
    assert jobs == {"pool_metrics", "forecast"}


def test_batch_ids_come_from_the_run_and_are_valid(vertex_spec):
    from components.run_context import make_run_context

    tasks = vertex_spec["root"]["dag"]["tasks"]
    for name, task in dataproc_tasks(vertex_spec).items():
        source = task["inputs"]["parameters"]["batch_id"]["taskOutputParameter"]
        assert producer_component(vertex_spec, source) == "comp-make-run-context", name
        job_id = tasks[source["producerTask"]]["inputs"]["parameters"]["pipeline_job_id"]["runtimeValue"]["constant"]
        assert job_id in ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}")  # filled in per run by Vertex
        ids = {
            getattr(
                make_run_context.python_func(pipeline_job_id=run, model_root="gs://b/m"), source["outputParameterKey"]
            )
            for run in (SAMPLE_JOB_UUID, "0c8e2f4a-1b3d-4c5e-9f7a-2b4c6d8e0f1a")
        }
        assert len(ids) == 2, "two runs would start batches with the same id"
        for batch_id in ids:
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]{2,61}[a-z0-9]", batch_id), batch_id  # Dataproc's rule


def test_one_clock_per_run_reaches_the_run_range_the_metrics_jobs_and_the_forecast_dates(compiled):
    """The run context's ``now`` is the time bound of the run range, the Spark metrics job (a Dataproc batch arg
    on Vertex, a component input locally), the legacy metrics job and the forecast dates (the default as_of):
    a run crossing midnight cannot disagree."""
    from components.run_context import make_run_context

    now = SAMPLE_NOW
    for variant, path in compiled.items():
        spec = read_spec(path)[2]
        clocks = {}
        for name, task in spec["root"]["dag"]["tasks"].items():
            if "now" not in task["inputs"]["parameters"] and name not in dataproc_tasks(spec):
                continue
            inputs = task_inputs(spec, name)
            component = task["componentRef"]["name"]
            if "now" in inputs:
                clocks[component] = inputs["now"]
            elif "--now" in inputs.get("args", []):
                clocks[f"{component}:{inputs['labels']['job']}"] = inputs["args"][inputs["args"].index("--now") + 1]
        expected = {"comp-resolve-run-range", "comp-run-legacy-metrics", "comp-resolve-forecast-dates"} | (
            {"comp-run-pool-metrics-local"}
            if variant == "local"
            else {"comp-dataproc-create-pyspark-batch:pool-metrics"}
        )
        assert clocks == dict.fromkeys(expected, now), variant
    # The real context's clock: UTC, with its offset, now.
    clock = dt.datetime.fromisoformat(make_run_context.python_func(pipeline_job_id=SAMPLE_JOB_UUID).now)
    assert clock.utcoffset() == dt.timedelta(0)
    assert abs(clock - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


def test_caching_is_off_for_every_task_that_reads_the_database(vertex_spec):
    tasks = vertex_spec["root"]["dag"]["tasks"]
    reads_database = {
        name
        for name, task in tasks.items()
        if {"database_url", "pipelinechannel--database_url"} & set(task.get("inputs", {}).get("parameters", {}))
    }
    assert set(dataproc_tasks(vertex_spec)) <= reads_database
    cached = {name for name in reads_database if tasks[name].get("cachingOptions", {}).get("enableCache")}
    assert not cached, f"tasks that read the database but may be served from the cache: {sorted(cached)}"


# --- runtime profiles -----------------------------------------------------------------------------------------
def test_every_profile_passes_the_scala_check():
    for profile in PROFILES.values():
        assert check_profile(profile) is profile


def test_a_scala_2_13_runtime_with_2_12_jars_is_refused():
    mismatched = RuntimeProfile(
        name="dataproc-2.1-synapseml-2.12",
        runtime_version="2.1",
        spark_version="3.4",
        scala_version="2.13",
        python_version="3.11",
        jars=(JDBC_DRIVER, *SYNAPSEML_LIGHTGBM),
    )
    with pytest.raises(ProfileError, match=r"_2\.12"):
        check_profile(mismatched)


def test_the_default_profile_runs_the_installed_spark_line():
    import pyspark

    assert PROFILES[DEFAULT_PROFILE].spark_version == ".".join(pyspark.__version__.split(".")[:2])


# --- secrets --------------------------------------------------------------------------------------------------
def test_the_password_appears_nowhere(compiled, offline_aiplatform, settings_env, monkeypatch, caplog, capsys):
    monkeypatch.setenv("DB_PASSWORD", TEST_PASSWORD)
    caplog.set_level(logging.DEBUG)
    jobs.submit(SETTINGS, compiled["vertex"], {"start": "2026-06-01"}, EXPERIMENT, dry_run=True)
    jobs.schedule(SETTINGS, compiled["vertex"], {}, jobs.DEFAULT_CRON, "defi-daily", EXPERIMENT, dry_run=True)
    runner = CliRunner()
    outputs = []
    for command in (commands.submit_command, commands.schedule_command):
        result = runner.invoke(command, ["--template", str(compiled["vertex"]), "--dry-run"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert json.loads(outputs[0])["request"]["pipelineJob"]["serviceAccount"] == SETTINGS.pipeline_service_account
    assert "create pipeline job" in caplog.text and "create schedule" in caplog.text

    captured = capsys.readouterr()
    texts = {
        **{f"compiled {name}": path.read_text() for name, path in compiled.items()},
        "logs": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        **{f"command output {i}": text for i, text in enumerate(outputs)},
    }
    leaked = [where for where, text in texts.items() if TEST_PASSWORD in text]
    assert not leaked, f"the password appears in {leaked}"


def test_secret_access_request_names_the_version_and_carries_the_token():
    request = secret_access_request("projects/p/secrets/s/versions/latest", "tok")
    assert request.full_url == "https://secretmanager.googleapis.com/v1/projects/p/secrets/s/versions/latest:access"
    assert request.get_header("Authorization") == "Bearer tok"
    assert request.get_method() == "GET"


# --- comparing local runs -------------------------------------------------------------------------------------
def _write_run(runs_dir: Path, stamp: str, outputs: dict[str, dict]) -> Path:
    """A kfp.local run folder: <runs_dir>/<stamp>-<hex>/<pipeline run>/<task>/executor_output.json."""
    run_dir = runs_dir / f"{stamp}-0a0b0c" / f"defi-pool-metrics-{stamp}"
    for task, output in outputs.items():
        (run_dir / task).mkdir(parents=True)
        (run_dir / task / "executor_output.json").write_text(json.dumps(output))
    return run_dir


def _metrics(name: str, metadata: dict[str, float]) -> dict:
    return {"artifacts": {name: {"artifacts": [{"name": name, "uri": f"/runs/{name}", "metadata": metadata}]}}}


def test_compare_local_builds_one_row_per_run(tmp_path):
    runs = tmp_path / "runs"
    _write_run(
        runs,
        "20261120T060000",
        {
            "make-run-context": {"parameterValues": {"run_id": "1111111", "model_dir": "/m/1111111"}},
            "resolve-forecast-dates": {
                "parameterValues": {"as_of": "2026-06-19", "forecast_date": "2026-06-20", "holdout_as_of": "a,b"}
            },
            "evaluate-metrics-parity": _metrics("parity", {"parity_rows_compared": 295.0, "parity_pass": 1.0}),
            "evaluate-forecasts": {
                "parameterValues": {"spark_apy_mae": 0.87},
                **_metrics("forecast_metrics", {"forecast_spark_apy_mae": 0.87, "forecast_legacy_apy_mae": 0.91}),
            },
        },
    )
    _write_run(
        runs,
        "20261121T060000",
        {
            "make-run-context": {"parameterValues": {"run_id": "2222222"}},
            "resolve-forecast-dates": {"parameterValues": {"as_of": "2026-06-20", "forecast_date": "2026-06-21"}},
            "evaluate-metrics-parity": _metrics("parity", {"parity_skipped": 1.0}),
            "evaluate-forecasts": _metrics("forecast_metrics", {"forecast_spark_apy_mae": 0.80}),
        },
    )
    # A run that failed before any metric: left out.
    _write_run(runs, "20261122T060000", {"make-run-context": {"parameterValues": {"run_id": "3333333"}}})

    table = compare.local_runs_table(runs)

    assert list(table["run_id"]) == ["1111111", "2222222"]
    assert list(table["date"]) == [pd.Timestamp("2026-11-20T06:00:00Z"), pd.Timestamp("2026-11-21T06:00:00Z")]
    assert list(table["param.as_of"]) == ["2026-06-19", "2026-06-20"]
    assert list(table["metric.forecast_spark_apy_mae"]) == [0.87, 0.80]
    assert table["metric.forecast_legacy_apy_mae"].iloc[0] == 0.91
    assert pd.isna(table["metric.forecast_legacy_apy_mae"].iloc[1])
    assert table["metric.parity_pass"].iloc[0] == 1.0 and pd.isna(table["metric.parity_pass"].iloc[1])
    assert table["metric.parity_skipped"].iloc[1] == 1.0
    assert not any(c.startswith("metric.") and "spark_apy_mae" == c[7:] for c in table.columns)  # not a metric

    csv = tmp_path / "runs.csv"
    result = CliRunner().invoke(commands.compare_command, ["--local", "--runs-dir", str(runs), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    assert "1111111" in result.output and "2222222" in result.output and "3333333" not in result.output
    assert len(pd.read_csv(csv)) == 2
