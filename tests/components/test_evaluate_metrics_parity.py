"""The Spark-vs-legacy parity gate against a real PostgreSQL: equal tables, planted differences, tolerances, ranges."""

from __future__ import annotations

import datetime as dt
import inspect
import math
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl
from sqlalchemy import text

from components.evaluate_metrics_parity import evaluate_metrics_parity
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

D = dt.date
SPARK = "stg_pool_metrics_r1"
LEGACY = "pool_daily_metrics_legacy"
SPARK_DDL = (
    f"CREATE TABLE {SPARK} (pool_id text, date date, "
    + ", ".join(f"{c} double precision" for c in METRIC_COLUMNS)
    + ")"
)
LEGACY_DDL = f"CREATE TABLE {LEGACY} (LIKE pool_daily_metrics INCLUDING ALL)"
# Zero differences, as every metric reports them when the tables agree.
ALL_DIFFS_ZERO = {
    **{f"parity_max_abs_diff_{c}": 0.0 for c in METRIC_COLUMNS},
    **{f"parity_max_rel_diff_{c}": 0.0 for c in METRIC_COLUMNS},
}


def _row(pool_id: str, day: int, **overrides: float | None) -> dict:
    """A full metrics row with distinct non-zero values; the day-over-day deltas are NULL on the first day."""
    row = {c: 1.25 * (i + 1) + day / 8 + (100.0 if pool_id == "p2" else 0.0) for i, c in enumerate(METRIC_COLUMNS)}
    if day == 1:
        row.update(apy_delta_today_yesterday=None, stddev_apy_7d_delta=None, stddev_apy_30d_delta=None)
    row.update(overrides)
    return {"pool_id": pool_id, "date": D(2026, 5, day), **row}


def _insert(conn, table: str, rows: list[dict]) -> None:
    cols = list(rows[0])
    conn.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"), rows)


def _tables(db, spark_rows: list[dict], legacy_rows: list[dict]) -> None:
    with db.begin() as conn:
        conn.execute(text(SPARK_DDL))
        conn.execute(text(LEGACY_DDL))
        if spark_rows:
            _insert(conn, SPARK, spark_rows)
        if legacy_rows:
            _insert(conn, LEGACY, legacy_rows)


def _run(db_config, tmp_path: Path, **kwargs) -> tuple[str, dict, str]:
    """Runs the component; returns the verdict, the logged metrics and the Markdown report."""
    parity = dsl.Metrics(name="parity", uri=str(tmp_path / "m"), metadata={})
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"))
    params = {"database_url": db_config.url, "spark_table": SPARK, "legacy_table": LEGACY, **kwargs}
    result = evaluate_metrics_parity.python_func(parity=parity, report=report, **params)
    return result.verdict, parity.metadata, Path(report.path).read_text()


GRID = [(pool_id, day) for pool_id in ("p1", "p2") for day in (1, 2, 3)]
# The planted differences: rolling_apy_7d of (p1, 2026-05-02) off by 1e-6 relative, actual_tvl of
# (p1, 2026-05-03) NULL in Spark only, (p2, 2026-05-03) absent from Spark.
LEGACY_APY_7D = _row("p1", 2)["rolling_apy_7d"]
SPARK_APY_7D = LEGACY_APY_7D * (1 + 1e-6)


def _planted(db) -> None:
    spark_rows = [
        _row("p1", 1),
        _row("p1", 2, rolling_apy_7d=SPARK_APY_7D),
        _row("p1", 3, actual_tvl=None),
        _row("p2", 1),
        _row("p2", 2),
    ]
    _tables(db, spark_rows, [_row(p, d) for p, d in GRID])


def test_the_default_columns_are_the_metric_columns():
    default = inspect.signature(evaluate_metrics_parity.python_func).parameters["columns"].default
    assert default == METRIC_COLUMNS


def test_identical_tables_pass_with_all_differences_zero(db, db_config, tmp_path):
    rows = [_row(p, d) for p, d in GRID]
    _tables(db, rows, rows)

    verdict, metrics, report = _run(db_config, tmp_path, start="2026-05-01", end="2026-05-03")

    assert verdict == "pass"
    assert metrics == {
        "parity_rows_compared": 6.0,
        "parity_rows_missing_in_spark": 0.0,
        "parity_rows_missing_in_legacy": 0.0,
        "parity_cells_mismatched": 0.0,
        **ALL_DIFFS_ZERO,
        "parity_pass": 1.0,
    }
    assert report.startswith("# Metrics parity: PASS")
    assert "| mismatched cells | 0 of 72 |" in report


def test_planted_differences_are_counted_exactly(db, db_config, tmp_path):
    _planted(db)

    verdict, metrics, report = _run(db_config, tmp_path, fail_on_mismatch=False)

    assert verdict == "fail"
    planted_abs = abs(SPARK_APY_7D - LEGACY_APY_7D)
    assert {k: metrics[k] for k in metrics if not k.startswith("parity_max_")} == {
        "parity_rows_compared": 5.0,
        "parity_rows_missing_in_spark": 1.0,
        "parity_rows_missing_in_legacy": 0.0,
        "parity_cells_mismatched": 2.0,  # the changed cell and the NULL against a value
        "parity_pass": 0.0,
    }
    assert metrics["parity_max_abs_diff_rolling_apy_7d"] == planted_abs
    assert metrics["parity_max_rel_diff_rolling_apy_7d"] == planted_abs / SPARK_APY_7D
    assert metrics["parity_max_rel_diff_rolling_apy_7d"] == pytest.approx(1e-6, rel=1e-5)  # 1e-6 / (1 + 1e-6)
    # The NULL cell has no difference to measure; the other actual_tvl cells are equal.
    others = {k: v for k, v in metrics.items() if k.startswith("parity_max_") and not k.endswith("_rolling_apy_7d")}
    assert others == {k: 0.0 for k in ALL_DIFFS_ZERO if not k.endswith("_rolling_apy_7d")}
    assert report.startswith("# Metrics parity: FAIL")


def test_a_failure_raises_after_writing_both_outputs(db, db_config, tmp_path):
    _planted(db)
    parity = dsl.Metrics(name="parity", uri=str(tmp_path / "m"), metadata={})
    report = dsl.Markdown(name="report", uri=str(tmp_path / "report.md"))

    with pytest.raises(RuntimeError) as failure:
        evaluate_metrics_parity.python_func(
            database_url=db_config.url, spark_table=SPARK, legacy_table=LEGACY, parity=parity, report=report
        )

    message = str(failure.value)
    assert "\n" not in message
    assert "5 rows compared, 1 missing in Spark, 0 missing in legacy, 2 of 60 cells mismatched" in message
    assert "worst column rolling_apy_7d" in message
    assert (parity.metadata["parity_pass"], parity.metadata["parity_cells_mismatched"]) == (0.0, 2.0)
    written = Path(report.path).read_text()
    assert f"| p1 | 2026-05-02 | rolling_apy_7d | {SPARK_APY_7D!r} | {LEGACY_APY_7D!r} |" in written
    assert f"| p1 | 2026-05-03 | actual_tvl | NULL | {_row('p1', 3)['actual_tvl']!r} | n/a | n/a |" in written
    assert "| rolling_apy_7d | 4e-06 | 1e-06 | 1 |" in written  # 4.0 off by 1e-6, to 3 significant digits
    assert "## Keys missing in Spark (1 of 1)\n\n| pool_id | date |\n|---|---|\n| p2 | 2026-05-03 |" in written
    assert "Keys missing in legacy" not in written


def test_a_row_only_spark_has_is_missing_in_legacy(db, db_config, tmp_path):
    _tables(db, [_row("p1", 1), _row("p1", 2)], [_row("p1", 1)])

    verdict, metrics, report = _run(db_config, tmp_path, fail_on_mismatch=False)

    assert verdict == "fail"
    assert (metrics["parity_rows_missing_in_legacy"], metrics["parity_rows_missing_in_spark"]) == (1.0, 0.0)
    assert "## Keys missing in legacy (1 of 1)" in report


def test_differences_within_tolerance_pass(db, db_config, tmp_path):
    legacy = [_row("p1", 1, actual_apy=3.0, apy_delta_today_yesterday=0.0), _row("p1", 2)]
    # 1e-12 relative on one cell; 1e-17 where legacy has an exact 0 (a float sum in another order).
    spark = [_row("p1", 1, actual_apy=3.0 * (1 + 1e-12), apy_delta_today_yesterday=1e-17), _row("p1", 2)]
    _tables(db, spark, legacy)

    verdict, metrics, _ = _run(db_config, tmp_path)

    assert verdict == "pass"
    assert metrics["parity_pass"] == 1.0
    assert 0 < metrics["parity_max_rel_diff_actual_apy"] < 1e-9
    assert metrics["parity_max_abs_diff_apy_delta_today_yesterday"] == 1e-17


@pytest.mark.parametrize(
    ("spark_value", "legacy_value", "mismatched"),
    [
        (None, None, 0),
        (2.0, None, 1),
        (None, 2.0, 1),
        (-0.0, 0.0, 0),
        (0.0, 1e-11, 1),  # beyond abs_tol, and any relative tolerance of 0 is 0
        (1e6, 1e6 + 1e-4, 0),  # 1e-10 relative
        (1e6, 1e6 + 1e-2, 1),  # 1e-8 relative
        (math.nan, math.nan, 0),
        (math.inf, math.inf, 0),
        (math.inf, 1.0, 1),  # inf * rel_tol would swallow any difference
        (math.nan, 1.0, 1),
        (-math.inf, math.inf, 1),
    ],
)
def test_cell_judgement(db, db_config, tmp_path, spark_value, legacy_value, mismatched):
    _tables(db, [_row("p1", 1, actual_apy=spark_value)], [_row("p1", 1, actual_apy=legacy_value)])

    _, metrics, _ = _run(db_config, tmp_path, fail_on_mismatch=False)

    assert metrics["parity_cells_mismatched"] == mismatched
    assert math.isfinite(metrics["parity_max_abs_diff_actual_apy"])  # JSON-safe even for NaN and Infinity cells


def test_only_the_date_range_is_compared(db, db_config, tmp_path):
    in_range = [_row("p1", 2), _row("p1", 3)]
    # The shadow table keeps older and newer days; the staging table holds a stray day too.
    legacy = [_row("p1", 1, actual_apy=-1.0), *in_range, _row("p1", 4)]
    _tables(db, [*in_range, _row("p1", 5)], legacy)

    verdict, metrics, _ = _run(db_config, tmp_path, start="2026-05-02", end="2026-05-03")
    assert (verdict, metrics["parity_rows_compared"], metrics["parity_pass"]) == ("pass", 2.0, 1.0)

    # An open end: 2026-05-04 (legacy only) and 2026-05-05 (Spark only) now count.
    _, metrics, _ = _run(db_config, tmp_path, start="2026-05-02", fail_on_mismatch=False)
    assert (metrics["parity_rows_missing_in_spark"], metrics["parity_rows_missing_in_legacy"]) == (1.0, 1.0)

    # Unbounded: 2026-05-01 is missing in Spark as well.
    _, metrics, report = _run(db_config, tmp_path, fail_on_mismatch=False)
    assert (metrics["parity_rows_missing_in_spark"], metrics["parity_rows_compared"]) == (2.0, 2.0)
    assert "all dates" in report


def test_two_empty_sides_pass_and_the_report_says_nothing_was_compared(db, db_config, tmp_path):
    _tables(db, [], [_row("p1", 1)])

    verdict, metrics, report = _run(db_config, tmp_path, start="2026-06-01", end="2026-06-30")

    assert verdict == "pass"
    assert (metrics["parity_rows_compared"], metrics["parity_pass"]) == (0.0, 1.0)
    assert "nothing was compared" in report


def test_duplicate_keys_are_refused(db, db_config, tmp_path):
    _tables(db, [_row("p1", 1), _row("p1", 1)], [_row("p1", 1)])
    with pytest.raises(RuntimeError, match="1 duplicate"):
        _run(db_config, tmp_path)


def test_a_missing_table_is_a_clear_error(db, db_config, tmp_path):
    with pytest.raises(RuntimeError, match=f"table {SPARK} does not exist"):
        _run(db_config, tmp_path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"spark_table": "stg; DROP TABLE pools"}, "identifier"),
        ({"legacy_table": "Legacy"}, "identifier"),
        ({"columns": ["actual_apy", "x-y"]}, "identifier"),
        ({"columns": ["actual_apy", "actual_apy"]}, "distinct"),
        ({"columns": ["date"]}, "distinct"),
        ({"columns": []}, "empty"),
        ({"start": "2026-13-01"}, "ISO date"),
        ({"end": "yesterday"}, "ISO date"),
        ({"start": "2026-05-02", "end": "2026-05-01"}, "after end"),
        ({"rel_tol": -1e-9}, "rel_tol"),
        ({"abs_tol": math.nan}, "abs_tol"),
    ],
)
def test_parameters_are_validated_before_touching_the_database(db_config, tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        _run(db_config, tmp_path, **override)


def test_the_component_compiles_with_its_outputs(tmp_path):
    path = tmp_path / "parity.yaml"
    compiler.Compiler().compile(evaluate_metrics_parity, str(path))

    spec = yaml.safe_load(path.read_text())
    outputs = spec["components"]["comp-evaluate-metrics-parity"]["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"parity", "report"}
    assert set(outputs["parameters"]) == {"verdict"}


DELTAS = ["stddev_apy_30d_delta", "stddev_apy_7d_delta"]


def test_a_spike_passes_on_the_scale_of_its_operands_and_a_real_mismatch_still_fails(db, db_config, tmp_path):
    """A 1e9 APY makes the stddevs ~1.8e8 (float64 spacing 3e-8): the engines' deltas of those stddevs differ by
    6e-8, both right to the operands' precision, and pass. A delta off by 1e-3 on operands ~100 fails."""
    spiked = dict(stddev_apy_30d=1.8e8, stddev_apy_30d_delta=-0.0123)
    legacy_delta = _row("p2", 2)["stddev_apy_7d_delta"]
    spark_rows = [
        _row("p1", 1),
        _row("p1", 2, **spiked),
        _row("p2", 1),
        _row("p2", 2, stddev_apy_7d_delta=legacy_delta + 1e-3),
    ]
    legacy_rows = [
        _row("p1", 1),
        _row("p1", 2, stddev_apy_30d=1.8e8, stddev_apy_30d_delta=-0.0123 + 6e-8),
        _row("p2", 1),
        _row("p2", 2),
    ]
    _tables(db, spark_rows, legacy_rows)

    verdict, metrics, report = _run(db_config, tmp_path, columns=DELTAS, fail_on_mismatch=False)

    assert verdict == "fail" and metrics["parity_cells_mismatched"] == 1  # only p2's real mismatch
    assert metrics["parity_max_abs_diff_stddev_apy_30d_delta"] == pytest.approx(6e-8, rel=1e-6)
    assert f"| p2 | 2026-05-02 | stddev_apy_7d_delta | {legacy_delta + 1e-3!r} | {legacy_delta!r} |" in report
    assert "| stddev_apy_30d_delta | 6e-08 |" in report and "1.8e+08 |" in report  # the scale is shown

    # Without the 7d mismatch the spike's table passes.
    with db.begin() as conn:
        conn.execute(
            text(f"UPDATE {SPARK} SET stddev_apy_7d_delta = :v WHERE pool_id = 'p2' AND date = '2026-05-02'"),
            {"v": legacy_delta},
        )
    verdict, metrics, _ = _run(db_config, tmp_path, columns=DELTAS)
    assert verdict == "pass" and metrics["parity_cells_mismatched"] == 0
