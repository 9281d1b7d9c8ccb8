"""Small files (model cards, summaries) written through Spark's Hadoop file system: local paths and gs:// alike."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pyspark.sql import SparkSession


def write_text(spark: SparkSession, uri: str, content: str) -> None:
    """Writes ``content`` to ``uri`` (overwriting), via the Hadoop FileSystem of the URI's scheme."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    stream = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(path, True)
    try:
        stream.write(bytearray(content.encode("utf-8")))
    finally:
        stream.close()


def code_version(explicit: str | None = None) -> str:
    """``explicit`` (a batch's ``--code-version``), else ``CODE_VERSION`` (set by the image build), else the git
    commit of a checkout, else ``unknown``. On Dataproc there is no checkout (``__file__`` is inside the zip)
    and on Vertex no git: there the version must come from the first two."""
    if explicit:
        return explicit
    if os.environ.get("CODE_VERSION"):
        return os.environ["CODE_VERSION"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
