"""The Dataproc rehearsal: batch requests run by spark-submit in the runtime-shaped Python, from staged files.

The slow tests run real spark-submit (a separate Python 3.12 virtualenv with pyspark 3.5 and no synapseml wheel,
no SQLAlchemy, no psycopg2) against the session's real PostgreSQL, with a real SynapseML LightGBM fit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from kfp import dsl
from sqlalchemy import text

from components.evaluate_metrics_parity import evaluate_metrics_parity
from database.synthetic import SyntheticSpec, generate, load
from legacy.calculate_pool_metrics import run as run_legacy_metrics
from pipelines.local_run import stage_rehearsal
from pipelines.runtime_profiles import PROFILES
from pipelines.targets import LocalTarget
from rehearsal import runtime_env
from rehearsal.launcher import (
    REPO_ROOT,
    BatchFailed,
    driver_environment,
    local_path,
    spark_submit_command,
    submit,
    tied_process,
)
from spark_src.common.launch import forecast_args, pool_metrics_args
from spark_src.forecast.model import MODEL_NAME

SYNAPSEML_LIGHTGBM_JAR = "com.microsoft.azure__synapseml-lightgbm_2.12-1.1.3.jar"
SYNAPSEML_CORE_JAR = "com.microsoft.azure__synapseml-core_2.12-1.1.3.jar"


def test_spark_submit_command_is_the_batch_request(tmp_path):
    for name in ["b/code/v/entry.py", "b/code/v/spark_src.zip", "b/jars/x.jar", "b/jars/y.jar"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    batch = {
        "main_python_file_uri": "gs://b/code/v/entry.py",
        "python_file_uris": ["gs://b/code/v/spark_src.zip", "gs://b/jars/y.jar"],
        "jar_file_uris": ["gs://b/jars/x.jar", "gs://b/jars/y.jar"],
        "runtime_config_version": "1.2",
        "runtime_config_properties": {"spark.speculation": "false", "spark.ui.enabled": "true"},
        "args": ["--run-id", "r1", "--train-days", 60],
    }
    command = spark_submit_command(batch, tmp_path / "env", tmp_path, cores=2)

    assert command[:3] == [str(tmp_path / "env/bin/spark-submit"), "--master", "local[2]"]
    conf = [command[i + 1] for i, part in enumerate(command) if part == "--conf"]
    assert "spark.speculation=false" in conf
    # The profile's value wins over the machine's default.
    assert "spark.ui.enabled=true" in conf and "spark.ui.enabled=false" not in conf
    py_files = command[command.index("--py-files") + 1]
    assert py_files == f"{tmp_path}/b/code/v/spark_src.zip,{tmp_path}/b/jars/y.jar"
    assert command[command.index("--jars") + 1] == f"{tmp_path}/b/jars/x.jar,{tmp_path}/b/jars/y.jar"
    assert command[-5:] == [f"{tmp_path}/b/code/v/entry.py", "--run-id", "r1", "--train-days", "60"]


def test_a_file_the_batch_lists_but_nobody_staged_fails_naming_it(tmp_path):
    with pytest.raises(BatchFailed, match=r"gs://b/code/v/spark_src\.zip is not staged"):
        local_path("gs://b/code/v/spark_src.zip", tmp_path)
    with pytest.raises(BatchFailed, match="gs:// URIs"):
        local_path("/home/me/spark_src.zip", tmp_path)


def test_the_local_batches_are_the_vertex_batch_requests_with_synapseml_python_files():
    batch = LocalTarget().batch("forecast")
    assert batch["python_file_uris"] == [
        "gs://rehearsal-spark-staging/code/local/spark_src.zip",
        f"gs://rehearsal-spark-staging/jars/{SYNAPSEML_LIGHTGBM_JAR}",
        f"gs://rehearsal-spark-staging/jars/{SYNAPSEML_CORE_JAR}",
    ]
    assert batch["main_python_file_uri"] == "gs://rehearsal-spark-staging/code/local/entrypoints/forecast.py"
    assert batch["runtime_config_version"] == "1.2"
    assert batch["runtime_config_properties"]["spark.dynamicAllocation.enabled"] == "false"


@pytest.fixture(scope="module")
def runtime_python():
    return runtime_env.python_of(runtime_env.ensure("1.2"))


@pytest.mark.slow
def test_the_runtime_environment_has_pyspark_35_and_none_of_the_projects_packages(runtime_python):
    probe = (
        "import importlib.util, sys, pyspark; "
        "print(sys.version_info[:2], pyspark.__version__[:3], "
        "[m for m in ('synapse', 'sqlalchemy', 'psycopg2', 'kfp', 'spark_src') if importlib.util.find_spec(m)])"
    )
    out = subprocess.run([str(runtime_python), "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "(3, 12) 3.5 []"


@pytest.fixture
def metrics_db(db, db_config):
    load(db, generate(SyntheticSpec(pools=12, days=75, seed=3)))
    run_legacy_metrics(db_config, target_table="pool_daily_metrics")
    return db


def _forecast_batch(db_config, tmp_path, **overrides) -> dict:
    batch = LocalTarget().batch("forecast") | overrides
    args = forecast_args(
        run_id="r1", staging_table="stg_forecast_r1", backtest_table="stg_backtest_r1", quarantine_table="stg_q_r1",
        model_dir=str(tmp_path / "model"), as_of="", holdout_as_of="", train_days=60, database_url=db_config.url,
        password_secret="env:DB_PASSWORD", code_version="3f9c2ab",
    )  # fmt: skip
    return {**batch, "args": args}


@pytest.mark.slow
def test_forecast_batch_imports_synapseml_lightgbm_from_its_python_files(metrics_db, db_config, tmp_path):
    """Before the fix the batch listed only spark_src.zip: `No module named 'synapse'` at the first fit."""
    gcs = tmp_path / "gcs"
    stage_rehearsal(gcs_root=gcs)
    with metrics_db.connect() as conn:
        latest = conn.execute(text("SELECT max(date) FROM pool_daily_metrics")).scalar()
        forecastable = conn.execute(
            text(
                "SELECT m.pool_id FROM pool_daily_metrics m JOIN pools p USING (pool_id) WHERE m.date = :d "
                "AND m.actual_apy IS NOT NULL AND p.is_active AND NOT p.is_filtered_out ORDER BY 1"
            ),
            {"d": latest},
        ).scalars().all()  # fmt: skip

    output: list[str] = []
    summary = submit(_forecast_batch(db_config, tmp_path), gcs_root=gcs, echo=output.append)

    with metrics_db.connect() as conn:
        # The job stages the model's forecasts and naive's (the gate's fallback) side by side.
        rows = conn.execute(
            text("SELECT pool_id, as_of, forecast_date FROM stg_forecast_r1 WHERE model = :m ORDER BY 1"),
            {"m": MODEL_NAME},
        ).all()
    assert [r.pool_id for r in rows] == forecastable and len(forecastable) > 0
    assert {(r.as_of, (r.forecast_date - r.as_of).days) for r in rows} == {(latest, 1)}
    assert summary["as_of"] == latest.isoformat()
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["code_version"] == "3f9c2ab"  # the batch's --code-version: no git on Dataproc
    assert card["spark_version"].startswith("3.5.")
    # The project's log configuration reached the JVM: no warning that every local run would print.
    expected_on_every_run = ("NativeCodeLoader", "Setting default log level", "resolves to a loopback address")
    assert not [line for line in output if any(warning in line for warning in expected_on_every_run)]


@pytest.mark.slow
def test_forecast_batch_without_the_synapseml_python_files_fails_naming_them(metrics_db, db_config, tmp_path):
    gcs = tmp_path / "gcs"
    stage_rehearsal(gcs_root=gcs)
    batch = _forecast_batch(
        db_config, tmp_path, python_file_uris=["gs://rehearsal-spark-staging/code/local/spark_src.zip"]
    )
    with pytest.raises(BatchFailed) as failure:
        submit(batch, gcs_root=gcs, echo=lambda line: None)
    message = str(failure.value)
    assert "synapse.ml.lightgbm" in message
    assert SYNAPSEML_LIGHTGBM_JAR in message and SYNAPSEML_CORE_JAR in message and "python_file_uris" in message
    with metrics_db.connect() as conn:  # it failed before writing anything
        assert conn.execute(text("SELECT to_regclass('stg_forecast_r1')")).scalar() is None


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_has_a_rehearsal_python_of_its_spark_line(name):
    """RUNTIME_PROFILE=dataproc-3.0 is one setting away: its batches rehearse in a pyspark 4.0 Python."""
    profile = PROFILES[name]
    pins = dict(
        line.split("==")
        for line in runtime_env.requirements_file(profile.runtime_version).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["pyspark"].startswith(f"{profile.spark_version}.")
    assert not {"synapseml", "sqlalchemy", "psycopg2-binary", "kfp"} & {k.lower() for k in pins}
    assert runtime_env.RUNTIME_PYTHON[profile.runtime_version] == profile.python_version


@pytest.mark.slow
def test_runtime_30_runs_the_metrics_batch_as_far_as_its_jars_allow(db, db_config, tmp_path):
    """RUNTIME_PROFILE=dataproc-3.0 under the rehearsal: Spark 4.0.1 in a Python 3.12 with pyspark 4.0.

    SynapseML 1.1.3 for Scala 2.13 is not on Maven Central, so the forecast batch cannot be staged: it fails
    naming the missing jar. The metrics batch needs only the JDBC driver (Scala-free, staged by the 1.2 plan at
    the same URI) and must give the legacy job's rows (the parity gate's comparison)."""
    gcs = tmp_path / "gcs"
    stage_rehearsal(gcs_root=gcs)  # zip, entry files and the JDBC jar: the URIs are the same for both profiles
    load(db, generate(SyntheticSpec(pools=6, days=45, seed=5)))
    target = LocalTarget("dataproc-3.0")
    forecast = target.batch("forecast") | {"args": []}
    with pytest.raises(BatchFailed, match=r"synapseml-lightgbm_2\.13-1\.1\.3-spark4\.0\.jar is not staged"):
        submit(forecast, gcs_root=gcs, echo=lambda line: None)

    metrics = target.batch("pool_metrics")
    staged = [uri for uri in metrics["jar_file_uris"] if "postgresql" in uri]
    args = pool_metrics_args(
        run_id="r30", staging_table="stg_metrics_r30", start="", end="", now="", database_url=db_config.url,
        password_secret="env:DB_PASSWORD", code_version="t30",
    )  # fmt: skip
    summary = submit(metrics | {"jar_file_uris": staged, "python_file_uris": metrics["python_file_uris"][:1],
                                "args": args}, gcs_root=gcs, echo=lambda line: None)  # fmt: skip
    legacy = run_legacy_metrics(db_config, target_table="pool_daily_metrics_legacy")
    assert summary["rows_written"] == legacy["rows_written"] > 0
    parity = dsl.Metrics(name="parity", uri=str(tmp_path / "parity"), metadata={})
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"), metadata={})
    verdict = evaluate_metrics_parity.python_func(
        database_url=db_config.url, spark_table="stg_metrics_r30", legacy_table="pool_daily_metrics_legacy",
        parity=parity, report=report, fail_on_mismatch=False,
    )  # fmt: skip
    assert verdict.verdict == "pass", open(report.path).read()


# A driver that leaves what SynapseML's LightGBM fits leave on the driver (seen in a rehearsal forecast batch: its
# JVM sat 15 min in DestroyJavaVM, waiting on a pool-N-thread-1): a single-thread executor that ran a task, that
# nobody references (Py4J is told to forget it at once) and nobody shut down. Its thread is not a daemon, and a JVM
# exits only once its last non-daemon thread has ended. The driver prints that thread's state when its main ends.
LEAKING_DRIVER = """
import sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
jvm = spark.sparkContext._jvm
threads = jvm.java.lang.Thread.getAllStackTraces
before = {thread.getId() for thread in threads().keySet()}
executor = jvm.java.util.concurrent.Executors.newSingleThreadExecutor()
executor.submit(jvm.java.lang.Thread()).get()
(worker,) = [t for t in threads().keySet() if t.getId() not in before and t.getName().startswith("pool-")]
spark.sparkContext._gateway._gateway_client.garbage_collect_object(executor._target_id, enqueue=False)
if sys.argv[1] == "release":
    sys.path.insert(0, sys.argv[2])
    from spark_src.common.session import release_unfinalized_executors

    release_unfinalized_executors(spark)
    worker.join(20000)
print(f"WORKER daemon={worker.isDaemon()} alive={worker.isAlive()}", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "alive"), [("release", False), ("leak", True)])
def test_a_driver_jvm_exits_once_the_leaked_executors_are_released(tmp_path, mode, alive):
    """The forecast job ends with :func:`release_unfinalized_executors`: the leaked executor's thread ends, and the
    spark-submit JVM exits (0) once the Python driver is done. Without the call the thread is still alive when the
    driver's main ends (the second case), so the JVM waits on it until some garbage collection happens to finalize
    the executor: in our CI's runs, 15 min once, under 45 s another time. That wait is not asserted (a GC's timing
    is not deterministic); the live non-daemon thread that causes it is."""
    env = runtime_env.ensure("1.2")
    script = tmp_path / "driver.py"
    script.write_text(LEAKING_DRIVER)
    command = [str(runtime_env.spark_submit_of(env)), "--master", "local[1]", str(script), mode, str(REPO_ROOT)]
    with tied_process(command, driver_environment(env)) as process:
        assert process.stdout is not None
        state = next((line for line in process.stdout if line.startswith("WORKER ")), "no WORKER line\n")
        if alive:
            os.killpg(process.pid, signal.SIGKILL)
        try:  # reads the rest: the JVM shares the pipe, which ends only when the JVM exits
            process.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    assert state == f"WORKER daemon=False alive={alive}\n"
    if not alive:
        assert process.returncode == 0
