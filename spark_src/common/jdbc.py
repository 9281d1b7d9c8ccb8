"""JDBC reads and writes against PostgreSQL.

Partitioned reads get their bounds from the data (Spark needs ``lowerBound``/``upperBound`` with
``partitionColumn``); numeric columns are cast to ``double precision`` in the SQL, otherwise Spark maps them to
DecimalType(38,18); writes go to UNLOGGED tables in batched multi-row inserts (see :attr:`DbConfig.jdbc_url`).
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession

from spark_src.common.config import DbConfig
from spark_src.common.pg import jdbc_properties
from spark_src.common.sql import check_identifier

log = logging.getLogger(__name__)

DRIVER = "org.postgresql.Driver"


def cluster_read_partitions(conf: dict[str, str], default_parallelism: int) -> int:
    """How many parallel JDBC reads the cluster can run at once: one per executor core.

    On Dataproc (spark-submit) the executors are named by the batch properties: ``spark.executor.instances``,
    or ``spark.dynamicAllocation.maxExecutors`` when dynamic allocation may grow to it, times
    ``spark.executor.cores`` (Dataproc Serverless' default is 4). In local mode it is Spark's default
    parallelism (:func:`~spark_src.common.session.build_session` sets it to twice the ``local[N]`` cores).
    Never below the default parallelism, never below 1.

    Args:
        conf: The session's Spark properties (``dict(spark.sparkContext.getConf().getAll())``).
        default_parallelism: ``spark.sparkContext.defaultParallelism``.
    """
    master = conf.get("spark.master", "")
    if master.startswith("local"):
        return max(1, default_parallelism)
    cores = int(conf.get("spark.executor.cores", "4"))
    executors = int(conf.get("spark.executor.instances", "2"))
    if conf.get("spark.dynamicAllocation.enabled", "true") == "true" and "spark.dynamicAllocation.maxExecutors" in conf:
        executors = max(executors, int(conf["spark.dynamicAllocation.maxExecutors"]))
    return max(1, default_parallelism, executors * cores)


# The Spark properties :func:`cluster_read_partitions` reads.
CLUSTER_PROPERTIES = (
    "spark.master",
    "spark.executor.cores",
    "spark.executor.instances",
    "spark.dynamicAllocation.enabled",
    "spark.dynamicAllocation.maxExecutors",
)


def session_read_partitions(spark: SparkSession) -> int:
    """:func:`cluster_read_partitions` of a running session (its properties read one by one: the whole
    configuration would cost a Py4J round trip per property)."""
    sc = spark.sparkContext
    conf = sc.getConf()
    properties = {key: conf.get(key) for key in CLUSTER_PROPERTIES if conf.contains(key)}
    return cluster_read_partitions(properties, sc.defaultParallelism)


def read_partitions(rows: int, max_partitions: int, rows_per_partition: int) -> int:
    """How many parallel reads for a result of ``rows`` rows: one per ``rows_per_partition`` rows started, at
    most ``max_partitions`` (the cluster's cores), at least one."""
    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be at least 1, not {rows_per_partition}")
    return max(1, min(max_partitions, -(-rows // rows_per_partition)))


def _options(db: DbConfig) -> dict[str, str]:
    # Spark redacts option values whose key matches spark.redaction.regex ("password" does) in its logs/UI.
    # The session settings (application_name, timeouts, keepalives) travel as pgjdbc connection properties.
    return {
        "url": db.jdbc_url,
        "user": db.user,
        "password": db.password(),
        "driver": DRIVER,
        **jdbc_properties(db.application_name or "spark"),
    }


def column_range(spark: SparkSession, db: DbConfig, query: str, column: str) -> tuple[int | None, int | None, int]:
    """(min, max, rows) of the integer ``column`` of ``query``'s result: the bounds of a partitioned read and
    its size, in one small query on the driver's JDBC connection (not a Spark job: a one-day run pays its fixed
    costs per job). min and max are None when the result is empty."""
    lo, hi, rows = query_row(spark, db, f"SELECT min({column}), max({column}), count(*) FROM ({query}) AS src")
    return (None if lo is None else int(lo)), (None if hi is None else int(hi)), int(rows)


def read_query(
    spark: SparkSession,
    db: DbConfig,
    query: str,
    *,
    partition_column: str | None = None,
    bounds: tuple[int | None, int | None] = (None, None),
    num_partitions: int = 1,
    fetch_size: int = 10_000,
) -> DataFrame:
    """Reads the result of ``query`` (no ORDER BY: Spark does not keep it and PostgreSQL would sort for nothing).

    With ``partition_column`` (an integer column of the query's result), its ``bounds`` (min, max; see
    :func:`column_range`) and ``num_partitions`` > 1, the read is split into that many ranges of the column.
    Otherwise it is one read, one partition.
    """
    options = {**_options(db), "fetchsize": str(fetch_size)}
    reader = spark.read.format("jdbc").options(**options).option("dbtable", f"({query}) AS src")
    lo, hi = bounds
    if partition_column and num_partitions > 1 and lo is not None and hi is not None:
        partitions = max(1, min(num_partitions, hi - lo + 1))
        log.info("partitioned read on %s in [%d, %d], %d partitions", partition_column, lo, hi, partitions)
        reader = (
            reader.option("partitionColumn", partition_column)
            .option("lowerBound", str(lo))
            .option("upperBound", str(hi + 1))
            .option("numPartitions", str(partitions))
        )
    return reader.load()


# Spark SQL type -> PostgreSQL column type of the tables the jobs create (the same types Spark's own DDL uses).
_PG_TYPES = {
    "string": "text",
    "date": "date",
    "timestamp": "timestamptz",
    "double": "double precision",
    "bigint": "bigint",
    "int": "integer",
    "boolean": "boolean",
}


def _connect(spark: SparkSession, db: DbConfig):
    """A JDBC connection of the driver's JVM (a Dataproc batch's Python has no PostgreSQL client).

    The password goes into a ``java.util.Properties`` and is never logged.
    """
    jvm = spark.sparkContext._jvm
    properties = jvm.java.util.Properties()
    properties.setProperty("user", db.user)
    properties.setProperty("password", db.password())
    for key, value in jdbc_properties(db.application_name or "spark").items():
        properties.setProperty(key, value)
    return jvm.org.postgresql.Driver().connect(db.jdbc_url, properties)


def query_row(spark: SparkSession, db: DbConfig, sql: str) -> tuple:
    """The first row of a small query, run on the driver's JDBC connection (no Spark job)."""
    return query_rows(spark, db, [sql])[0]


def query_rows(spark: SparkSession, db: DbConfig, queries: list[str]) -> list[tuple]:
    """The first row of each small query (``()`` for an empty result), all on one driver JDBC connection."""
    connection = _connect(spark, db)
    try:
        rows = []
        for sql in queries:
            result = connection.createStatement().executeQuery(sql)
            row = ()
            if result.next():
                row = tuple(result.getObject(i + 1) for i in range(result.getMetaData().getColumnCount()))
            rows.append(row)
        return rows
    finally:
        connection.close()


def execute_statements(spark: SparkSession, db: DbConfig, statements: list[str]) -> None:
    """Runs SQL statements (DDL) in one transaction on the driver's JDBC connection."""
    connection = _connect(spark, db)
    try:
        connection.setAutoCommit(False)
        statement = connection.createStatement()
        for sql in statements:
            statement.execute(sql)
        connection.commit()
    finally:
        connection.close()


def unlogged_table_ddl(df: DataFrame, table: str) -> str:
    """``CREATE UNLOGGED TABLE`` with ``df``'s columns and their PostgreSQL types."""
    columns = []
    for field in df.schema.fields:
        pg_type = _PG_TYPES.get(field.dataType.simpleString())
        if pg_type is None:
            raise ValueError(f"column {field.name}: no PostgreSQL type for Spark type {field.dataType.simpleString()}")
        columns.append(f'"{check_identifier(field.name)}" {pg_type}')
    return f'CREATE UNLOGGED TABLE "{check_identifier(table)}" ({", ".join(columns)})'


def write_table(df: DataFrame, db: DbConfig, table: str, *, batch_size: int = 10_000) -> None:
    """(Re)creates ``table`` as an UNLOGGED table with ``df``'s columns and writes ``df`` into it.

    For the jobs' per-run staging tables: a rerun recomputes them, so they skip the write-ahead log (the
    rows are written once, not twice). After a database crash PostgreSQL empties an unlogged table; the
    promotion of an empty staging table changes nothing, and the parity gate fails it.
    """
    execute_statements(
        df.sparkSession, db, [f'DROP TABLE IF EXISTS "{check_identifier(table)}"', unlogged_table_ddl(df, table)]
    )
    (
        df.write.format("jdbc")
        .options(**_options(db))
        .option("dbtable", table)
        .option("batchsize", str(batch_size))
        .mode("append")
        .save()
    )
