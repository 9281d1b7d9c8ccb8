"""Parity of the Spark pool-metrics job with the legacy pandas job: a run's staging table against the legacy
shadow table, cell by cell, inside PostgreSQL; only aggregates and the worst differing cells come back.

A cell matches when ``|spark - legacy| <= rel_tol * scale + abs_tol``; NULL matches only NULL, and NaN or
+-Infinity match only the same value. The scale is max(|spark|, |legacy|), except for the day-over-day
differences (:data:`DERIVED_OPERANDS`), whose scale is their operands' magnitude max(|x_d|, |x_d-1|) over both
sides: a difference of two large floats is only as exact as they are (a 1e9 APY makes stddevs ~1.8e8, whose
float64 spacing is 3e-8, so their difference cannot agree to 1e-9 of its own size). :func:`compare` runs the
SQL; :class:`Comparison` (the verdict, the metrics) and :func:`render_markdown` are pure.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from spark_src.common import faults
from spark_src.common.config import DbConfig
from spark_src.common.sql import check_identifiers, table_exists, transaction

#: Derived columns: x_d - x_{d-1} of the column named here; x_{d-1} = x_d - the difference, so both operands are
#: read from the row itself.
DERIVED_OPERANDS = {
    "apy_delta_today_yesterday": "actual_apy",
    "stddev_apy_7d_delta": "stddev_apy_7d",
    "stddev_apy_30d_delta": "stddev_apy_30d",
}

SKIPPED_REPORT = "# Metrics parity: SKIPPED\n\nThe comparison with legacy is off for this run.\n"


@dataclass(frozen=True)
class Request:
    """What to compare; validated on construction, before anything touches the database."""

    spark_table: str
    legacy_table: str
    columns: list[str]
    start: str = ""
    end: str = ""
    rel_tol: float = 1e-9
    abs_tol: float = 1e-12
    worst_rows: int = 10
    bounds: dict[str, dt.date] = field(init=False)

    def __post_init__(self) -> None:
        check_identifiers(self.spark_table, self.legacy_table, *self.columns)
        if not self.columns:
            raise ValueError("columns is empty: nothing to compare")
        if len(set(self.columns)) != len(self.columns) or {"pool_id", "date"} & set(self.columns):
            raise ValueError(f"columns must be distinct metric columns, not the key: {self.columns}")
        for name, tolerance in (("rel_tol", self.rel_tol), ("abs_tol", self.abs_tol)):
            if not (math.isfinite(tolerance) and tolerance >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {tolerance!r}")
        if self.worst_rows < 0:
            raise ValueError(f"worst_rows must be >= 0, got {self.worst_rows}")
        bounds = {}
        for name, value in (("start", self.start), ("end", self.end)):
            if value:
                try:
                    bounds[name] = dt.date.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"{name} is not an ISO date (YYYY-MM-DD): {value!r}") from None
        if len(bounds) == 2 and bounds["start"] > bounds["end"]:
            raise ValueError(f"start {self.start} is after end {self.end}")
        object.__setattr__(self, "bounds", bounds)


def joined_sql(request: Request) -> str:
    """The FULL OUTER JOIN of both sides on (pool_id, date), materialised once as a temporary table (dropped at
    commit) for the queries that follow, rather than re-reading the legacy table, which holds every date, for
    each of them. ``present`` tells a missing row from a row whose key columns are NULL."""
    bounds = request.bounds
    date_filter = " AND ".join(
        [*(["date >= :start"] if "start" in bounds else []), *(["date <= :end"] if "end" in bounds else [])]
    )
    where = f"WHERE {date_filter}" if date_filter else ""
    # Metric columns travel under positional names (s0/l0, s1/l1, ...): "s_" + a 63-character column name would
    # be truncated by PostgreSQL. The cast makes a numeric staging column comparable too.
    casts = ", ".join(f'CAST("{c}" AS double precision) AS m{i}' for i, c in enumerate(request.columns))
    operands = ", ".join(
        f'CAST("{DERIVED_OPERANDS[c]}" AS double precision) AS o{i}'
        if c in DERIVED_OPERANDS
        else f"CAST(NULL AS double precision) AS o{i}"
        for i, c in enumerate(request.columns)
    )
    casts = f"{casts}, {operands}"
    pairs = ", ".join(
        f"s.m{i} AS s{i}, l.m{i} AS l{i}, s.o{i} AS so{i}, l.o{i} AS lo{i}" for i in range(len(request.columns))
    )
    return f"""
        CREATE TEMPORARY TABLE parity_joined ON COMMIT DROP AS
        SELECT coalesce(s.pool_id, l.pool_id) AS pool_id, coalesce(s.date, l.date) AS date,
               s.present IS NOT NULL AS in_spark, l.present IS NOT NULL AS in_legacy, {pairs}
        FROM (SELECT pool_id, date, true AS present, {casts} FROM "{request.spark_table}" {where}) AS s
        FULL OUTER JOIN (SELECT pool_id, date, true AS present, {casts} FROM "{request.legacy_table}" {where}) AS l
            ON s.pool_id = l.pool_id AND s.date = l.date
    """


KEYS_SQL = """
    SELECT count(*) FILTER (WHERE in_spark AND in_legacy),
           count(*) FILTER (WHERE NOT in_spark),
           count(*) FILTER (WHERE NOT in_legacy),
           count(*) - count(DISTINCT (pool_id, date))
    FROM parity_joined
"""

MISSING_SQL = """
    SELECT pool_id, date, in_spark
    FROM (
        SELECT pool_id, date, in_spark, row_number() OVER (PARTITION BY in_spark ORDER BY pool_id, date) AS n
        FROM parity_joined WHERE NOT (in_spark AND in_legacy)
    ) AS missing
    WHERE n <= :limit ORDER BY in_spark, pool_id, date
"""


def compared_sql(columns: list[str]) -> str:
    """One row per compared cell, with its differences and whether it mismatches (a WITH clause).

    NaN sorts above +Infinity in PostgreSQL, so ``abs(x) < 'Infinity'`` holds exactly for finite x; tolerance
    arithmetic means nothing otherwise (Infinity - 1 is within Infinity * rel_tol). ``both_finite`` is NULL
    when a side is NULL, which falls through to the CASE's ELSE: a value against NULL.
    """
    unpivot = ", ".join(f"({i}, '{c}', s{i}, l{i}, so{i}, lo{i})" for i, c in enumerate(columns))
    # A derived difference's operands x_d and x_d - difference, on both sides; greatest() skips NULLs, so a
    # plain column (no operand) falls back to its own values.
    operand_scale = (
        "greatest(abs(spark_operand), abs(legacy_operand), abs(spark_operand - spark_value), "
        "abs(legacy_operand - legacy_value))"
    )
    return f"""
        WITH cells AS (
            SELECT j.pool_id, j.date, c.position, c.column_name, c.spark_value, c.legacy_value, c.spark_operand,
                   c.legacy_operand,
                   abs(c.spark_value) < 'Infinity' AND abs(c.legacy_value) < 'Infinity' AS both_finite
            FROM parity_joined AS j
            CROSS JOIN LATERAL (VALUES {unpivot})
                AS c (position, column_name, spark_value, legacy_value, spark_operand, legacy_operand)
            WHERE j.in_spark AND j.in_legacy
        ), diffs AS (
            SELECT *,
                   CASE WHEN both_finite THEN abs(spark_value - legacy_value) END AS abs_diff,
                   CASE WHEN both_finite THEN coalesce(
                       CASE WHEN abs({operand_scale}) < 'Infinity' THEN {operand_scale} END,
                       greatest(abs(spark_value), abs(legacy_value))
                   ) END AS scale
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


def per_column_sql(columns: list[str]) -> str:
    return f"""{compared_sql(columns)}
        SELECT column_name, max(abs_diff), max(rel_diff), count(*) FILTER (WHERE mismatched), max(scale)
        FROM compared GROUP BY position, column_name ORDER BY position
    """


def worst_sql(columns: list[str]) -> str:
    # NULL relative differences (a value against NULL, NaN or Infinity) are the worst of all: listed first.
    return f"""{compared_sql(columns)}
        SELECT pool_id, date, column_name, spark_value, legacy_value, abs_diff, rel_diff, scale
        FROM compared WHERE mismatched
        ORDER BY rel_diff DESC NULLS FIRST, abs_diff DESC NULLS FIRST, pool_id, date, position
        LIMIT :limit
    """


@dataclass(frozen=True)
class Comparison:
    """What the comparison found. ``per_column``: column -> (max abs diff, max rel diff, mismatched cells, max
    scale), None when the column had no pair of finite values; ``worst``: (pool_id, date, column, spark, legacy,
    abs diff, rel diff, scale) rows; ``missing``: (pool_id, date, in_spark) keys only one side has."""

    request: Request
    rows_compared: int
    missing_in_spark: int
    missing_in_legacy: int
    per_column: dict[str, tuple]
    worst: list[tuple] = field(default_factory=list)
    missing: list[tuple] = field(default_factory=list)

    def stats(self, column: str) -> tuple:
        # A column without any compared row has no difference to report.
        return tuple(self.per_column.get(column, (None, None, 0, None)))

    @property
    def cells_mismatched(self) -> int:
        return sum(self.stats(c)[2] for c in self.request.columns)

    @property
    def cells_compared(self) -> int:
        return self.rows_compared * len(self.request.columns)

    @property
    def passed(self) -> bool:
        return self.missing_in_spark == 0 and self.missing_in_legacy == 0 and self.cells_mismatched == 0

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"

    def metrics(self) -> dict[str, float]:
        """The ``parity_*`` metrics; a difference is 0 for a column without a pair of finite values."""
        found = {
            "parity_rows_compared": float(self.rows_compared),
            "parity_rows_missing_in_spark": float(self.missing_in_spark),
            "parity_rows_missing_in_legacy": float(self.missing_in_legacy),
            "parity_cells_mismatched": float(self.cells_mismatched),
        }
        for c in self.request.columns:
            max_abs, max_rel = self.stats(c)[:2]
            found[f"parity_max_abs_diff_{c}"] = float(max_abs or 0.0)
            found[f"parity_max_rel_diff_{c}"] = float(max_rel or 0.0)
        found["parity_pass"] = 1.0 if self.passed else 0.0
        return found

    def summary(self) -> str:
        """One line: the counts, and the column with the most mismatched cells."""
        text = (
            f"{self.rows_compared} rows compared, {self.missing_in_spark} missing in Spark, {self.missing_in_legacy} "
            f"missing in legacy, {self.cells_mismatched} of {self.cells_compared} cells mismatched"
        )
        columns = [c for c in self.request.columns if self.stats(c)[2]]
        if columns:
            worst = max(columns, key=lambda c: (self.stats(c)[2], self.stats(c)[1] or 0.0))
            text += f" (worst column {worst}: {self.stats(worst)[2]} cells, max rel diff {_diff(self.stats(worst)[1])})"
        return text

    def check(self, fail_on_mismatch: bool) -> None:
        """Raises (after the outputs are written) when the verdict is "fail" and that must fail the run."""
        if not self.passed and fail_on_mismatch:
            raise RuntimeError(f"metrics parity failed: {self.summary()}; see the report artifact")


def compare(db: DbConfig, request: Request) -> Comparison:
    """Runs the comparison in one transaction (the temporary join table is dropped at commit).

    Raises:
        RuntimeError: a table does not exist, or a side holds a (pool_id, date) twice over the range.
    """
    from sqlalchemy import text

    tolerances = {"rel_tol": request.rel_tol, "abs_tol": request.abs_tol}
    with transaction(db) as conn:
        for table in (request.spark_table, request.legacy_table):
            if not table_exists(conn, table):
                raise RuntimeError(f"table {table} does not exist")
        conn.execute(text(joined_sql(request)), request.bounds)
        rows_compared, missing_in_spark, missing_in_legacy, duplicate_keys = conn.execute(text(KEYS_SQL)).one()
        if duplicate_keys:
            raise RuntimeError(
                f"{duplicate_keys} duplicate (pool_id, date) keys in {request.spark_table} or {request.legacy_table} "
                "over the range: parity needs one row per key on each side"
            )
        per_column = {
            name: tuple(rest) for name, *rest in conn.execute(text(per_column_sql(request.columns)), tolerances)
        }
        worst = conn.execute(text(worst_sql(request.columns)), {**tolerances, "limit": request.worst_rows}).all()
        missing = conn.execute(text(MISSING_SQL), {"limit": request.worst_rows}).all()
        faults.maybe_kill("parity")
    return Comparison(
        request,
        rows_compared,
        missing_in_spark,
        missing_in_legacy,
        per_column,
        [tuple(row) for row in worst],
        [tuple(row) for row in missing],
    )


def _cell(value) -> str:
    """A table cell: floats exactly as stored (repr round-trips), NULL spelled out, pipes escaped."""
    if value is None:
        return "NULL"
    return (repr(value) if isinstance(value, float) else str(value)).replace("|", "\\|")


def _diff(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def render_markdown(comparison: Comparison) -> str:
    """The report: verdict, row counts, per-column differences, worst cells and missing keys."""
    c, request = comparison, comparison.request
    span = f"dates {request.start or 'unbounded'} to {request.end or 'unbounded'}" if request.bounds else "all dates"
    lines = [
        f"# Metrics parity: {c.verdict.upper()}",
        "",
        f"Spark `{request.spark_table}` against legacy `{request.legacy_table}`, {span}. A cell matches when "
        f"`|spark - legacy| <= rel_tol * scale + abs_tol` (rel_tol {request.rel_tol:g}, abs_tol "
        f"{request.abs_tol:g}); NULL matches only NULL. The scale is `max(|spark|, |legacy|)`, but for a "
        "day-over-day difference x_d - x_d-1 ("
        + ", ".join(f"`{c}` of `{o}`" for c, o in DERIVED_OPERANDS.items())
        + ") it is its operands' `max(|x_d|, |x_d-1|)` on both sides: the difference of two large numbers is only "
        "as exact as they are.",
        "",
    ]
    if c.rows_compared == 0 and c.missing_in_spark == 0 and c.missing_in_legacy == 0:
        lines += ["**Both tables are empty over the range: nothing was compared.** Check the dates and tables.", ""]
    lines += [
        "| rows | count |",
        "|---|---:|",
        f"| compared (key on both sides) | {c.rows_compared} |",
        f"| missing in Spark | {c.missing_in_spark} |",
        f"| missing in legacy | {c.missing_in_legacy} |",
        f"| mismatched cells | {c.cells_mismatched} of {c.cells_compared} |",
        "",
        "## Per column",
        "",
        "| column | max abs diff | max rel diff | mismatched cells | max scale |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {col} | {_diff(c.stats(col)[0])} | {_diff(c.stats(col)[1])} | {c.stats(col)[2]} "
            f"| {_diff((*c.stats(col), None)[3])} |"
            for col in request.columns
        ),
        "",
    ]
    if c.worst:
        lines += [
            f"## Worst differing cells ({len(c.worst)} of {c.cells_mismatched})",
            "",
            "| pool_id | date | column | spark | legacy | abs diff | rel diff | scale |",
            "|---|---|---|---:|---:|---:|---:|---:|",
            *(
                f"| {_cell(p)} | {_cell(d)} | {col} | {_cell(s)} | {_cell(lv)} | {_diff(a)} | {_diff(r)} "
                f"| {_diff((*scale, None)[0])} |"
                for p, d, col, s, lv, a, r, *scale in c.worst
            ),
            "",
        ]
    # A key missing in Spark is one only the legacy side has (in_spark false), and the other way round.
    for label, in_spark_value, total in (("Spark", False, c.missing_in_spark), ("legacy", True, c.missing_in_legacy)):
        keys = [(p, d) for p, d, in_spark in c.missing if in_spark == in_spark_value]
        if keys:
            lines += [
                f"## Keys missing in {label} ({len(keys)} of {total})",
                "",
                "| pool_id | date |",
                "|---|---|",
                *(f"| {_cell(p)} | {_cell(d)} |" for p, d in keys),
                "",
            ]
    return "\n".join(lines)
