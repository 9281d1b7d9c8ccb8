"""Runs one Dataproc batch request on this machine: ``spark-submit`` of the staged entry file, in the
runtime-shaped Python of :mod:`rehearsal.runtime_env`, with exactly what the batch lists.

A batch request here is the dict of ``DataprocPySparkBatchOp`` inputs that ``VertexTarget.batch_request``
builds (main_python_file_uri, python_file_uris, jar_file_uris, runtime_config_version,
runtime_config_properties, args). Its gs:// URIs are read from a local folder that stands for GCS
(``<root>/<bucket>/<object>``), filled by the same ``package``/``stage`` code Cloud Build runs, with
:class:`LocalGcs` as the storage client. What Dataproc would not have (a file not staged, a module only the
project's venv has) is missing here too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rehearsal import runtime_env
from spark_src.common.session import local_java_options

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GCS_ROOT = Path(os.environ.get("REHEARSAL_GCS_ROOT", REPO_ROOT / ".local" / "gcs"))
SUMMARY_PREFIX = "RUN_SUMMARY "


def machine_conf(cores: int) -> dict[str, str]:
    """What this machine sets that Dataproc's cluster provides itself: a local master sized to the machine,
    loopback networking (the host name may resolve to an unreachable address offline), no UI, small shuffles.
    The profile's own properties are applied after these and win on a common key."""
    return {
        "spark.driver.memory": os.environ.get("SPARK_DRIVER_MEMORY", "3g"),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": os.environ.get("SPARK_LOG_LEVEL", "WARN"),
        "spark.sql.shuffle.partitions": str(cores * 2),
        "spark.default.parallelism": str(cores * 2),
        "spark.sql.warehouse.dir": str(Path(".local") / "spark-warehouse"),
    }


class BatchFailed(RuntimeError):
    pass


class LocalGcs:
    """A google.cloud.storage ``Client`` stand-in over a folder: what ``deploy.stage`` uploads lands in
    ``<root>/<bucket>/<object>``. Only the calls ``stage`` makes: ``bucket().blob()``, ``exists()``,
    ``upload_from_filename()``."""

    def __init__(self, root: Path = DEFAULT_GCS_ROOT):
        self.root = Path(root)

    def bucket(self, name: str) -> _LocalBucket:
        return _LocalBucket(self.root / name)


class _LocalBucket:
    def __init__(self, folder: Path):
        self.folder = folder

    def blob(self, name: str) -> _LocalBlob:
        return _LocalBlob(self.folder / name)


class _LocalBlob:
    def __init__(self, path: Path):
        self.path = path

    def exists(self) -> bool:
        return self.path.is_file()

    def upload_from_filename(self, filename: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")  # an upload is all or nothing, as in GCS
        shutil.copyfile(filename, partial)
        partial.replace(self.path)


def local_path(uri: str, gcs_root: Path = DEFAULT_GCS_ROOT) -> Path:
    """Where the rehearsal's GCS folder holds ``gs://bucket/object``; refuses anything but a staged gs:// file."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    if not uri.startswith("gs://") or not bucket or not name:
        raise BatchFailed(f"a Dataproc batch reads its files from gs:// URIs; got {uri!r}")
    path = Path(gcs_root) / bucket / name
    if not path.is_file():
        raise BatchFailed(
            f"{uri} is not staged (looked for {path}): the batch would fail on Dataproc the same way. "
            "Stage it with `package` + `stage` (the local run does so before the pipeline starts)."
        )
    return path


def spark_submit_command(
    batch: Mapping[str, Any], env: Path, gcs_root: Path = DEFAULT_GCS_ROOT, cores: int | None = None
) -> list[str]:
    """The spark-submit command line of ``batch`` in the runtime environment ``env``."""
    cores = cores or int(os.environ.get("SPARK_LOCAL_CORES", "2"))
    conf = {**machine_conf(cores), **batch.get("runtime_config_properties", {})}
    command = [str(runtime_env.spark_submit_of(env)), "--master", f"local[{cores}]"]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    py_files = [str(local_path(uri, gcs_root)) for uri in batch.get("python_file_uris", [])]
    jars = [str(local_path(uri, gcs_root)) for uri in batch.get("jar_file_uris", [])]
    command += ["--py-files", ",".join(py_files)] if py_files else []
    command += ["--jars", ",".join(jars)] if jars else []
    command.append(str(local_path(batch["main_python_file_uri"], gcs_root)))
    return command + [str(arg) for arg in batch.get("args", [])]


def driver_environment(env: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment of the batch: this one's (DB_*, secrets' variables, JAVA_HOME), minus anything
    that would let the project's venv leak in, with the runtime environment's Python and Spark."""
    environ = dict(os.environ if base is None else base)
    for leaking in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SPARK_HOME", "PYSPARK_GATEWAY_PORT",
                    "PYSPARK_GATEWAY_SECRET", "SPARK_CONF_DIR"):  # fmt: skip
        environ.pop(leaking, None)
    python = str(runtime_env.python_of(env))
    site_packages = next((env / "lib").glob("python3*/site-packages"))
    environ.update(
        {
            "PYSPARK_PYTHON": python,
            "PYSPARK_DRIVER_PYTHON": python,
            "SPARK_HOME": str(site_packages / "pyspark"),
            "PATH": f"{env / 'bin'}{os.pathsep}{environ.get('PATH', '')}",
            "SPARK_SUBMIT_OPTS": local_java_options(),
            # Read by the JVM at start: without it Spark warns on every run that the host name is loopback.
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
    )
    return environ


# linux/prctl.h
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """The child's last act before exec: ask Linux to SIGKILL it when its parent dies. The setting survives the
    exec of spark-submit and spark-submit's own exec of java, so the JVM (the same process) dies with the launcher
    even when the launcher is SIGKILLed and runs no cleanup. A parent that died before the request: exit now."""

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


@contextlib.contextmanager
def tied_process(command: Sequence[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen]:
    """``Popen`` of ``command`` (stdout and stderr as text lines) whose whole process tree ends with the caller.

    The child leads its own process group: an exception in the caller (an interrupt, a failing reader) kills
    the group (spark-submit's JVM and the Python driver it starts) before it propagates. On Linux the child also
    dies when the caller is SIGKILLed (:func:`_die_with_parent`); the JVM's Python driver then loses its
    gateway and exits.
    """
    linux = sys.platform.startswith("linux")
    process = subprocess.Popen(
        list(command),
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent(os.getpid()) if linux else None,
    )
    try:
        yield process
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
        process.wait()


def submit(batch: Mapping[str, Any], *, gcs_root: Path = DEFAULT_GCS_ROOT, echo=None) -> dict:
    """Runs ``batch`` with spark-submit and returns the job's run summary (its ``RUN_SUMMARY`` line).

    Raises:
        BatchFailed: a file of the batch is not staged, or the job exited non-zero (with its last output lines).
    """
    echo = echo or (lambda line: print(line, end="", flush=True))
    env = runtime_env.ensure(str(batch["runtime_config_version"]))
    command = spark_submit_command(batch, env, gcs_root)
    tail: deque[str] = deque(maxlen=40)
    summary = None
    with tied_process(command, driver_environment(env)) as process:
        assert process.stdout is not None
        for line in process.stdout:
            echo(line)
            tail.append(line)
            if line.startswith(SUMMARY_PREFIX):
                summary = json.loads(line[len(SUMMARY_PREFIX) :])
    if process.returncode != 0:
        raise BatchFailed(
            f"the batch {Path(batch['main_python_file_uri']).name} exited with {process.returncode} under the "
            f"Dataproc {batch['runtime_config_version']} rehearsal. Last lines:\n{''.join(tail)}"
        )
    if summary is None:
        raise BatchFailed(f"the batch {batch['main_python_file_uri']} printed no {SUMMARY_PREFIX.strip()} line")
    return summary
