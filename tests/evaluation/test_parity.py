"""The parity verdict, metrics and report from known comparison results (no database; the SQL that produces
them is tested against PostgreSQL in tests/components/test_evaluate_metrics_parity.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from evaluation.parity import Comparison, Request, render_markdown

D = dt.date
REQUEST = Request("stg_pool_metrics_1", "pool_daily_metrics_legacy", ["actual_apy", "rolling_apy_7d", "eth_open"])


def _comparison(**overrides) -> Comparison:
    found = {
        "rows_compared": 10,
        "missing_in_spark": 0,
        "missing_in_legacy": 0,
        "per_column": {"actual_apy": (0.0, 0.0, 0), "rolling_apy_7d": (0.002, 0.001, 2), "eth_open": (None, None, 1)},
        "worst": [
            ("p1", D(2026, 5, 3), "eth_open", 1.5, None, None, None),
            ("p2", D(2026, 5, 4), "rolling_apy_7d", 2.002, 2.0, 0.002, 0.001),
        ],
        "missing": [],
    }
    return Comparison(REQUEST, **{**found, **overrides})


def test_mismatched_cells_fail_with_exact_metrics():
    comparison = _comparison()
    assert (comparison.passed, comparison.verdict, comparison.cells_mismatched, comparison.cells_compared) == (
        False,
        "fail",
        3,
        30,
    )
    assert comparison.metrics() == {
        "parity_rows_compared": 10.0,
        "parity_rows_missing_in_spark": 0.0,
        "parity_rows_missing_in_legacy": 0.0,
        "parity_cells_mismatched": 3.0,
        "parity_max_abs_diff_actual_apy": 0.0,
        "parity_max_rel_diff_actual_apy": 0.0,
        "parity_max_abs_diff_rolling_apy_7d": 0.002,
        "parity_max_rel_diff_rolling_apy_7d": 0.001,
        "parity_max_abs_diff_eth_open": 0.0,  # no pair of finite values
        "parity_max_rel_diff_eth_open": 0.0,
        "parity_pass": 0.0,
    }
    assert comparison.summary() == (
        "10 rows compared, 0 missing in Spark, 0 missing in legacy, 3 of 30 cells mismatched "
        "(worst column rolling_apy_7d: 2 cells, max rel diff 0.001)"
    )
    comparison.check(fail_on_mismatch=False)
    with pytest.raises(RuntimeError, match="metrics parity failed: 10 rows compared"):
        comparison.check(fail_on_mismatch=True)


def test_a_missing_key_fails_even_when_every_cell_matches():
    clean = {c: (0.0, 0.0, 0) for c in REQUEST.columns}
    assert _comparison(per_column=clean, worst=[]).passed
    missing = _comparison(per_column=clean, worst=[], missing_in_legacy=1, missing=[("p9", D(2026, 5, 1), True)])
    assert missing.verdict == "fail" and missing.metrics()["parity_rows_missing_in_legacy"] == 1.0
    report = render_markdown(missing)
    assert "## Keys missing in legacy (1 of 1)\n\n| pool_id | date |\n|---|---|\n| p9 | 2026-05-01 |" in report
    assert "Keys missing in Spark" not in report


def test_the_report_lists_the_worst_cells_exactly_as_stored():
    report = render_markdown(_comparison())
    assert report.startswith("# Metrics parity: FAIL\n\nSpark `stg_pool_metrics_1` against legacy ")
    assert "all dates" in report
    assert "| mismatched cells | 3 of 30 |" in report
    assert "| rolling_apy_7d | 0.002 | 0.001 | 2 |" in report and "| eth_open | n/a | n/a | 1 |" in report
    assert "## Worst differing cells (2 of 3)" in report
    assert "| p1 | 2026-05-03 | eth_open | 1.5 | NULL | n/a | n/a |" in report
    assert "| p2 | 2026-05-04 | rolling_apy_7d | 2.002 | 2.0 | 0.002 | 0.001 |" in report


def test_two_empty_sides_pass_and_say_nothing_was_compared():
    empty = _comparison(rows_compared=0, per_column={}, worst=[])
    assert empty.passed and empty.cells_compared == 0
    assert "**Both tables are empty over the range: nothing was compared.**" in render_markdown(empty)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"columns": []}, "columns is empty"),
        ({"columns": ["actual_apy", "date"]}, "not the key"),
        ({"spark_table": "stg; DROP TABLE x"}, "not a plain lower-case SQL identifier"),
        ({"rel_tol": -1.0}, "rel_tol must be a finite number >= 0"),
        ({"worst_rows": -1}, "worst_rows must be >= 0"),
        ({"start": "2026-13-01"}, "start is not an ISO date"),
        ({"start": "2026-06-02", "end": "2026-06-01"}, "start 2026-06-02 is after end 2026-06-01"),
    ],
)
def test_requests_are_validated(overrides, match):
    arguments = {"spark_table": "stg_1", "legacy_table": "legacy", "columns": ["actual_apy"], **overrides}
    with pytest.raises(ValueError, match=match):
        Request(**arguments)


def test_the_date_range_is_parsed_and_named_in_the_report():
    request = Request("stg_1", "legacy", ["actual_apy"], start="2026-05-02")
    assert request.bounds == {"start": D(2026, 5, 2)}
    report = render_markdown(Comparison(request, 0, 0, 0, {}))
    assert "dates 2026-05-02 to unbounded" in report


def test_a_difference_is_judged_on_the_scale_of_its_operands():
    # The 1e9 spike case: stddevs ~1.8e8 whose float64 spacing is 3e-8; their delta differs by 6e-8 between the
    # engines, and both are right to that precision. The report shows the scale used.
    worst = [("p1", D(2026, 5, 3), "stddev_apy_7d_delta", 1.2e-3, 1.26e-3, 6e-8, 5e-5, 1.8e8)]
    per_column = {"stddev_apy_7d_delta": (6e-8, 5e-5, 1, 1.8e8)}
    request = Request("stg_1", "legacy", ["stddev_apy_7d_delta"])
    report = render_markdown(Comparison(request, 1, 0, 0, per_column, worst))
    assert "| stddev_apy_7d_delta | 6e-08 | 5e-05 | 1 | 1.8e+08 |" in report
    assert "| 6e-08 | 5e-05 | 1.8e+08 |" in report
    assert "`stddev_apy_7d_delta` of `stddev_apy_7d`" in report
