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

    The comparison and the report live in ``evaluation.parity``. The outputs are written before a failure is
    raised: the Markdown file lands in the pipeline root even when
    the task fails (Vertex AI records the metrics' values only for a task that succeeds; the report repeats them).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        spark_table: The run's staging table written by the Spark job (pool_id, date and the metric columns).
        legacy_table: The legacy job's shadow table in the production schema, e.g. ``stg_legacy_metrics_<run_id>``;
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
    import logging
    from collections import namedtuple
    from pathlib import Path

    from evaluation import parity as metrics_parity
    from spark_src.common.config import DbConfig

    log = logging.getLogger("evaluate_metrics_parity")
    result = namedtuple("ParityVerdict", ["verdict"])
    if not enabled:
        Path(report.path).parent.mkdir(parents=True, exist_ok=True)
        Path(report.path).write_text(metrics_parity.SKIPPED_REPORT)
        parity.log_metric("parity_skipped", 1.0)
        log.info("metrics parity skipped (compare_with_legacy is off)")
        return result("skipped")
    request = metrics_parity.Request(
        spark_table=spark_table,
        legacy_table=legacy_table,
        columns=columns,
        start=start,
        end=end,
        rel_tol=rel_tol,
        abs_tol=abs_tol,
        worst_rows=worst_rows,
    )
    comparison = metrics_parity.compare(
        DbConfig.from_url(database_url, password_secret).named("evaluate_metrics_parity"), request
    )
    for name, value in comparison.metrics().items():
        parity.log_metric(name, value)
    Path(report.path).write_text(metrics_parity.render_markdown(comparison), encoding="utf-8")
    log.info("metrics parity %s: %s", comparison.verdict, comparison.summary())
    comparison.check(fail_on_mismatch)  # after the outputs are written
    return result(comparison.verdict)
