"""Smoke batch: the first contact of the staged code with Dataproc, before any scheduled run.

Built exactly like the pipeline's batches (same zip, jars, python files, runtime), it checks what a real run
needs and exits: the JVM classes of the JDBC driver and SynapseML, the ``synapse.ml.lightgbm`` Python module
(from the jars listed in python_file_uris), a LightGBM estimator created across both, the password read from its
secret reference, and one query over JDBC to the database. It writes nothing.

    python -m spark_src.smoke.main --database-url postgresql://user@host:5432/db --password-secret env:DB_PASSWORD
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from spark_src.common import jars
from spark_src.common.config import DbConfig
from spark_src.common.jdbc import read_query
from spark_src.common.session import build_session, running_under_spark_submit
from spark_src.common.storage import code_version

log = logging.getLogger("smoke")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="postgresql://user@host:port/db (no password); default: DB_* env")
    parser.add_argument("--password-secret", help="secret reference of the password; default: DB_PASSWORD_SECRET")
    parser.add_argument("--code-version", default="", help="version of the code (the batch's); default: detected")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the checks; returns (and prints) the summary. Any failed check raises, naming what is missing."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    db = DbConfig.from_args_or_env(args.database_url, args.password_secret)
    local_jars = (
        None if running_under_spark_submit() else jars.resolve_all([jars.JDBC_DRIVER, *jars.SYNAPSEML_LIGHTGBM])
    )
    spark = build_session("smoke", jars=local_jars)
    jars.require_classes(spark, ["org.postgresql.Driver"], [jars.JDBC_DRIVER])
    jars.require_classes(spark, jars.SYNAPSEML_CLASSES, jars.SYNAPSEML_LIGHTGBM)
    jars.require_python_modules(jars.SYNAPSEML_PYTHON_MODULES, jars.SYNAPSEML_LIGHTGBM)
    from synapse.ml.lightgbm import LightGBMRegressor

    estimator = LightGBMRegressor(objective="regression")  # a JVM object behind a Python wrapper: both sides load
    row = read_query(spark, db, "SELECT current_database() AS database, current_setting('server_version') AS v").first()
    summary = {
        "database": row["database"],
        "server_version": row["v"],
        "table_uri": db.table_uri("pool_daily_metrics"),
        "spark_version": spark.version,
        "synapseml_estimator": estimator.__class__.__name__,
        "code_version": code_version(args.code_version),
    }
    log.info("smoke batch passed: %s", summary)
    print("RUN_SUMMARY " + json.dumps(summary, sort_keys=True), flush=True)
    return summary


if __name__ == "__main__":
    main()
