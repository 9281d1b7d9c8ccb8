"""The local SparkSession's JVM logs through the project's configuration (spark_src/common/log4j2.properties)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
from spark_src.common.session import build_session
spark = build_session("log-check")
print("ROWS", spark.range(3).count())
scheduler = spark._jvm.org.apache.logging.log4j.LogManager.getLogger("org.apache.spark.scheduler.DAGScheduler")
scheduler.warn("Broadcasting large task binary with size 1014.1 KiB")
scheduler.warn("Some other scheduler warning")
spark.stop()
"""


@pytest.mark.slow
def test_a_local_session_prints_no_warning_expected_on_every_run(tmp_path):
    """Before: every local run began with NativeCodeLoader's warning and Spark's "Setting default log level", and
    every forecast run's LightGBM fits added "Broadcasting large task binary" (the script logs it through the
    scheduler's logger, with another warning of that logger that must still show)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_SUBMIT_OPTS", "PYSPARK_GATEWAY_PORT")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "ROWS 3" in done.stdout
    assert "NativeCodeLoader" not in done.stderr
    assert "Setting default log level" not in done.stderr
    assert "Broadcasting large task binary" not in done.stderr
    assert "WARN DAGScheduler: Some other scheduler warning" in done.stderr
