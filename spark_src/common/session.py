"""SparkSession for the jobs: local mode on a laptop or in a KFP local run, the cluster's on Dataproc."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# The JVM's log configuration on this machine (Dataproc uses the cluster's): Spark's defaults at WARN, without
# the warnings every local run would print. spark-submit passes SPARK_SUBMIT_OPTS to the driver JVM.
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
# Generated classes a local session keeps compiled (Spark's default: 100); see build_session.
CODEGEN_CACHE_ENTRIES = "1000"


def local_java_options() -> str:
    """The driver JVM options of a local run (in-process or the rehearsal's spark-submit)."""
    return f"-Dlog4j2.configurationFile={LOG_CONFIG}"


def running_under_spark_submit() -> bool:
    # spark-submit (and so Dataproc) starts the JVM first and hands its gateway port to the Python driver.
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(
    app_name: str,
    *,
    jars: list[Path] | None = None,
    local_cores: int | None = None,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    """Returns a SparkSession with the settings every job relies on.

    Args:
        app_name: Spark application name.
        jars: Local jar files to put on the classpath (local mode only; Dataproc gets them as jar_file_uris).
        local_cores: Cores for ``local[N]``; default: ``SPARK_LOCAL_CORES`` or 2.
        extra_conf: More Spark properties (a job's own needs, e.g. LightGBM's).
    """
    builder = (
        SparkSession.builder.appName(app_name)
        # Dates are derived from timestamps in the session time zone: pin it, on the JVM too.
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
        # The metrics plan has more fields than the default 25: Spark warned on every run that it truncated it.
        .config("spark.sql.debug.maxToStringFields", "200")
    )
    if not running_under_spark_submit():
        cores = local_cores or int(os.environ.get("SPARK_LOCAL_CORES", "2"))
        # The JVM reads it at start-up; without it Spark warns on every run that the host name is loopback.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("SPARK_SUBMIT_OPTS", local_java_options())
        builder = (
            builder.master(os.environ.get("SPARK_MASTER", f"local[{cores}]"))
            # A numeric value: "auto" is a Databricks-only setting that open-source Spark rejects.
            .config("spark.sql.shuffle.partitions", str(cores * 2))
            .config("spark.default.parallelism", str(cores * 2))
            .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "3g"))
            # Loopback: the host name may resolve to an address that is unreachable offline.
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", os.environ.get("SPARK_UI_ENABLED", "false"))
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.warehouse.dir", str(Path(".local") / "spark-warehouse"))
            # Spark 3.5 caches a generated class per class loader (SPARK-44795), and in local mode the driver's
            # and the tasks' loaders share one JVM and one cache of 100 classes: a full and a one-day run of
            # the metrics job need 107, so every rerun in the same session compiled ~25 classes anew and ran
            # them unjitted (lab, 2,740 pools, one day: 2.75 s with 100, 2.15 s with 1000, 18 runs each).
            .config("spark.sql.codegen.cache.maxEntries", CODEGEN_CACHE_ENTRIES)
        )
        if jars:
            builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def release_unfinalized_executors(spark: SparkSession) -> None:
    """Runs a full garbage collection and the pending finalizers of the driver JVM, so that it can exit.

    SynapseML's LightGBM (1.1.3, ``NetworkManager``) runs each fit's driver-side network thread in an
    ``Executors.newSingleThreadExecutor()`` it never shuts down. The thread is not a daemon: it keeps the JVM of
    spark-submit alive after the Python driver has exited (a Dataproc batch's driver may wait the same way; not
    verifiable offline), until a garbage collection finalizes the executor, which shuts it down. An idle JVM may
    never collect: a rehearsal batch of the forecast job sat 15 min at exit in DestroyJavaVM, waiting on such a
    ``pool-N-thread-1``, and left when a GC was forced.
    (Spark 4 can call System.exit when the driver's main ends, ``spark.submit.callSystemExitOnMainExit``;
    Spark 3.5 cannot.) Call it once the last fit is done.
    """
    system = spark.sparkContext._jvm.java.lang.System
    system.gc()
    system.runFinalization()
