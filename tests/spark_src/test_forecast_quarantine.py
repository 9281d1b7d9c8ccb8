"""The plausibility quarantine of the forecaster's inputs, on hand-made rows with known flags."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from spark_src.common.columns import METRIC_COLUMNS
from spark_src.forecast import quarantine as Q

DAY0 = dt.date(2026, 7, 1)
SCHEMA = "pool_id string, date date, " + ", ".join(f"{c} double" for c in METRIC_COLUMNS)


def _day(k: int) -> dt.date:
    return DAY0 + dt.timedelta(days=k - 1)


def _rows(pool: str, apys: list[float], tvls: list[float]) -> list[tuple]:
    # Every stored statistic is 1.0, so the test can see which ones the quarantine NULLs.
    rest = [1.0] * (len(METRIC_COLUMNS) - 2)
    return [(pool, _day(k), apy, tvl, *rest) for k, (apy, tvl) in enumerate(zip(apys, tvls, strict=True), start=1)]


@pytest.fixture
def metrics(spark):
    a_apy = [5.0, 5.2, 4.8, 5.1, 4.9, 5.0, 1e9, 5.1, 80.0, 5.0]
    a_tvl = [1e6, 1e6, 1e6, 1e6, 1e6, 5e8, 1e6, 2e11, 1e6, 1e6]
    # B: a launch (a jump with too little history to judge), then a value above the absolute bound.
    b_apy = [5.0, 5.0, 50.0, 20_000.0]
    rows = _rows("A", a_apy, a_tvl) + _rows("B", b_apy, [1e6] * 4)
    return spark.createDataFrame(rows, SCHEMA)


def test_flags_bounds_jumps_and_nothing_else(metrics):
    flagged = Q.flag_observations(metrics, Q.QuarantineRule())
    got = sorted((r.pool_id, r.date, r.column_name, r.value, r.reason) for r in Q.quarantine_rows(flagged).collect())
    assert got == [
        ("A", _day(6), "actual_tvl", 5e8, "tvl_jump"),
        ("A", _day(7), "actual_apy", 1e9, "apy_above_bound"),
        ("A", _day(8), "actual_tvl", 2e11, "tvl_above_bound"),
        ("A", _day(9), "actual_apy", 80.0, "apy_jump"),
        ("B", _day(4), "actual_apy", 20_000.0, "apy_above_bound"),
    ]


def test_the_rule_is_parameterised(metrics):
    # With a jump ratio of 100, 80 % after ~5 % is no longer implausible; the bounds still hold.
    flagged = Q.flag_observations(metrics, Q.QuarantineRule(apy_jump_ratio=100.0))
    reasons = {(r.pool_id, r.date): r.reason for r in Q.quarantine_rows(flagged).collect()}
    assert (("A", _day(9)) not in reasons) and reasons[("A", _day(7))] == "apy_above_bound"


def test_clean_rows_drop_flagged_apy_null_flagged_tvl_and_poisoned_statistics(metrics):
    clean = Q.clean_metrics(Q.flag_observations(metrics, Q.QuarantineRule()))
    rows = {(r.pool_id, r.date): r for r in clean.collect()}
    assert sorted(rows) == sorted(
        [("A", _day(k)) for k in (1, 2, 3, 4, 5, 6, 8, 10)] + [("B", _day(k)) for k in (1, 2, 3)]
    )
    assert rows["A", _day(6)].actual_tvl is None and rows["A", _day(6)].actual_apy == 5.0
    assert rows["A", _day(5)].actual_tvl == 1e6
    # Day 6 precedes the spike: untouched. Day 8: every window holds day 7. Day 10: the 1-day delta's window
    # [9, 10] holds day 9, and the 7- and 30-day windows hold both.
    assert rows["A", _day(6)].rolling_apy_7d == 1.0 and rows["A", _day(6)].apy_delta_today_yesterday == 1.0
    for column in ("apy_delta_today_yesterday", "rolling_apy_7d", "stddev_apy_30d_delta", "rolling_apy_30d"):
        assert rows["A", _day(8)][column] is None, column
        assert rows["A", _day(10)][column] is None, column
    assert rows["A", _day(8)].eth_open == 1.0  # exogenous context is not the pool's
    assert rows["B", _day(3)].actual_apy == 50.0


def test_median_of_odd_even_and_empty(spark):
    frame = spark.createDataFrame([([3.0, 1.0, 2.0],), ([4.0, 1.0, 3.0, 2.0],), ([],)], "v array<double>")
    assert [r.m for r in frame.select(Q.median_of(F.col("v")).alias("m")).collect()] == [2.0, 2.5, None]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="bounds"):
        Q.QuarantineRule(apy_min=5.0, apy_max=1.0)
    with pytest.raises(ValueError, match="min_reference"):
        Q.QuarantineRule(reference_days=3, min_reference=5)
