"""Parity gate between the Spark pool-metrics job and the legacy pandas job: compares a run's staging table with
the legacy shadow table cell by cell in PostgreSQL and reports counts, worst differences and a pass/fail verdict.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def evaluate_metrics_parity(
    database_url: str,
    spark_table: str,
    legacy_table: str,
    parity: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
    password_secret: str = "env:DB_PASSWORD",
    start: str = "",
    end: str = "",
    # KFP compiles the default (it is not a shared mutable); a test keeps it equal to METRIC_COLUMNS.
    columns: list = [
        "actual_apy",
        "actual_tvl",
        "rolling_apy_7d",
        "rolling_apy_30d",
        "apy_delta_today_yesterday",
        "stddev_apy_7d",
        "stddev_apy_30d",
        "stddev_apy_7d_delta",
        "stddev_apy_30d_delta",
        "eth_open",
        "btc_open",
        "gas_price_gwei",
    ],
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-12,
    fail_on_mismatch: bool = True,
    worst_rows: int = 10,
    enabled: bool = True,
) -> NamedTuple("ParityVerdict", verdict=str):
    """Compares the Spark metrics of [start, end] with the legacy job's, key by key and cell by cell.

    Both tables are filtered to [start, end] and FULL OUTER JOINed on (pool_id, date) inside PostgreSQL; only
    aggregates and the worst differing cells come back. A cell matches when
    ``|spark - legacy| <= rel_tol * max(|spark|, |legacy|) + abs_tol``; NULL matches only NULL, and NaN or
    +-Infinity match only the same value. The run passes when no key is missing on either side and no cell
    mismatches; two empty sides pass too (the report says that nothing was compared).

    The outputs are written before a failure is raised: the Markdown file lands in the pipeline root even when
    the task fails (Vertex AI records the metrics' values only for a task that succeeds; the report repeats them).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        spark_table: The run's staging table written by the Spark job (pool_id, date and the metric columns).
        legacy_table: The legacy job's shadow table in the production schema, e.g. ``pool_daily_metrics_legacy``;
            it may hold other dates, which are ignored.
        parity: Output; metrics ``parity_rows_compared``, ``parity_rows_missing_in_spark``,
            ``parity_rows_missing_in_legacy``, ``parity_cells_mismatched``, ``parity_max_abs_diff_<column>``,
            ``parity_max_rel_diff_<column>`` (0 when a column has no pair of finite values) and ``parity_pass``
            (1.0 or 0.0). All names start with ``parity_``: Vertex AI Experiments merges the metrics of all
            the run's components into one namespace, where a later key overwrites an earlier one.
        report: Output; Markdown summary: row counts, per-column differences, worst cells and missing keys.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        start: First day (ISO date), empty for no lower bound.
        end: Last day (ISO date, inclusive), empty for no upper bound.
        columns: The metric columns to compare (present in both tables).
        rel_tol: Relative tolerance of a cell, as a fraction of the larger absolute value.
        abs_tol: Absolute tolerance added to the relative one. Tiny but not zero: a value that is exactly 0 on
            one side may come out as 1e-17 on the other because the two jobs sum floats in a different order,
            and against 0 any relative tolerance is zero.
        fail_on_mismatch: Raise after writing the outputs when the verdict is "fail" (fails the pipeline).
        worst_rows: How many worst differing cells (and missing keys per side) the report lists.
        enabled: False turns the gate off for the run (``compare_with_legacy=False``): nothing is read, the
            report says so, and the verdict is "skipped". A parameter rather than a dsl.If around the task,
            because the promotion after it must run either way and KFP cannot depend on a conditional task.

    Returns:
        verdict: "pass", "fail" or "skipped".
    """
    import datetime as dt
    import logging
    import math
    import re
    from collections import namedtuple
    from pathlib import Path

    from sqlalchemy import create_engine, text

    from spark_src.common.config import DbConfig

    log = logging.getLogger("evaluate_metrics_parity")
    if not enabled:
        Path(report.path).parent.mkdir(parents=True, exist_ok=True)
        Path(report.path).write_text("# Metrics parity: SKIPPED\n\nThe comparison with legacy is off for this run.\n")
        parity.log_metric("parity_skipped", 1.0)
        log.info("metrics parity skipped (compare_with_legacy is off)")
        return namedtuple("ParityVerdict", ["verdict"])("skipped")
    identifier = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
    for name in [spark_table, legacy_table, *columns]:
        if not isinstance(name, str) or not identifier.match(name):
            raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    if not columns:
        raise ValueError("columns is empty: nothing to compare")
    if len(set(columns)) != len(columns) or {"pool_id", "date"} & set(columns):
        raise ValueError(f"columns must be distinct metric columns, not the key: {columns}")
    for name, tolerance in (("rel_tol", rel_tol), ("abs_tol", abs_tol)):
        if not (math.isfinite(tolerance) and tolerance >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tolerance!r}")
    if worst_rows < 0:
        raise ValueError(f"worst_rows must be >= 0, got {worst_rows}")
    bounds = {}
    for name, value in (("start", start), ("end", end)):
        if value:
            try:
                bounds[name] = dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{name} is not an ISO date (YYYY-MM-DD): {value!r}") from None
    if len(bounds) == 2 and bounds["start"] > bounds["end"]:
        raise ValueError(f"start {start} is after end {end}")

    db = DbConfig.from_url(database_url, password_secret)
    date_filter = " AND ".join(
        [*(["date >= :start"] if "start" in bounds else []), *(["date <= :end"] if "end" in bounds else [])]
    )
    where = f"WHERE {date_filter}" if date_filter else ""
    # Metric columns travel under positional names (s0/l0, s1/l1, ...): "s_" + a 63-character column name would
    # be truncated by PostgreSQL. The cast makes a numeric staging column comparable too.
    casts = ", ".join(f'CAST("{c}" AS double precision) AS m{i}' for i, c in enumerate(columns))
    pairs = ", ".join(f"s.m{i} AS s{i}, l.m{i} AS l{i}" for i in range(len(columns)))
    # The join is materialised once (a temporary table, dropped at commit) and then aggregated by several
    # queries, rather than re-reading the legacy table, which holds every date, for each of them. `present`
    # tells a missing row from a row whose key columns are NULL.
    joined_sql = f"""
        CREATE TEMPORARY TABLE parity_joined ON COMMIT DROP AS
        SELECT coalesce(s.pool_id, l.pool_id) AS pool_id, coalesce(s.date, l.date) AS date,
               s.present IS NOT NULL AS in_spark, l.present IS NOT NULL AS in_legacy, {pairs}
        FROM (SELECT pool_id, date, true AS present, {casts} FROM "{spark_table}" {where}) AS s
        FULL OUTER JOIN (SELECT pool_id, date, true AS present, {casts} FROM "{legacy_table}" {where}) AS l
            ON s.pool_id = l.pool_id AND s.date = l.date
    """
    keys_sql = """
        SELECT count(*) FILTER (WHERE in_spark AND in_legacy),
               count(*) FILTER (WHERE NOT in_spark),
               count(*) FILTER (WHERE NOT in_legacy),
               count(*) - count(DISTINCT (pool_id, date))
        FROM parity_joined
    """
    unpivot = ", ".join(f"({i}, '{c}', s{i}, l{i})" for i, c in enumerate(columns))
    # One row per compared cell. NaN sorts above +Infinity in PostgreSQL, so `abs(x) < 'Infinity'` holds exactly
    # for finite x; tolerance arithmetic means nothing otherwise (Infinity - 1 is within Infinity * rel_tol).
    # `both_finite` is NULL when a side is NULL, which falls through to the CASE's ELSE: a value against NULL.
    compared_sql = f"""
        WITH cells AS (
            SELECT j.pool_id, j.date, c.position, c.column_name, c.spark_value, c.legacy_value,
                   abs(c.spark_value) < 'Infinity' AND abs(c.legacy_value) < 'Infinity' AS both_finite
            FROM parity_joined AS j
            CROSS JOIN LATERAL (VALUES {unpivot}) AS c (position, column_name, spark_value, legacy_value)
            WHERE j.in_spark AND j.in_legacy
        ), diffs AS (
            SELECT *,
                   CASE WHEN both_finite THEN abs(spark_value - legacy_value) END AS abs_diff,
                   CASE WHEN both_finite THEN greatest(abs(spark_value), abs(legacy_value)) END AS scale
            FROM cells
        ), compared AS (
            SELECT *,
                   CASE WHEN both_finite THEN coalesce(abs_diff / nullif(scale, 0), 0) END AS rel_diff,
                   CASE WHEN spark_value IS NOT DISTINCT FROM legacy_value THEN false
                        WHEN both_finite THEN abs_diff > CAST(:rel_tol AS double precision) * scale
                                                         + CAST(:abs_tol AS double precision)
                        ELSE true
                   END AS mismatched
            FROM diffs
        )
    """
    per_column_sql = f"""{compared_sql}
        SELECT column_name, max(abs_diff), max(rel_diff), count(*) FILTER (WHERE mismatched)
        FROM compared GROUP BY position, column_name ORDER BY position
    """
    # NULL relative differences (a value against NULL, NaN or Infinity) are the worst of all: listed first.
    worst_sql = f"""{compared_sql}
        SELECT pool_id, date, column_name, spark_value, legacy_value, abs_diff, rel_diff
        FROM compared WHERE mismatched
        ORDER BY rel_diff DESC NULLS FIRST, abs_diff DESC NULLS FIRST, pool_id, date, position
        LIMIT :limit
    """
    missing_sql = """
        SELECT pool_id, date, in_spark
        FROM (
            SELECT pool_id, date, in_spark, row_number() OVER (PARTITION BY in_spark ORDER BY pool_id, date) AS n
            FROM parity_joined WHERE NOT (in_spark AND in_legacy)
        ) AS missing
        WHERE n <= :limit ORDER BY in_spark, pool_id, date
    """

    engine = create_engine(db.sqlalchemy_url())
    try:
        with engine.begin() as conn:
            for table in (spark_table, legacy_table):
                if conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{table}"'}).scalar() is None:
                    raise RuntimeError(f"table {table} does not exist")
            conn.execute(text(joined_sql), bounds)
            rows_compared, missing_in_spark, missing_in_legacy, duplicate_keys = conn.execute(text(keys_sql)).one()
            if duplicate_keys:
                raise RuntimeError(
                    f"{duplicate_keys} duplicate (pool_id, date) keys in {spark_table} or {legacy_table} over the "
                    "range: parity needs one row per key on each side"
                )
            tolerances = {"rel_tol": rel_tol, "abs_tol": abs_tol}
            per_column = {name: rest for name, *rest in conn.execute(text(per_column_sql), tolerances)}
            worst = conn.execute(text(worst_sql), {**tolerances, "limit": worst_rows}).all()
            missing = conn.execute(text(missing_sql), {"limit": worst_rows}).all()
    finally:
        engine.dispose()

    # A column without any compared row (or only NULL/non-finite pairs) has no difference to report.
    stats = {c: per_column.get(c, [None, None, 0]) for c in columns}
    cells_mismatched = sum(mismatched for _, _, mismatched in stats.values())
    cells_compared = rows_compared * len(columns)
    passed = missing_in_spark == 0 and missing_in_legacy == 0 and cells_mismatched == 0
    verdict = "pass" if passed else "fail"
    worst_column = max(
        (c for c in columns if stats[c][2]), key=lambda c: (stats[c][2], stats[c][1] or 0.0), default=None
    )

    parity.log_metric("parity_rows_compared", float(rows_compared))
    parity.log_metric("parity_rows_missing_in_spark", float(missing_in_spark))
    parity.log_metric("parity_rows_missing_in_legacy", float(missing_in_legacy))
    parity.log_metric("parity_cells_mismatched", float(cells_mismatched))
    for c in columns:
        max_abs, max_rel, _ = stats[c]
        parity.log_metric(f"parity_max_abs_diff_{c}", float(max_abs or 0.0))
        parity.log_metric(f"parity_max_rel_diff_{c}", float(max_rel or 0.0))
    parity.log_metric("parity_pass", 1.0 if passed else 0.0)

    def cell(value) -> str:
        """A table cell: floats exactly as stored (repr round-trips), NULL spelled out, pipes escaped."""
        if value is None:
            return "NULL"
        return (repr(value) if isinstance(value, float) else str(value)).replace("|", "\\|")

    def diff(value) -> str:
        return "n/a" if value is None else f"{value:.3g}"

    if bounds:
        span = f"dates {start or 'unbounded'} to {end or 'unbounded'}"
    else:
        span = "all dates"
    lines = [
        f"# Metrics parity: {verdict.upper()}",
        "",
        f"Spark `{spark_table}` against legacy `{legacy_table}`, {span}. A cell matches when "
        f"`|spark - legacy| <= rel_tol * max(|spark|, |legacy|) + abs_tol` (rel_tol {rel_tol:g}, abs_tol "
        f"{abs_tol:g}); NULL matches only NULL.",
        "",
    ]
    if rows_compared == 0 and missing_in_spark == 0 and missing_in_legacy == 0:
        lines += ["**Both tables are empty over the range: nothing was compared.** Check the dates and tables.", ""]
    lines += [
        "| rows | count |",
        "|---|---:|",
        f"| compared (key on both sides) | {rows_compared} |",
        f"| missing in Spark | {missing_in_spark} |",
        f"| missing in legacy | {missing_in_legacy} |",
        f"| mismatched cells | {cells_mismatched} of {cells_compared} |",
        "",
        "## Per column",
        "",
        "| column | max abs diff | max rel diff | mismatched cells |",
        "|---|---:|---:|---:|",
        *(f"| {c} | {diff(stats[c][0])} | {diff(stats[c][1])} | {stats[c][2]} |" for c in columns),
        "",
    ]
    if worst:
        lines += [
            f"## Worst differing cells ({len(worst)} of {cells_mismatched})",
            "",
            "| pool_id | date | column | spark | legacy | abs diff | rel diff |",
            "|---|---|---|---:|---:|---:|---:|",
            *(
                f"| {cell(p)} | {cell(d)} | {c} | {cell(s)} | {cell(lv)} | {diff(a)} | {diff(r)} |"
                for p, d, c, s, lv, a, r in worst
            ),
            "",
        ]
    # A key missing in Spark is one only the legacy side has (in_spark false), and the other way round.
    for label, in_spark_value, total in (("Spark", False, missing_in_spark), ("legacy", True, missing_in_legacy)):
        keys = [(p, d) for p, d, in_spark in missing if in_spark == in_spark_value]
        if keys:
            lines += [
                f"## Keys missing in {label} ({len(keys)} of {total})",
                "",
                "| pool_id | date |",
                "|---|---|",
                *(f"| {cell(p)} | {cell(d)} |" for p, d in keys),
                "",
            ]
    Path(report.path).write_text("\n".join(lines), encoding="utf-8")

    summary = (
        f"{rows_compared} rows compared, {missing_in_spark} missing in Spark, {missing_in_legacy} missing in legacy, "
        f"{cells_mismatched} of {cells_compared} cells mismatched"
    )
    if worst_column:
        summary += (
            f" (worst column {worst_column}: {stats[worst_column][2]} cells, "
            f"max rel diff {diff(stats[worst_column][1])})"
        )
    log.info("metrics parity %s: %s", verdict, summary)
    if not passed and fail_on_mismatch:
        raise RuntimeError(f"metrics parity failed: {summary}; see the report artifact")
    return namedtuple("ParityVerdict", ["verdict"])(verdict)
