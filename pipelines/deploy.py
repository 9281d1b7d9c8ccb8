"""Deployment helpers: package spark_src for Dataproc Serverless, stage it with the entry files and jars in GCS,
and turn Terraform's outputs into the ``.env.gcp`` the settings read.

Every GCS URI comes from :class:`GcpSettings`' layout, the object the Vertex pipeline is compiled from, so what
Cloud Build uploads and what the batches read cannot drift apart (tests/test_infrastructure.py compares them).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from pipelines.runtime_profiles import get_profile
from pipelines.settings import REPO_ROOT, GcpSettings
from spark_src.common import jars

SPARK_SRC = REPO_ROOT / "spark_src"
ENTRYPOINTS = SPARK_SRC / "entrypoints"
# The spark_src jobs the pipeline submits as Dataproc batches (one entry file each).
SPARK_JOBS = ("pool_metrics", "forecast")
# Staged too, read by no pipeline: the batch of `gcp-smoke` (pipelines/gcp_smoke.py).
SMOKE_JOB = "smoke"
ZIP_NAME = "spark_src.zip"
# The earliest timestamp a zip entry can hold; fixed so that the same sources always give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Not a GcpSettings field: components.base_image reads it from the environment.
_EXTRA_SETTINGS_ENV = frozenset({"COMPONENT_BASE_IMAGE"})


class DeployError(RuntimeError):
    pass


def package(out_dir: Path) -> Path:
    """Builds ``<out_dir>/spark_src.zip``: the spark_src package's .py files, sorted, with fixed timestamps."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIP_NAME
    sources = sorted(
        (p for p in SPARK_SRC.rglob("*.py") if "__pycache__" not in p.parts),
        key=lambda p: p.relative_to(REPO_ROOT).as_posix(),
    )
    # Written aside and renamed: an interrupted run must not leave a truncated zip that `stage` would upload.
    partial = target.with_name(f".{ZIP_NAME}.partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for source in sources:
            entry = zipfile.ZipInfo(source.relative_to(REPO_ROOT).as_posix(), date_time=_ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16  # the same mode whatever the checkout's umask
            archive.writestr(entry, source.read_bytes())
    partial.replace(target)
    return target


def _cached_jars(settings: GcpSettings, cache_dir: Path) -> dict[Path, jars.MavenArtifact]:
    """Where ``jars.resolve`` retrieves each jar of the settings' profile, whether or not it is there yet:
    resolution waits for ``stage``, so a plan needs neither Java nor Maven."""
    profile = get_profile(settings.runtime_profile)
    return {artifact.cache_folder(cache_dir) / artifact.file_name: artifact for artifact in profile.jars}


def staging_plan(settings: GcpSettings, dist_dir: Path, cache_dir: Path = jars.DEFAULT_CACHE) -> dict[str, str]:
    """``{local file: gs:// URI}`` of everything the Dataproc batches read: the zip, the entry files, the jars."""
    plan = {str(dist_dir / ZIP_NAME): settings.spark_src_zip}
    plan.update({str(ENTRYPOINTS / f"{job}.py"): settings.entry_file(job) for job in (*SPARK_JOBS, SMOKE_JOB)})
    plan.update({str(path): f"{settings.jars_prefix}/{path.name}" for path in _cached_jars(settings, cache_dir)})
    return plan


def _split_gs_uri(uri: str) -> tuple[str, str]:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket or not name:
        raise DeployError(f"not a gs://bucket/object URI: {uri}")
    return bucket, name


def _resolve_jar(path: Path, artifact: jars.MavenArtifact, cache_dir: Path) -> None:
    try:
        resolved = jars.resolve(artifact, cache_dir)
    except FileNotFoundError as missing:  # no `java` on PATH: Ivy cannot run
        raise DeployError(f"resolving {artifact.coordinates} needs Java (Ivy) the first time: {missing}") from None
    except jars.JarResolutionError as error:
        raise DeployError(str(error)) from None
    if path not in resolved:
        raise DeployError(
            f"resolving {artifact.coordinates} gave {[p.name for p in resolved]}, not {path.name}, which is the "
            "name the pipeline's jar_file_uris use"
        )


def stage(
    settings: GcpSettings,
    dist_dir: Path,
    dry_run: bool = False,
    *,
    cache_dir: Path = jars.DEFAULT_CACHE,
    client: Any = None,
    quiet: bool = False,
) -> dict[str, str]:
    """Uploads the staging plan (``dry_run``: prints it); returns the plan.

    A jar already in GCS is skipped without resolving it: its name carries its version, so the object is that jar.
    Otherwise it is resolved now, which needs Java and Maven Central only when the local cache lacks it.

    Args:
        settings: Where to upload (spark bucket, code version, runtime profile).
        dist_dir: Folder holding spark_src.zip (``package``).
        dry_run: Print ``local -> uri`` lines and upload nothing.
        cache_dir: The jar cache of spark_src.common.jars.
        client: A google.cloud.storage Client (default: one for ``settings.gcp_project``), or the rehearsal's
            ``LocalGcs`` (a folder standing for GCS).
        quiet: Print nothing per file (the local rehearsal stages before every run).
    """
    echo = (lambda _: None) if quiet else click.echo
    plan = staging_plan(settings, dist_dir, cache_dir)
    jar_artifacts = {str(path): artifact for path, artifact in _cached_jars(settings, cache_dir).items()}
    if dry_run:
        for local, uri in plan.items():
            note = "" if Path(local).exists() else " (resolved on upload)" if local in jar_artifacts else " (missing)"
            click.echo(f"{local} -> {uri}{note}")
        return plan
    missing = [local for local in plan if local not in jar_artifacts and not Path(local).exists()]
    if missing:
        raise DeployError(f"nothing to upload at {missing}: run `package` first")
    if client is None:
        from google.cloud import storage

        client = storage.Client(project=settings.gcp_project)
    for local, uri in plan.items():
        bucket, name = _split_gs_uri(uri)
        blob = client.bucket(bucket).blob(name)
        if local in jar_artifacts:
            if blob.exists():
                echo(f"kept {uri} (already staged)")
                continue
            if not Path(local).exists():
                _resolve_jar(Path(local), jar_artifacts[local], cache_dir)
        blob.upload_from_filename(local)
        echo(f"uploaded {local} -> {uri}")
    return plan


def settings_env_names() -> frozenset[str]:
    """The environment variables the settings read: GcpSettings' fields upper-cased, and the components' image."""
    return GcpSettings.env_names() | _EXTRA_SETTINGS_ENV


def settings_env_lines(terraform_outputs: Mapping[str, Any]) -> list[str]:
    """``.env.gcp`` lines (KEY=VALUE) from ``terraform output -json``'s ``gcp_settings`` map."""
    try:
        values = terraform_outputs["gcp_settings"]["value"]
    except (KeyError, TypeError):
        raise DeployError("`terraform output -json` has no gcp_settings output: run `terraform apply` first") from None
    unknown = sorted(set(values) - settings_env_names())
    if unknown:
        raise DeployError(f"gcp_settings has keys the settings do not read: {unknown}")
    lines = ["# Written by `make gcp-settings` from `terraform output -json`. Do not edit: change Terraform, rerun."]
    for key in sorted(values):
        # An unset value must stop here: left out of .env.gcp, the setting would fall back to its placeholder.
        value = values[key]
        if value is None or not str(value) or "\n" in str(value) or "\r" in str(value):
            raise DeployError(
                f"gcp_settings.{key} is unset, empty or spans lines ({value!r}): fix the Terraform inputs"
            )
        lines.append(f"{key}={value}")
    return lines


@click.command("package")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True)
def package_command(out_dir: Path) -> None:
    """Build spark_src.zip (what Dataproc imports spark_src from)."""
    click.echo(f"wrote {package(out_dir)}")


@click.command("stage")
@click.option("--dist-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True)
@click.option("--dry-run", is_flag=True, help="Print what would be uploaded where; upload nothing.")
def stage_command(dist_dir: Path, dry_run: bool) -> None:
    """Package spark_src and upload it, the entry files and the profile's jars to the spark bucket.

    Settings (SPARK_BUCKET, CODE_VERSION, RUNTIME_PROFILE, ...) come from the environment.
    """
    # A placeholder bucket is refused before anything is packaged; staging needs no other setting.
    settings = GcpSettings.from_env(needed=["SPARK_BUCKET"])
    package(dist_dir)
    try:
        stage(settings, dist_dir, dry_run)
    except DeployError as error:
        raise click.ClickException(str(error)) from None


@click.command("gcp-settings")
@click.option(
    "--outputs",
    type=click.File("r"),
    default="-",
    show_default=True,
    help="`terraform output -json` (a file, or - for stdin).",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=REPO_ROOT / ".env.gcp")
def gcp_settings_command(outputs, out: Path) -> None:
    """Write .env.gcp from Terraform's outputs: terraform -chdir=terraform output -json | ... gcp-settings."""
    import json

    try:
        lines = settings_env_lines(json.load(outputs))
    except (DeployError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    out.write_text("\n".join(lines) + "\n")
    click.echo(f"wrote {out} ({len(lines) - 1} settings)")
