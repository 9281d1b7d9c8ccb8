"""Offline checks of the deployment: the Terraform under terraform/ (parsed with python-hcl2, no terraform binary),
cloudbuild.yaml, the Dockerfile, the README, and the contract between them and the code: the GCS URIs
``stage`` uploads are the URIs the compiled Vertex pipeline reads, and Terraform's outputs are the settings'
environment. Each test fails when a path, variable, reference or role is broken."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet

from pipelines import deploy
from pipelines.cli import compile_pipelines
from pipelines.runtime_profiles import PROFILES, get_profile
from pipelines.settings import REPO_ROOT, GcpSettings
from spark_src.common import jars
from tests.pipelines.gcp_settings import REAL_SETTINGS

TERRAFORM = REPO_ROOT / "terraform"
CLOUDBUILD = REPO_ROOT / "cloudbuild.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DEPLOY_DOC = REPO_ROOT / "README.md"  # its "Run on Vertex AI" and "Deploy to GCP" sections
TF_FILES = ["versions.tf", "variables.tf", "outputs.tf", "network.tf", "secrets.tf", "dataproc.tf", "vertex.tf"]

# --- Terraform, as python-hcl2 sees it ------------------------------------------------------------------------------

_RESOURCE_REF = re.compile(r"(?<![\w.])(data\.)?(google_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")
_VAR_REF = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
_LOCAL_REF = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
_ROLE = re.compile(r"roles/[A-Za-z0-9_.]+")
_INTERPOLATION_ONLY = re.compile(r"^\$\{local\.([A-Za-z_][\w-]*)\}$")
_BROAD_PROJECT_ROLES = {
    "roles/owner",
    "roles/editor",
    "roles/iam.serviceAccountUser",
    "roles/secretmanager.secretAccessor",
}


def _strings(node: Any) -> Iterator[str]:
    """Every string value (not key) of a parsed HCL document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


class Terraform:
    def __init__(self, root: Path) -> None:
        self.files = {path.name: hcl2.load(path.open()) for path in sorted(root.glob("*.tf"))}
        self.resources: dict[tuple[str, str], dict] = {}
        self.data: dict[tuple[str, str], dict] = {}
        self.variables: dict[str, dict] = {}
        self.locals: dict[str, Any] = {}
        self.outputs: dict[str, dict] = {}
        self.duplicates: list[str] = []  # terraform refuses two blocks with one address; a dict would hide them
        for name, document in self.files.items():
            for kind, index in (("resource", self.resources), ("data", self.data)):
                for block in document.get(kind, []):
                    for type_, instances in block.items():
                        for instance, body in instances.items():
                            if (type_, instance) in index:
                                self.duplicates.append(f"{name}: {kind} {type_}.{instance}")
                            index[(type_, instance)] = body
            for block in document.get("variable", []):
                self.variables.update({variable: {**body, "_file": name} for variable, body in block.items()})
            for block in document.get("locals", []):
                self.locals.update(block)
            for block in document.get("output", []):
                self.outputs.update(block)

    def resolve(self, value: Any) -> Any:
        """``${local.x}`` -> the local's value; strings have their ``${local.x}`` parts replaced (a few levels)."""
        if isinstance(value, str):
            whole = _INTERPOLATION_ONLY.match(value)
            if whole:
                return self.resolve(self.locals[whole.group(1)])
            for _ in range(5):
                value = re.sub(
                    r"\$\{local\.([A-Za-z_][\w-]*)\}",
                    lambda m: str(self.locals[m.group(1)]),
                    value,
                )
        return value

    def refs(self, value: Any, type_: str) -> set[str]:
        """Names of the ``type_`` resources a value refers to (through locals)."""
        strings = (resolved for s in _strings(value) for resolved in _strings(self.resolve(s)))
        return {
            m.group(3) for s in strings for m in _RESOURCE_REF.finditer(s) if m.group(2) == type_ and not m.group(1)
        }

    def gcp_settings(self) -> dict[str, str]:
        return self.resolve(self.outputs["gcp_settings"]["value"])

    def setting_resource(self, key: str, type_: str) -> str:
        """The ``type_`` resource behind an entry of the gcp_settings output (e.g. the Dataproc service account)."""
        names = self.refs(self.gcp_settings()[key], type_)
        assert len(names) == 1, f"gcp_settings.{key} should name one {type_}, names {sorted(names)}"
        return names.pop()

    def grants(self) -> Iterator[dict]:
        """Every IAM grant: where (project / bucket / secret / ...), which roles, to which service accounts."""
        for (type_, name), body in self.resources.items():
            match = re.fullmatch(r"google_(\w+)_iam_(member|binding|policy)", type_)
            if not match:
                continue
            members = body.get("members", [body.get("member", "")])
            yield {
                "address": f"{type_}.{name}",
                "scope": match.group(1),
                "kind": match.group(2),
                "body": body,
                "roles": set(_ROLE.findall(" ".join(_strings([body.get("role", ""), body.get("for_each", "")])))),
                "accounts": self.refs(members, "google_service_account"),
            }


@pytest.fixture(scope="module")
def tf() -> Terraform:
    return Terraform(TERRAFORM)


@pytest.mark.parametrize("name", TF_FILES)
def test_each_concern_has_its_terraform_file_and_it_parses(name):
    assert (TERRAFORM / name).exists(), f"terraform/{name} is missing"
    assert hcl2.load((TERRAFORM / name).open()) is not None


def test_every_variable_used_is_declared_in_variables_tf_with_a_type_and_description(tf):
    used = {m.group(1): name for name, doc in tf.files.items() for s in _strings(doc) for m in _VAR_REF.finditer(s)}
    undeclared = {var: f"terraform/{name}" for var, name in used.items() if var not in tf.variables}
    assert not undeclared, f"var.X used but not declared in variables.tf: {undeclared}"
    # A variable that only its own validation mentions is still unused.
    used_by_resources = {
        m.group(1)
        for name, doc in tf.files.items()
        if name != "variables.tf"
        for s in _strings(doc)
        for m in _VAR_REF.finditer(s)
    }
    elsewhere = {var for var, body in tf.variables.items() if body["_file"] != "variables.tf"}
    assert not elsewhere, f"variables declared outside variables.tf: {sorted(elsewhere)}"
    incomplete = {var for var, body in tf.variables.items() if not body.get("description") or "type" not in body}
    assert not incomplete, f"variables without description or type: {sorted(incomplete)}"
    unused = set(tf.variables) - used_by_resources
    assert not unused, f"variables nothing uses: {sorted(unused)}"


def test_tfvars_example_sets_declared_variables_and_every_required_one(tf):
    example = hcl2.load((TERRAFORM / "terraform.tfvars.example").open())
    assert not set(example) - set(tf.variables), f"unknown variables: {sorted(set(example) - set(tf.variables))}"
    required = {var for var, body in tf.variables.items() if "default" not in body}
    assert required <= set(example), f"required variables missing from the example: {sorted(required - set(example))}"


def test_every_resource_data_and_local_reference_exists(tf):
    assert not tf.duplicates, f"declared twice: {tf.duplicates}"
    missing = set()
    for name, doc in tf.files.items():
        for s in _strings(doc):
            for m in _RESOURCE_REF.finditer(s):
                index = tf.data if m.group(1) else tf.resources
                if (m.group(2), m.group(3)) not in index:
                    missing.add(f"{name}: {m.group(0)}")
            missing |= {f"{name}: local.{m.group(1)}" for m in _LOCAL_REF.finditer(s) if m.group(1) not in tf.locals}
    assert not missing, f"references to nothing: {sorted(missing)}"


def test_no_project_wide_grant_of_storage_secrets_act_as_or_basic_roles(tf):
    for grant in tf.grants():
        if grant["scope"] != "project":
            continue
        assert grant["kind"] != "policy", f"{grant['address']}: authoritative project policy would drop other grants"
        assert grant["roles"], f"{grant['address']}: role is not a literal, so it cannot be audited"
        broad = {r for r in grant["roles"] if r in _BROAD_PROJECT_ROLES or r.startswith("roles/storage.")}
        assert not broad, f"{grant['address']} grants {sorted(broad)} on the whole project; grant it on the resource"


def _grants_to(tf: Terraform, account: str) -> list[dict]:
    return [g for g in tf.grants() if account in g["accounts"]]


def test_dataproc_account_has_the_worker_role_and_object_access_on_the_two_buckets_only(tf):
    account = tf.setting_resource("DATAPROC_SERVICE_ACCOUNT", "google_service_account")
    spark = tf.setting_resource("SPARK_BUCKET", "google_storage_bucket")
    pipeline = tf.setting_resource("PIPELINE_BUCKET", "google_storage_bucket")
    grants = _grants_to(tf, account)
    project_roles = set().union(*(g["roles"] for g in grants if g["scope"] == "project"))
    assert "roles/dataproc.worker" in project_roles, "Dataproc Serverless requires the batch account's worker role"
    storage = [g for g in grants if any(r.startswith("roles/storage.") for r in g["roles"])]
    assert {g["scope"] for g in storage} == {"storage_bucket"}, "storage roles must be granted on buckets"
    buckets = set().union(*(tf.refs(g["body"]["bucket"], "google_storage_bucket") for g in storage))
    assert buckets == {spark, pipeline}, f"object access on {sorted(buckets)}, expected the spark and pipeline buckets"


def test_db_password_is_readable_only_through_grants_on_the_one_secret(tf):
    secret = tf.setting_resource("CLOUD_SQL_PASSWORD_SECRET", "google_secret_manager_secret")
    readers = [g for g in tf.grants() if "roles/secretmanager.secretAccessor" in g["roles"]]
    for grant in readers:
        assert grant["scope"] == "secret_manager_secret", f"{grant['address']}: accessor not granted on the secret"
        assert tf.refs(grant["body"]["secret_id"], "google_secret_manager_secret") == {secret}, grant["address"]
    accounts = set().union(*(g["accounts"] for g in readers))
    for key in ("DATAPROC_SERVICE_ACCOUNT", "PIPELINE_SERVICE_ACCOUNT"):
        assert tf.setting_resource(key, "google_service_account") in accounts, f"{key} cannot read the password"
    versions = [name for (type_, name) in tf.resources if type_ == "google_secret_manager_secret_version"]
    assert not versions, "a secret version in Terraform puts the password into the state; add it with gcloud"


def test_pipelines_account_runs_jobs_creates_batches_and_acts_as_the_dataproc_account_only(tf):
    account = tf.setting_resource("PIPELINE_SERVICE_ACCOUNT", "google_service_account")
    dataproc = tf.setting_resource("DATAPROC_SERVICE_ACCOUNT", "google_service_account")
    grants = _grants_to(tf, account)
    project_roles = set().union(*(g["roles"] for g in grants if g["scope"] == "project"))
    assert {"roles/aiplatform.user", "roles/dataproc.editor"} <= project_roles
    act_as = [g for g in grants if "roles/iam.serviceAccountUser" in g["roles"]]
    targets = set().union(*(tf.refs(g["body"]["service_account_id"], "google_service_account") for g in act_as))
    assert targets == {dataproc}, f"the pipelines account acts as {sorted(targets)}; it needs the Dataproc one only"
    image_repo = tf.refs(tf.locals["component_image_repository"], "google_artifact_registry_repository")
    readable = {
        name
        for g in grants
        if g["scope"] == "artifact_registry_repository"
        for name in tf.refs(g["body"]["repository"], "google_artifact_registry_repository")
    }
    assert image_repo <= readable, "pipeline jobs must be able to pull the components' image"


def test_artifact_registry_holds_kfp_templates_and_the_docker_image(tf):
    templates = tf.setting_resource("TEMPLATE_REPOSITORY", "google_artifact_registry_repository")
    assert tf.resources[("google_artifact_registry_repository", templates)]["format"] == "KFP"
    for image_repo in tf.refs(tf.gcp_settings()["COMPONENT_BASE_IMAGE"], "google_artifact_registry_repository"):
        assert tf.resources[("google_artifact_registry_repository", image_repo)]["format"] == "DOCKER"


def test_network_gives_batches_google_access_and_vertex_a_peering_by_project_number(tf):
    subnet_name = tf.setting_resource("DATAPROC_SUBNETWORK", "google_compute_subnetwork")
    subnet = tf.resources[("google_compute_subnetwork", subnet_name)]
    assert subnet["private_ip_google_access"] is True, "batches have internal IPs only: Private Google Access"
    subnet_range = {subnet["ip_cidr_range"], f"${{google_compute_subnetwork.{subnet_name}.ip_cidr_range}}"}
    internal = [
        body
        for (type_, _), body in tf.resources.items()
        if type_ == "google_compute_firewall"
        and body.get("direction", "INGRESS") == "INGRESS"
        and set(body.get("source_ranges", [])) & subnet_range
        and any(rule.get("protocol") == "all" for rule in body.get("allow", []))
    ]
    assert internal, "Dataproc Serverless needs an ingress rule allowing all traffic from the subnet's range"

    vpc = tf.setting_resource("VPC_NETWORK", "google_compute_network")
    assert "${data.google_project." in tf.gcp_settings()["VPC_NETWORK"] and ".number}" in tf.gcp_settings()[
        "VPC_NETWORK"], "Vertex AI wants projects/<NUMBER>/global/networks/<name>"  # fmt: skip
    ranges = {name for (type_, name), body in tf.resources.items()
              if type_ == "google_compute_global_address" and body.get("purpose") == "VPC_PEERING"
              and tf.refs(body.get("network"), "google_compute_network") == {vpc}}  # fmt: skip
    assert ranges, "no private services access range (purpose VPC_PEERING) on the VPC"
    connections = [body for (type_, _), body in tf.resources.items() if type_ == "google_service_networking_connection"]
    assert any(
        tf.refs(c["network"], "google_compute_network") == {vpc}
        and tf.refs(c["reserved_peering_ranges"], "google_compute_global_address") & ranges
        for c in connections
    ), "no service networking connection of the VPC over its VPC_PEERING range (Cloud SQL private IP, Vertex)"


def test_buckets_use_iam_only_and_the_lifecycle_never_deletes_staged_code_or_jars(tf):
    layout = GcpSettings(spark_bucket="b", code_version="abc1234")
    kept = [uri.removeprefix("gs://b/") for uri in (layout.spark_src_zip, layout.entry_file("forecast"))]
    kept.append(f"{layout.jars_prefix}/x.jar".removeprefix("gs://b/"))
    for key in ("SPARK_BUCKET", "PIPELINE_BUCKET"):
        bucket = tf.resources[("google_storage_bucket", tf.setting_resource(key, "google_storage_bucket"))]
        assert bucket.get("uniform_bucket_level_access") is True, f"{key}: object ACLs would bypass bucket IAM"
    spark = tf.resources[("google_storage_bucket", tf.setting_resource("SPARK_BUCKET", "google_storage_bucket"))]
    rules = spark.get("lifecycle_rule", [])
    assert rules, "the spark bucket has no lifecycle rule: temp/ grows forever"
    for rule in rules:
        if rule["action"][0]["type"] != "Delete":
            continue
        prefixes = rule["condition"][0].get("matches_prefix")
        assert prefixes, "a Delete rule without matches_prefix would delete the staged code and jars too"
        doomed = [path for path in kept for prefix in prefixes if path.startswith(prefix)]
        assert not doomed, f"lifecycle prefixes {prefixes} would delete {doomed}"


def test_gcp_settings_output_is_the_settings_environment(tf):
    keys = set(tf.gcp_settings())
    assert keys <= deploy.settings_env_names(), (
        f"not read by pipelines.settings: {sorted(keys - deploy.settings_env_names())}"
    )
    infrastructure = {"GCP_PROJECT", "GCP_REGION", "SPARK_BUCKET", "PIPELINE_BUCKET", "PIPELINE_SERVICE_ACCOUNT",
                      "DATAPROC_SERVICE_ACCOUNT", "VPC_NETWORK", "DATAPROC_SUBNETWORK", "CLOUD_SQL_URL",
                      "CLOUD_SQL_PASSWORD_SECRET", "TEMPLATE_REPOSITORY", "COMPONENT_BASE_IMAGE"}  # fmt: skip
    assert infrastructure <= keys, f"would fall back to placeholders: {sorted(infrastructure - keys)}"


def test_provider_and_terraform_versions_are_pinned(tf):
    (block,) = tf.files["versions.tf"]["terraform"]
    assert block.get("required_version")
    google = block["required_providers"][0]["google"]
    assert google["source"] == "hashicorp/google" and google["version"].startswith("~>")


# --- settings from Terraform's outputs -------------------------------------------------------------------------------

_OUTPUTS = {
    "gcp_settings": {
        "sensitive": False,
        "type": ["object", {}],
        "value": {
            **REAL_SETTINGS,
            "VERTEX_NETWORKING": "psc",
            "COMPONENT_BASE_IMAGE": "europe-west4-docker.pkg.dev/acme-defi/defi-pipeline-images/components:latest",
        },
    },
    "cloudbuild_service_account": {"sensitive": False, "type": "string", "value": "projects/acme-defi/x"},
}


def test_gcp_settings_command_writes_env_lines_the_settings_read_back(tmp_path):
    out = tmp_path / ".env.gcp"
    result = CliRunner().invoke(deploy.gcp_settings_command, ["--out", str(out)], input=json.dumps(_OUTPUTS))
    assert result.exit_code == 0, result.output
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if not line.startswith("#"))
    assert env == _OUTPUTS["gcp_settings"]["value"]
    settings = GcpSettings.from_env(env)
    assert (settings.gcp_region, settings.spark_bucket) == ("europe-west4", "acme-defi-spark-staging")


def test_gcp_settings_refuses_keys_the_settings_do_not_read():
    outputs = {"gcp_settings": {"value": {"SPARK_BUCKT": "typo"}}}
    with pytest.raises(deploy.DeployError, match="SPARK_BUCKT"):
        deploy.settings_env_lines(outputs)


# --- what stage uploads is what the pipeline reads ------------------------------------------------------------------


def _dataproc_uris(compiled: dict) -> tuple[int, set[str]]:
    """(number of Dataproc batch tasks, the gs:// URIs they read) of a compiled pipeline, nested DAGs included."""
    dags = [compiled["root"]["dag"]] + [c["dag"] for c in compiled["components"].values() if "dag" in c]
    tasks = [task for dag in dags for task in dag.get("tasks", {}).values()]
    parameters_of_tasks = [task.get("inputs", {}).get("parameters", {}) for task in tasks]
    batches = [parameters for parameters in parameters_of_tasks if "main_python_file_uri" in parameters]
    uris = set()
    for parameters in batches:
        for key in ("main_python_file_uri", "python_file_uris", "jar_file_uris"):
            value = parameters.get(key, {}).get("runtimeValue", {}).get("constant")
            assert value is not None, f"{key} is not a constant of the compiled pipeline: {parameters.get(key)}"
            uris.update([value] if isinstance(value, str) else value)
    return len(batches), uris


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_staged_uris_are_exactly_the_uris_the_compiled_vertex_pipeline_reads(tmp_path, profile):
    settings = GcpSettings(
        gcp_project="acme-defi",
        spark_bucket="acme-defi-spark-staging",
        pipeline_bucket="acme-defi-pipeline-root",
        code_version="3f9c2ab",
        runtime_profile=profile,
    )
    plan = deploy.stage(settings, tmp_path / "dist", dry_run=True)
    (vertex,) = [p for p in compile_pipelines(tmp_path / "compiled", settings) if p.name.endswith("_vertex.yaml")]
    batches, read = _dataproc_uris(yaml.safe_load(vertex.read_text()))
    assert batches == len(deploy.SPARK_JOBS), (
        f"{batches} Dataproc tasks in the pipeline, jobs staged: {deploy.SPARK_JOBS}"
    )
    read.add(settings.entry_file(deploy.SMOKE_JOB))  # staged for `gcp-smoke`, which reads the same zip and jars
    assert set(plan.values()) == read, (
        f"staged but not read: {sorted(set(plan.values()) - read)}; "
        f"read but not staged: {sorted(read - set(plan.values()))}"
    )
    code = [Path(local) for local in plan if not local.endswith(".jar") and not local.endswith(deploy.ZIP_NAME)]
    assert code and all(path.exists() for path in code), f"entry files missing: {[p for p in code if not p.exists()]}"


class _FakeStorage:
    """google.cloud.storage.Client's surface that ``stage`` uses; objects land in ``self.objects``."""

    def __init__(self, existing: dict[str, bytes] | None = None) -> None:
        self.objects = dict(existing or {})
        self.uploaded: list[str] = []

    def bucket(self, bucket: str) -> _FakeStorage._Bucket:
        return self._Bucket(self, bucket)

    class _Bucket:
        def __init__(self, storage: _FakeStorage, name: str) -> None:
            self.storage, self.name = storage, name

        def blob(self, name: str) -> _FakeStorage._Blob:
            return _FakeStorage._Blob(self.storage, f"gs://{self.name}/{name}")

    class _Blob:
        def __init__(self, storage: _FakeStorage, uri: str) -> None:
            self.storage, self.uri = storage, uri

        def exists(self) -> bool:
            return self.uri in self.storage.objects

        def upload_from_filename(self, filename: str) -> None:
            self.storage.objects[self.uri] = Path(filename).read_bytes()
            self.storage.uploaded.append(self.uri)


def test_stage_uploads_the_plan_and_resolves_only_the_jars_not_yet_in_gcs(tmp_path, monkeypatch):
    settings = GcpSettings(spark_bucket="acme-spark", code_version="3f9c2ab", runtime_profile="dataproc-3.0")
    profile = get_profile(settings.runtime_profile)
    cache = tmp_path / "jars"
    already = f"{settings.jars_prefix}/{profile.jar_file_names()[0]}"
    resolved = []

    def fake_resolve(artifact, cache_dir):
        resolved.append(artifact)
        target = cache_dir / f"{artifact.group}__{artifact.artifact}-{artifact.version}"
        target.mkdir(parents=True, exist_ok=True)
        jar = target / f"{artifact.group}__{artifact.artifact}-{artifact.version}.jar"
        jar.write_bytes(artifact.coordinates.encode())
        return [jar]

    monkeypatch.setattr(jars, "resolve", fake_resolve)
    deploy.package(tmp_path / "dist")
    storage = _FakeStorage({already: b"staged by an earlier build"})
    plan = deploy.stage(settings, tmp_path / "dist", cache_dir=cache, client=storage)

    assert set(storage.objects) == set(plan.values())
    assert already not in storage.uploaded, "a jar already staged (its name carries its version) is uploaded again"
    assert resolved == list(profile.jars[1:]), "only the jars missing from GCS are resolved, and only by stage"
    assert storage.objects[settings.spark_src_zip] == (tmp_path / "dist" / deploy.ZIP_NAME).read_bytes()


def test_stage_refuses_a_resolved_jar_whose_name_the_pipeline_does_not_use(tmp_path, monkeypatch):
    settings = GcpSettings(runtime_profile="dataproc-1.2")

    def resolve_with_classifier(artifact, cache_dir):
        jar = cache_dir / "x" / f"{artifact.artifact}-{artifact.version}-shaded.jar"
        jar.parent.mkdir(parents=True, exist_ok=True)
        jar.write_bytes(b"")
        return [jar]

    monkeypatch.setattr(jars, "resolve", resolve_with_classifier)
    deploy.package(tmp_path / "dist")
    with pytest.raises(deploy.DeployError, match="name the pipeline's jar_file_uris use"):
        deploy.stage(settings, tmp_path / "dist", cache_dir=tmp_path / "jars", client=_FakeStorage())


def test_stage_command_dry_run_prints_the_plan_of_the_environment_settings(tmp_path):
    env = {"SPARK_BUCKET": "acme-spark", "CODE_VERSION": "3f9c2ab", "RUNTIME_PROFILE": "dataproc-3.0"}
    result = CliRunner().invoke(deploy.stage_command, ["--dist-dir", str(tmp_path), "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert f"-> gs://acme-spark/code/3f9c2ab/{deploy.ZIP_NAME}" in result.output
    assert "-> gs://acme-spark/jars/" in result.output and (tmp_path / deploy.ZIP_NAME).exists()


def test_package_is_deterministic_and_holds_only_spark_src_sources(tmp_path):
    first = deploy.package(tmp_path / "a")
    second = deploy.package(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes(), "the same sources must give the same zip"
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert all(n.startswith("spark_src/") and n.endswith(".py") and "__pycache__" not in n for n in names)
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    expected = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "spark_src").rglob("*.py")
                if "__pycache__" not in p.parts}  # fmt: skip
    assert set(names) == expected
    assert {f"spark_src/entrypoints/{job}.py" for job in deploy.SPARK_JOBS} <= set(names)


def test_packaged_zip_is_what_python_imports_spark_src_from(tmp_path):
    archive = deploy.package(tmp_path)
    # As on Dataproc: the zip on the path. -I -S: neither the checkout nor site-packages (the editable install).
    code = (
        f"import sys; sys.path.insert(0, {str(archive)!r}); import spark_src.common.config as c; "
        f"assert c.__file__.startswith({str(archive)!r}), c.__file__"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --- cloudbuild.yaml -------------------------------------------------------------------------------------------------

# $X / ${X} / ${X%...} (triggered builds apply bash-style operations to substitutions); $$ is a literal $.
_SUBSTITUTION = re.compile(r"(?<!\$)\$(?:\{(_[A-Z0-9_]+)[^}]*\}|(_[A-Z0-9_]+))")
_BUILT_IN = re.compile(r"(?<!\$)\$(?:\{([A-Za-z][A-Za-z0-9_]*)[^}]*\}|([A-Za-z][A-Za-z0-9_]*))")
_CLOUD_BUILD_BUILT_INS = {"PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "SHORT_SHA", "COMMIT_SHA",
                          "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REF_NAME", "REPO_NAME", "REPO_FULL_NAME",
                          "TRIGGER_NAME", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT"}  # fmt: skip
# Repository paths a build step or the deploy doc may name (build/, dist/, .venv/ are written by the build itself).
_REPO_PATH = re.compile(
    r"(?<![\w./$-])((?:spark_src|pipelines|components|database|legacy|tests|terraform|docs|build|dist)/[\w./-]*\w"
    r"|Dockerfile|Makefile|pyproject\.toml|cloudbuild\.yaml)(?![\w-])"
)
_GENERATED = ("build/", "dist/", ".venv/")


@pytest.fixture(scope="module")
def cloudbuild() -> dict:
    return yaml.safe_load(CLOUDBUILD.read_text())


def _script(step: dict) -> str:
    """A step's command line as bash sees it (after Cloud Build turns $$ into $), continuation lines joined."""
    text = " ".join([step.get("entrypoint", ""), *map(str, step.get("args", [])), step.get("script", "")])
    return text.replace("\\\n", " ")


def _ancestors(steps: list[dict]) -> dict[str, set[str]]:
    """Step id -> ids it (transitively) waits for. No waitFor: all previous steps; ['-']: none."""
    direct, seen = {}, []
    for step in steps:
        wait = step.get("waitFor")
        direct[step["id"]] = set(seen) if wait is None else set() if wait == ["-"] else set(wait)
        seen.append(step["id"])
    closure = {}
    for step_id in direct:
        todo, found = list(direct[step_id]), set()
        while todo:
            current = todo.pop()
            if current not in found:
                found.add(current)
                todo.extend(direct.get(current, ()))
        closure[step_id] = found
    return closure


def test_cloudbuild_steps_have_ids_and_wait_for_steps_that_exist(cloudbuild):
    ids = [step.get("id") for step in cloudbuild["steps"]]
    assert all(ids) and len(ids) == len(set(ids)), f"every step needs a unique id: {ids}"
    for step in cloudbuild["steps"]:
        unknown = set(step.get("waitFor", [])) - set(ids) - {"-"}
        assert not unknown, f"step {step['id']} waits for unknown steps {unknown}"


def test_cloudbuild_substitutions_used_are_declared_and_declared_ones_used(cloudbuild):
    text = CLOUDBUILD.read_text()
    body = text.split("\nsteps:", 1)[1]
    used = {a or b for a, b in _SUBSTITUTION.findall(body)}
    declared = set(cloudbuild.get("substitutions", {}))
    assert used <= declared, f"undeclared substitutions: {sorted(used - declared)}"
    assert declared <= used, f"declared but unused substitutions: {sorted(declared - used)}"
    built_ins = {a or b for a, b in _BUILT_IN.findall(body)}
    assert built_ins <= _CLOUD_BUILD_BUILT_INS, f"not Cloud Build built-ins (escape shell vars as $$): {built_ins}"


def test_cloudbuild_settings_are_the_settings_terraform_outputs(cloudbuild, tf):
    (settings_step,) = [s for s in cloudbuild["steps"] if "build/gcp-settings.env <<" in _script(s)]
    lines = re.findall(r"^\s*([A-Z][A-Z0-9_]*)=(.*)$", _script(settings_step), flags=re.MULTILINE)
    env = dict(lines)
    assert len(env) == len(lines), "a setting is written twice"
    assert set(env) <= deploy.settings_env_names(), (
        f"not read by the settings: {sorted(set(env) - deploy.settings_env_names())}"
    )
    for key in set(tf.gcp_settings()) - {"GCP_PROJECT", "COMPONENT_BASE_IMAGE"}:
        # The trigger's substitutions are Terraform's cloudbuild_substitutions output: setting X as _X.
        assert env.get(key) == f"${{_{key}}}", f"{key} should be written from substitution _{key}, is {env.get(key)!r}"
    assert env["GCP_PROJECT"] == "$PROJECT_ID" and env["CODE_VERSION"] == "$SHORT_SHA"
    declared = set(cloudbuild["substitutions"])
    assert {f"_{key}" for key in set(tf.gcp_settings()) - {"GCP_PROJECT", "COMPONENT_BASE_IMAGE"}} <= declared
    assert "_IMAGE_REPOSITORY=" in tf.outputs["cloudbuild_substitutions"]["value"] and "_IMAGE_REPOSITORY" in declared


def test_cloudbuild_image_is_the_image_terraform_and_the_pipeline_name(cloudbuild, tf):
    (settings_step,) = [s for s in cloudbuild["steps"] if "build/gcp-settings.env <<" in _script(s)]
    image = dict(re.findall(r"^\s*([A-Z][A-Z0-9_]*)=(.*)$", _script(settings_step), flags=re.MULTILINE))[
        "COMPONENT_BASE_IMAGE"
    ]
    built = image.replace("${_GCP_REGION}", "<region>").replace("$PROJECT_ID", "<project>")
    built = built.replace("${_IMAGE_REPOSITORY}", "<repo>").rsplit(":", 1)[0]
    terraform = tf.resolve(tf.gcp_settings()["COMPONENT_BASE_IMAGE"]).replace("${var.region}", "<region>")
    terraform = terraform.replace("${var.project_id}", "<project>")
    terraform = re.sub(r"\$\{google_artifact_registry_repository\.\w+\.repository_id\}", "<repo>", terraform)
    assert built == terraform.rsplit(":", 1)[0], f"Cloud Build pushes {built}, Terraform names {terraform}"
    (docker,) = [s for s in cloudbuild["steps"] if "docker build" in _script(s)]
    assert '--tag "$COMPONENT_BASE_IMAGE"' in _script(docker).replace("$$", "$")
    (compile_step,) = [s for s in cloudbuild["steps"] if "pipelines.cli compile" in _script(s)]
    assert ". build/gcp-settings.env" in _script(compile_step) and "--settings-from-env" in _script(compile_step)


def test_cloudbuild_reads_files_that_exist_or_that_a_step_it_waits_for_writes(cloudbuild):
    steps = cloudbuild["steps"]
    ancestors = _ancestors(steps)
    writers: dict[str, str] = {}
    for step in steps:
        script = _script(step).replace("$$", "$")
        for path in re.findall(r"(?:>|--out-dir|--dist-dir)\s*([\w./-]+)", script):
            writers.setdefault(path.rstrip("/"), step["id"])
        if "make install" in script:
            writers.setdefault(".venv", step["id"])
    for step in steps:
        script = _script(step).replace("$$", "$")
        reads = set(_REPO_PATH.findall(script)) | set(re.findall(r"(\.venv)/bin/", script))
        if "docker build" in script:
            dockerfile = re.search(r"(?:--file|-f)[ =](\S+)", script)
            dockerfile = REPO_ROOT / (dockerfile.group(1) if dockerfile else "Dockerfile")
            assert dockerfile.exists(), f"step {step['id']} builds {dockerfile.relative_to(REPO_ROOT)}: no such file"
            copies = re.findall(r"^COPY\s+(.+)\s+\S+$", dockerfile.read_text(), flags=re.MULTILINE)
            reads |= {p for line in copies for p in line.split()}
        for path in reads:
            generated = next((w for w in writers if path == w or path.startswith(f"{w}/")), None)
            if path.startswith(_GENERATED) or path == ".venv":
                assert generated, f"step {step['id']} reads {path}, which no step writes"
                writer = writers[generated]
                assert writer == step["id"] or writer in ancestors[step["id"]], (
                    f"step {step['id']} reads {path} but does not wait for step {writer}, which writes it"
                )
            else:
                assert (REPO_ROOT / path).exists(), f"step {step['id']} refers to {path}, which is not in the repo"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", (REPO_ROOT / "Makefile").read_text(), flags=re.MULTILINE))


def _commands(text: str) -> Iterator[tuple[str, list[str]]]:
    """(sub-command, argv) of every ``python -m pipelines.cli <command> ...`` in a text."""
    for line in text.replace("\\\n", " ").splitlines():
        match = re.search(r"-m pipelines\.cli\s+([a-z][\w-]*)(.*)", line)
        if match:
            # The command ends at a comment, a pipe, or (inline code in prose) a backtick.
            rest = re.split(r"[#|`]", match.group(2))[0]
            yield match.group(1), shlex.split(rest, posix=True)


def _texts() -> dict[str, str]:
    cloudbuild = yaml.safe_load(CLOUDBUILD.read_text())
    texts = {"cloudbuild.yaml": "\n".join(_script(s).replace("$$", "$") for s in cloudbuild["steps"])}
    if DEPLOY_DOC.exists():
        texts["README.md"] = DEPLOY_DOC.read_text()
    return texts


@pytest.mark.parametrize("source", ["cloudbuild.yaml", "README.md"])
def test_cli_commands_and_make_targets_used_exist_with_their_options(source):
    from pipelines.cli import cli

    text = _texts().get(source)
    assert text is not None, f"{source} is missing"
    problems = []
    for command, argv in _commands(text):
        if command not in cli.commands:
            problems.append(f"`pipelines.cli {command}` is not a command (have {sorted(cli.commands)})")
            continue
        options = {o for p in cli.commands[command].params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        problems += [f"`{command} {a}`: no such option" for a in argv if a.startswith("--") and a.split("=")[0]
                     not in options]  # fmt: skip
    targets = set(re.findall(r"(?<![\w-])make ([a-z][\w-]*)", text))
    problems += [f"`make {t}`: no such Makefile target" for t in sorted(targets - _make_targets())]
    assert not problems, f"{source}:\n" + "\n".join(problems)


def test_deploy_doc_refers_to_files_that_exist():
    text = DEPLOY_DOC.read_text()
    created = set(re.findall(r"\bcp \S+ (\S+)", text))  # e.g. terraform/terraform.tfvars, made by the reader
    named = {p for p in _REPO_PATH.findall(text) if not p.startswith(_GENERATED) and p not in created}
    missing = sorted(p for p in named if not (REPO_ROOT / p).exists())
    assert not missing, f"README.md refers to missing files: {missing}"


# --- Dockerfile ----------------------------------------------------------------------------------------------------


def _requires_python() -> SpecifierSet:
    return SpecifierSet(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"])


def test_images_run_a_python_that_requires_python_allows(cloudbuild):
    images = re.findall(r"^FROM\s+python:(\d+\.\d+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert images, "the Dockerfile's base image is not a python:X.Y image"
    images += [m for s in cloudbuild["steps"] for m in re.findall(r"^python:(\d+\.\d+)", s["name"])]
    wrong = [version for version in images if f"{version}.0" not in _requires_python()]
    assert not wrong, f"Python {wrong} outside requires-python {_requires_python()}"


def test_the_image_carries_the_code_version_cloud_build_passes(cloudbuild):
    """Without it the lineage of every Vertex run recorded code_version "unknown" (no git in the image)."""
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^ARG CODE_VERSION\b", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^ENV CODE_VERSION=\$\{?CODE_VERSION\}?$", dockerfile, flags=re.MULTILINE)
    (docker,) = [s for s in cloudbuild["steps"] if "docker build" in _script(s)]
    assert '--build-arg CODE_VERSION="$CODE_VERSION"' in _script(docker).replace("$$", "$")
    assert ". build/gcp-settings.env" in _script(docker)  # where CODE_VERSION=$SHORT_SHA is set


def test_dockerfile_copies_the_packages_pyproject_installs():
    copied = {p.rstrip("/") for line in re.findall(r"^COPY\s+(.+)\s+\S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
              for p in line.split()}  # fmt: skip
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in patterns["include"]}
    assert packages <= copied, f"pip install . in the image would miss {sorted(packages - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied
