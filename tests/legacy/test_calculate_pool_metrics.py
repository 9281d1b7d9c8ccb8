"""Tests of the legacy pandas pool-metrics job: pure functions on hand-made frames, then ``run()`` on PostgreSQL.

Every expected value is worked out by hand in the comments next to it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from legacy.calculate_pool_metrics import (
    attach_exogenous,
    check_table_name,
    compute_pool_metrics,
    daily_closes,
    main,
    parse_args,
    parse_strict_float,
    run,
    select_daily_observations,
    write_metrics,
)
from spark_src.common.config import DbConfig

NAN = float("nan")
NO_ISSUES = {
    "apy_missing": 0,
    "apy_not_numeric": 0,
    "apy_not_finite": 0,
    "tvl_missing": 0,
    "tvl_not_numeric": 0,
    "tvl_not_finite": 0,
    "tvl_negative": 0,
}
POOL_METRICS = [
    "actual_apy",
    "actual_tvl",
    "rolling_apy_7d",
    "rolling_apy_30d",
    "apy_delta_today_yesterday",
    "stddev_apy_7d",
    "stddev_apy_30d",
    "stddev_apy_7d_delta",
    "stddev_apy_30d_delta",
]


def history(*rows: tuple[int, str, str, str | None, str | None]) -> pd.DataFrame:
    """(id, pool_id, timestamp, apy text, tvl text) rows, as fetch_pool_history returns them."""
    return pd.DataFrame(rows, columns=["id", "pool_id", "timestamp", "apy_raw", "tvl_raw"])


def daily(pool_id: str, *rows: tuple[str, float, float]) -> pd.DataFrame:
    """(date, apy, tvl) rows of one pool, as select_daily_observations returns them."""
    frame = pd.DataFrame(rows, columns=["date", "apy", "tvl"]).astype({"apy": "float64", "tvl": "float64"})
    frame.insert(0, "pool_id", pool_id)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def metrics_frame(pool_id: str, rows: list[tuple]) -> pd.DataFrame:
    """Expected compute_pool_metrics output: (date, *POOL_METRICS) rows, None for NULL."""
    frame = pd.DataFrame(rows, columns=["date", *POOL_METRICS])
    frame.insert(0, "pool_id", pool_id)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.astype(dict.fromkeys(POOL_METRICS, "float64"))


def assert_frames_close(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        actual.reset_index(drop=True), expected.reset_index(drop=True), check_exact=False, rtol=1e-12, atol=1e-12
    )


# -- parsing --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1.5", 1.5), (" 2e3 ", 2000.0), ("-.5", -0.5), ("1.", 1.0), ("+3", 3.0), ("\t7E-1\n", 0.7), ("1e-400", 0.0)],
)
def test_parse_strict_float_reads_plain_decimals(raw: str, expected: float) -> None:
    assert parse_strict_float(raw) == expected


@pytest.mark.parametrize("raw", ["NaN", "nan", "-NaN", "Infinity", "-Infinity", "inf", "-INF", "1e400"])
def test_parse_strict_float_reads_non_finite_spellings(raw: str) -> None:
    assert not math.isfinite(parse_strict_float(raw))


@pytest.mark.parametrize(
    "raw",
    [
        "n/a",
        "true",
        "",
        "   ",
        "1_0",  # Python's float() accepts it, Java's Double.parseDouble does not
        "0x1p3",  # Java only
        "1.5d",  # Java only
        "\u0661",  # ARABIC-INDIC DIGIT ONE: Python only
        "1e",
        "e5",
        "1.2.3",
        "{}",
    ],
)
def test_parse_strict_float_refuses_what_is_not_a_number_for_both_python_and_java(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_strict_float(raw)


# -- daily observations ---------------------------------------------------------------------------------------


def test_latest_observation_of_the_day_wins_then_highest_id_on_a_timestamp_tie() -> None:
    daily_rows, counts = select_daily_observations(
        history(
            # 2026-05-01: 20:00 is the latest of the three.
            (1, "p", "2026-05-01T08:00:00+00:00", "1.0", "100"),
            (2, "p", "2026-05-01T20:00:00+00:00", "2.0", "200"),
            (3, "p", "2026-05-01T12:00:00+00:00", "3.0", "300"),
            # 2026-05-02: same timestamp twice -> the higher id (5), whatever the input order.
            (5, "p", "2026-05-02T09:00:00+00:00", "5.0", "500"),
            (4, "p", "2026-05-02T09:00:00+00:00", "4.0", "400"),
        )
    )
    assert_frames_close(daily_rows, daily("p", ("2026-05-01", 2.0, 200.0), ("2026-05-02", 5.0, 500.0)))
    assert counts == NO_ISSUES


def test_day_whose_latest_observation_has_a_bad_apy_is_rejected_not_replaced_by_an_earlier_one() -> None:
    daily_rows, counts = select_daily_observations(
        history(
            (1, "p", "2026-05-01T08:00:00+00:00", "1.0", "100"),
            (2, "p", "2026-05-01T09:00:00+00:00", "n/a", "100"),  # latest of the day: the day is rejected
            (3, "p", "2026-05-02T09:00:00+00:00", "3.0", "300"),
        )
    )
    assert_frames_close(daily_rows, daily("p", ("2026-05-02", 3.0, 300.0)))
    assert counts == {**NO_ISSUES, "apy_not_numeric": 1}


def test_each_apy_rejection_reason_is_counted_and_the_day_dropped() -> None:
    rows = [
        (None, "apy_missing"),  # key absent or JSON null: ->> gives NULL
        ("n/a", "apy_not_numeric"),
        ("true", "apy_not_numeric"),  # JSON true: ->> gives 'true'
        ("", "apy_not_numeric"),
        ("1_0", "apy_not_numeric"),
        ("NaN", "apy_not_finite"),
        ("-Infinity", "apy_not_finite"),
        ("inf", "apy_not_finite"),
    ]
    raw = [(i, "p", f"2026-05-{i:02d}T12:00:00+00:00", apy, "1") for i, (apy, _) in enumerate(rows, start=1)]
    raw.append((99, "p", "2026-05-20T12:00:00+00:00", " 7.5 ", "1"))  # the only valid apy
    daily_rows, counts = select_daily_observations(history(*raw))
    assert_frames_close(daily_rows, daily("p", ("2026-05-20", 7.5, 1.0)))
    assert counts == {**NO_ISSUES, "apy_missing": 1, "apy_not_numeric": 4, "apy_not_finite": 3}


def test_bad_tvl_becomes_null_and_keeps_the_row() -> None:
    daily_rows, counts = select_daily_observations(
        history(
            (1, "p", "2026-05-01T12:00:00+00:00", "1", None),
            (2, "p", "2026-05-02T12:00:00+00:00", "2", "lots"),
            (3, "p", "2026-05-03T12:00:00+00:00", "3", "Infinity"),
            (4, "p", "2026-05-04T12:00:00+00:00", "4", "-5"),
            (5, "p", "2026-05-05T12:00:00+00:00", "5", "0"),  # zero is a valid tvl
            # Rejected for its apy: its negative tvl is not counted (only surviving rows are).
            (6, "p", "2026-05-06T12:00:00+00:00", None, "-5"),
        )
    )
    expected = daily(
        "p",
        ("2026-05-01", 1.0, NAN),
        ("2026-05-02", 2.0, NAN),
        ("2026-05-03", 3.0, NAN),
        ("2026-05-04", 4.0, NAN),
        ("2026-05-05", 5.0, 0.0),
    )
    assert_frames_close(daily_rows, expected)
    assert counts == {
        **NO_ISSUES,
        "apy_missing": 1,
        "tvl_missing": 1,
        "tvl_not_numeric": 1,
        "tvl_not_finite": 1,
        "tvl_negative": 1,
    }


def test_counts_only_days_from_count_from() -> None:
    raw = history(
        (1, "p", "2026-04-30T12:00:00+00:00", "NaN", "1"),  # look-back day: used, not reported
        (2, "p", "2026-05-01T12:00:00+00:00", "NaN", "1"),
        (3, "p", "2026-05-02T12:00:00+00:00", "2", None),
    )
    daily_rows, counts = select_daily_observations(raw, count_from=dt.date(2026, 5, 1))
    assert_frames_close(daily_rows, daily("p", ("2026-05-02", 2.0, NAN)))
    assert counts == {**NO_ISSUES, "apy_not_finite": 1, "tvl_missing": 1}


def test_day_is_the_utc_date_of_timestamps_with_any_offset() -> None:
    daily_rows, _ = select_daily_observations(
        history(
            # 2026-05-02 00:30 at +02:00 is 2026-05-01 22:30 UTC -> day 2026-05-01.
            (1, "p", "2026-05-02T00:30:00+02:00", "1.0", "10"),
            # 2026-05-01 23:30 at -02:00 is 2026-05-02 01:30 UTC -> day 2026-05-02, and it is later than
            # 2026-05-02 01:00 UTC (id 3): it wins despite the lower id and the earlier-looking local time.
            (2, "p", "2026-05-01T23:30:00-02:00", "2.0", "20"),
            (3, "p", "2026-05-02T01:00:00+00:00", "3.0", "30"),
        )
    )
    assert_frames_close(daily_rows, daily("p", ("2026-05-01", 1.0, 10.0), ("2026-05-02", 2.0, 20.0)))


# -- rolling windows and deltas -------------------------------------------------------------------------------


def test_seven_day_window_includes_six_days_back_and_excludes_seven() -> None:
    metrics = compute_pool_metrics(
        daily("p", ("2026-05-01", 10.0, 1.0), ("2026-05-07", 20.0, 2.0), ("2026-05-08", 30.0, NAN))
    )
    sqrt50 = math.sqrt(50)  # sample stddev of {10, 20} or {20, 30}: sqrt((5² + 5²) / 1)
    expected = metrics_frame(
        "p",
        [
            # 05-01: a single value -> mean 10, stddevs NULL; no 04-30 row -> deltas NULL.
            ("2026-05-01", 10.0, 1.0, 10.0, 10.0, None, None, None, None, None),
            # 05-07: 05-01 is 6 days back, inside [05-01, 05-07]: {10, 20} -> mean 15, stddev sqrt(50);
            # no 05-06 row -> deltas NULL.
            ("2026-05-07", 20.0, 2.0, 15.0, 15.0, None, sqrt50, sqrt50, None, None),
            # 05-08: 05-01 is 7 days back, outside [05-02, 05-08]: 7d {20, 30} -> 25, sqrt(50);
            # 30d {10, 20, 30} -> 20, sqrt((10² + 0 + 10²) / 2) = 10.
            # delta 30 - 20 = 10; 7d stddev delta sqrt(50) - sqrt(50) = 0; 30d 10 - sqrt(50).
            ("2026-05-08", 30.0, None, 25.0, 20.0, 10.0, sqrt50, 10.0, 0.0, 10.0 - sqrt50),
        ],
    )
    assert_frames_close(metrics, expected)


def test_thirty_day_window_includes_29_days_back_and_excludes_30() -> None:
    metrics = compute_pool_metrics(
        daily("p", ("2026-06-01", 4.0, 1.0), ("2026-06-30", 8.0, 1.0), ("2026-07-01", 6.0, 1.0))
    )
    expected = metrics_frame(
        "p",
        [
            ("2026-06-01", 4.0, 1.0, 4.0, 4.0, None, None, None, None, None),
            # 06-30: 06-01 is 29 days back, inside [06-01, 06-30]: 30d {4, 8} -> 6, sqrt((2² + 2²) / 1) = sqrt(8).
            # 7d [06-24, 06-30] = {8} -> 8, stddev NULL. No 06-29 row -> deltas NULL.
            ("2026-06-30", 8.0, 1.0, 8.0, 6.0, None, None, math.sqrt(8), None, None),
            # 07-01: 06-01 is 30 days back, outside [06-02, 07-01]: 30d {8, 6} -> 7, sqrt((1² + 1²) / 1) = sqrt(2);
            # 7d the same. delta 6 - 8 = -2. 7d stddev delta: yesterday's 7d stddev is NULL -> NULL although
            # the pool has a row on 06-30. 30d stddev delta sqrt(2) - sqrt(8) = sqrt(2) - 2 sqrt(2) = -sqrt(2).
            ("2026-07-01", 6.0, 1.0, 7.0, 7.0, -2.0, math.sqrt(2), math.sqrt(2), None, -math.sqrt(2)),
        ],
    )
    assert_frames_close(metrics, expected)


def test_consecutive_days_deltas_and_single_value_stddev() -> None:
    metrics = compute_pool_metrics(
        daily("p", ("2026-05-01", 1.0, 5.0), ("2026-05-02", 4.0, 5.0), ("2026-05-03", 10.0, 5.0))
    )
    sqrt45 = math.sqrt(4.5)  # {1, 4}: mean 2.5, sqrt((1.5² + 1.5²) / 1)
    sqrt21 = math.sqrt(21)  # {1, 4, 10}: mean 5, sqrt((4² + 1² + 5²) / 2) = sqrt(42 / 2)
    expected = metrics_frame(
        "p",
        [
            ("2026-05-01", 1.0, 5.0, 1.0, 1.0, None, None, None, None, None),
            # stddev deltas NULL: yesterday's stddev had a single value.
            ("2026-05-02", 4.0, 5.0, 2.5, 2.5, 3.0, sqrt45, sqrt45, None, None),
            ("2026-05-03", 10.0, 5.0, 5.0, 5.0, 6.0, sqrt21, sqrt21, sqrt21 - sqrt45, sqrt21 - sqrt45),
        ],
    )
    assert_frames_close(metrics, expected)


def test_a_value_that_overflows_is_null() -> None:
    """1e300 % on May 1: the sums of squares of every window holding it overflow (1e600), its stddevs are NULL, not
    Infinity, and so are the deltas of those stddevs, not NaN; means, apy deltas and the other windows stay."""
    metrics = compute_pool_metrics(
        daily(
            "p",
            ("2026-05-01", 1e300, 1.0),
            ("2026-05-02", 1.0, 1.0),
            ("2026-05-03", 3.0, 1.0),
            ("2026-05-08", 5.0, 1.0),
            ("2026-05-09", 6.0, 1.0),
        )
    )
    sqrt73 = math.sqrt(7 / 3)  # May 9's 7 days {3, 5, 6}: mean 14/3, sqrt((25/9 + 1/9 + 16/9) / 2)
    expected = metrics_frame(
        "p",
        [
            ("2026-05-01", 1e300, 1.0, 1e300, 1e300, None, None, None, None, None),
            # (1e300 + 1) / 2 is 5e299 in float64; 1 - 1e300 is finite.
            ("2026-05-02", 1.0, 1.0, 5e299, 5e299, 1.0 - 1e300, None, None, None, None),
            ("2026-05-03", 3.0, 1.0, 1e300 / 3, 1e300 / 3, 2.0, None, None, None, None),
            # May 8's 7 days {1, 3, 5} have left May 1 behind: mean 3, stddev 2. The 30 days still hold it.
            ("2026-05-08", 5.0, 1.0, 3.0, 1e300 / 4, None, 2.0, None, None, None),
            ("2026-05-09", 6.0, 1.0, 14 / 3, 1e300 / 5, 1.0, sqrt73, None, sqrt73 - 2.0, None),
        ],
    )
    assert_frames_close(metrics, expected)


def test_identical_values_give_exactly_zero_stddev() -> None:
    # 5.1 is not exact in binary; a naive two-pass stddev of {5.1, 5.1, 5.1} leaves ~1e-16 instead of 0.
    metrics = compute_pool_metrics(
        daily("p", ("2026-05-01", 5.1, 1.0), ("2026-05-02", 5.1, 1.0), ("2026-05-03", 5.1, 1.0))
    )
    assert metrics["stddev_apy_7d"].tolist()[1:] == [0.0, 0.0]
    assert metrics["stddev_apy_30d"].tolist()[1:] == [0.0, 0.0]
    assert metrics["stddev_apy_7d_delta"].tolist()[2] == 0.0


def test_windows_are_pandas_time_rolling_with_the_default_right_closed_window() -> None:
    # Cross-check (besides the hand-computed cases above): [d-6, d] on a series with gaps is what
    # rolling("7D") computes with closed="right" on a DatetimeIndex of midnights.
    rng = np.random.default_rng(7)
    days = pd.date_range("2026-01-01", periods=120, freq="D")[rng.random(120) < 0.6]
    apy = pd.Series(rng.normal(5.0, 2.0, len(days)), index=days)
    metrics = compute_pool_metrics(daily("p", *[(d, a, 1.0) for d, a in apy.items()]))
    for window, days_back in (("7D", 7), ("30D", 30)):
        rolling = apy.rolling(window)
        np.testing.assert_allclose(metrics[f"rolling_apy_{days_back}d"], rolling.mean(), rtol=1e-9)
        np.testing.assert_allclose(metrics[f"stddev_apy_{days_back}d"], rolling.std(), rtol=1e-9)


def test_compute_pool_metrics_refuses_two_rows_on_one_day() -> None:
    with pytest.raises(ValueError, match="one row per day"):
        compute_pool_metrics(daily("p", ("2026-05-01", 1.0, 1.0), ("2026-05-01", 2.0, 1.0)))


# -- exogenous as-of lookups ----------------------------------------------------------------------------------


def cmc(*rows: tuple[int, str, str | None]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "data_timestamp", "close_raw"])


def test_daily_closes_keep_the_latest_usable_close_of_each_utc_date() -> None:
    closes = daily_closes(
        cmc(
            (1, "2026-05-01T10:00:00+00:00", "100"),
            (2, "2026-05-01T22:00:00+00:00", "110"),  # latest of 05-01
            (3, "2026-05-02T01:00:00+05:00", "999"),  # = 05-01 20:00 UTC: on 05-01, before 22:00
            (4, "2026-05-03T09:00:00+00:00", "130"),
            (5, "2026-05-03T18:00:00+00:00", "n/a"),  # unusable: 05-03 keeps 130
            (6, "2026-05-04T09:00:00+00:00", None),  # 05-04 has no usable close at all
        )
    )
    expected = pd.DataFrame({"date": pd.to_datetime(["2026-05-01", "2026-05-03"]), "close": [110.0, 130.0]})
    assert_frames_close(closes, expected)


def test_exogenous_are_as_of_lookups_across_missing_dates() -> None:
    metric_days = ["2026-05-03", "2026-04-30", "2026-05-01", "2026-05-02", "2026-05-05", "2026-05-04"]
    metrics = pd.DataFrame({"pool_id": "p", "date": pd.to_datetime(metric_days)})
    eth = pd.DataFrame({"date": pd.to_datetime(["2026-05-01", "2026-05-03"]), "close": [110.0, 130.0]})
    btc = pd.DataFrame({"date": pd.to_datetime(["2026-05-02"]), "close": [2000.0]})
    gas = pd.DataFrame(
        {"date": pd.to_datetime(["2026-05-02", "2026-05-03", "2026-05-04"]), "gas_gwei": [5.0, NAN, 7.0]}
    )
    result = attach_exogenous(metrics, eth, btc, gas)
    expected = metrics.assign(
        # eth: strictly before d. 04-30, 05-01: nothing before -> NULL; 05-02: 05-01; 05-03: 05-02 is missing,
        # still 05-01 (a lag over rows would have given 05-01's value one day late elsewhere); 05-04, 05-05: 05-03.
        eth_open=[110.0, NAN, NAN, 110.0, 130.0, 130.0],
        # btc: only 05-02 -> from 05-03 on.
        btc_open=[2000.0, NAN, NAN, NAN, 2000.0, 2000.0],
        # gas: on or before d; 05-03 is NULL -> 05-02's 5.0; before 05-02 -> NULL.
        gas_price_gwei=[5.0, NAN, NAN, 5.0, 7.0, 7.0],
    )
    assert_frames_close(result, expected)


# -- table names and CLI arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Pool", "pool-metrics", 'x"; DROP TABLE pools; --', "public.pools", "", "a" * 64, "pools\n"]
)
def test_table_names_are_checked_before_any_sql(name: str) -> None:
    with pytest.raises(ValueError, match="not a plain lower-case table name"):
        check_table_name(name)
    with pytest.raises(ValueError, match="not a plain lower-case table name"):
        write_metrics(None, pd.DataFrame(columns=["pool_id", "date"]), name)  # type: ignore[arg-type]


def test_parse_args() -> None:
    args = parse_args(["--start", "2026-05-01", "--end", "2026-06-01", "--target-table", "pool_daily_metrics"])
    assert (args.start, args.end, args.target_table) == (dt.date(2026, 5, 1), dt.date(2026, 6, 1), "pool_daily_metrics")
    assert parse_args([]).target_table == "pool_daily_metrics_legacy"
    with pytest.raises(SystemExit):
        parse_args(["--start", "2026-06-02", "--end", "2026-06-01"])
    with pytest.raises(SystemExit):
        parse_args(["--target-table", "Robert'); DROP TABLE pools;--"])


# -- the whole job on PostgreSQL ------------------------------------------------------------------------------

START, END = dt.date(2026, 5, 1), dt.date(2026, 5, 4)
SQRT2 = math.sqrt(2)
TABLE_COLUMNS = ["pool_id", "date", *POOL_METRICS, "eth_open", "btc_open", "gas_price_gwei"]
TABLE_COLUMNS += ["forecasted_apy", "forecasted_tvl"]
EXPECTED_ROWS = [
    {
        "pool_id": "p1",
        "date": dt.date(2026, 5, 1),
        # The 20:00 observation wins: apy 3, tvl -1 -> NULL.
        "actual_apy": 3.0,
        "actual_tvl": None,
        # 7d [04-25, 05-01] = {1 (04-30), 3} -> mean 2; 30d [04-02, 05-01]: 04-01 is out and 04-02 was
        # rejected -> the same {1, 3}.
        "rolling_apy_7d": 2.0,
        "rolling_apy_30d": 2.0,
        "apy_delta_today_yesterday": 2.0,  # 3 - 1 (04-30)
        "stddev_apy_7d": SQRT2,  # sqrt((1² + 1²) / 1)
        "stddev_apy_30d": SQRT2,
        "stddev_apy_7d_delta": None,  # 04-30's 7d window [04-24, 04-30] holds {1} only
        # 04-30's 30d window [04-01, 04-30] = {4, 1}: sqrt((1.5² + 1.5²) / 1) = sqrt(4.5). Needs the 04-01 row:
        # history is read from start - 30 days.
        "stddev_apy_30d_delta": SQRT2 - math.sqrt(4.5),
        "eth_open": 1200.0,  # latest CMC date before 05-01 is 04-30; its latest row closes at 1200
        "btc_open": None,  # no BTC close before 05-01
        "gas_price_gwei": 10.5,  # 04-30
        "forecasted_apy": None,
        "forecasted_tvl": None,
    },
    # 05-02 rejected ("n/a"), nothing on 05-03.
    {
        "pool_id": "p1",
        "date": dt.date(2026, 5, 4),
        # The 2026-05-03T23:30-02:00 observation (= 05-04 01:30 UTC).
        "actual_apy": 5.0,
        "actual_tvl": 500.0,
        # 7d [04-28, 05-04] = {1, 3, 5} -> 3, sqrt((2² + 0 + 2²) / 2) = 2; 30d [04-05, 05-04] the same.
        "rolling_apy_7d": 3.0,
        "rolling_apy_30d": 3.0,
        "apy_delta_today_yesterday": None,  # no 05-03 row
        "stddev_apy_7d": 2.0,
        "stddev_apy_30d": 2.0,
        "stddev_apy_7d_delta": None,
        "stddev_apy_30d_delta": None,
        "eth_open": 1300.0,  # 05-03 has no CMC row -> 05-02's close
        "btc_open": 50000.0,  # 05-03
        "gas_price_gwei": 12.0,  # 05-04 itself
        # Set before the run (with a stale actual_apy of 999): the forecasts survive.
        "forecasted_apy": 7.7,
        "forecasted_tvl": 777.0,
    },
]
EXPECTED_SUMMARY = {
    "pools": 1,
    "rows_written": 2,
    # 04-02's "NaN" is before --start: not reported. Unbelievable timestamps are counted whatever the range.
    "rejected": {
        "apy_missing": 0,
        "apy_not_numeric": 1,
        "apy_not_finite": 0,
        "timestamp_in_future": 3,  # 2099, year 3000, 'infinity'
        "timestamp_out_of_range": 1,  # 1970
    },
    "tvl_nulled": {"tvl_missing": 0, "tvl_not_numeric": 0, "tvl_not_finite": 0, "tvl_negative": 1},
    "active_pools_without_rows": 0,
}


def seed(db: Engine, target_table: str) -> None:
    history_rows = [
        ("p1", "2026-03-31T12:00:00+00:00", {"apy": 1000.0, "tvlUsd": 1}),  # before start - 30: not read
        ("p1", "2026-04-01T12:00:00+00:00", {"apy": 4.0, "tvlUsd": 400}),
        ("p1", "2026-04-02T12:00:00+00:00", {"apy": "NaN", "tvlUsd": 1}),
        ("p1", "2026-04-30T12:00:00+00:00", {"apy": 1.0, "tvlUsd": 100}),
        ("p1", "2026-05-01T10:00:00+00:00", {"apy": 2.0, "tvlUsd": 200}),
        ("p1", "2026-05-01T20:00:00+00:00", {"apy": 3.0, "tvlUsd": -1}),
        ("p1", "2026-05-02T09:00:00+00:00", {"apy": "n/a", "tvlUsd": 5}),
        ("p1", "2026-05-03T23:30:00-02:00", {"apy": 5, "tvlUsd": "500"}),
        ("p1", "2026-05-05T12:00:00+00:00", {"apy": 50.0, "tvlUsd": 1}),  # after end
        ("p2", "2026-05-01T12:00:00+00:00", {"apy": 9.0, "tvlUsd": 1}),  # inactive pool
        # Rejected by their timestamp (year 3000 is beyond pandas' nanosecond range: no crash).
        ("p1", "2099-06-01T00:00:00+00:00", {"apy": 6.0, "tvlUsd": 1}),
        ("p1", "3000-01-01T00:00:00+00:00", {"apy": 6.0, "tvlUsd": 1}),
        ("p1", "infinity", {"apy": 6.0, "tvlUsd": 1}),
        ("p1", "1970-01-01T00:00:00+00:00", {"apy": 6.0, "tvlUsd": 1}),
        ("p2", "2099-06-01T00:00:00+00:00", {"apy": 9.0, "tvlUsd": 1}),  # inactive pool: not read
    ]
    cmc_rows = [
        ("ETH", "2026-04-29T12:00:00+00:00", 1000.0),
        ("ETH", "2026-04-30T08:00:00+00:00", 1100.0),
        ("ETH", "2026-04-30T20:00:00+00:00", 1200.0),
        ("ETH", "2026-05-02T12:00:00+00:00", 1300.0),
        ("ETH", "2026-05-04T12:00:00+00:00", 1400.0),
        ("BTC", "2026-05-03T12:00:00+00:00", 50000.0),
    ]
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO pools (pool_id, symbol, chain, project, is_active) VALUES "
                "('p1', 'USDC', 'Ethereum', 'aave-v3', true), ('p2', 'DAI', 'Ethereum', 'aave-v3', false)"
            )
        )
        conn.execute(
            text(
                'INSERT INTO raw_defillama_pool_history (pool_id, "timestamp", raw_json_data) '
                "VALUES (:pool_id, :ts, CAST(:data AS jsonb))"
            ),
            [{"pool_id": p, "ts": ts, "data": json.dumps(data)} for p, ts, data in history_rows],
        )
        conn.execute(
            text(
                "INSERT INTO raw_coinmarketcap_ohlcv (symbol, data_timestamp, raw_json_data) "
                "VALUES (:symbol, :ts, CAST(:data AS jsonb))"
            ),
            [{"symbol": s, "ts": ts, "data": json.dumps({"USD": {"close": c}})} for s, ts, c in cmc_rows],
        )
        conn.execute(text("INSERT INTO gas_fees_daily VALUES ('2026-04-30', 10.5), ('2026-05-04', 12)"))
        # A forecast (and a stale metric) already in the target: the run must keep the forecast.
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {target_table} (LIKE pool_daily_metrics INCLUDING ALL)"))
        conn.execute(
            text(
                f"INSERT INTO {target_table} (pool_id, date, actual_apy, forecasted_apy, forecasted_tvl) "
                "VALUES ('p1', '2026-05-04', 999, 7.7, 777)"
            )
        )


def read_table(db: Engine, table: str) -> list[dict]:
    columns = ", ".join(TABLE_COLUMNS)
    with db.connect() as conn:
        result = conn.execute(text(f"SELECT {columns} FROM {table} ORDER BY pool_id, date"))
        return [dict(row._mapping) for row in result]


def assert_rows_close(actual: list[dict], expected: list[dict]) -> None:
    assert len(actual) == len(expected), actual
    for got, want in zip(actual, expected, strict=True):
        assert got.keys() == want.keys()
        for column, value in want.items():
            if isinstance(value, float):
                assert got[column] is not None, (column, got)
                assert math.isclose(got[column], value, rel_tol=1e-12, abs_tol=1e-12), (column, got)
            else:
                assert got[column] == value, (column, got)


@pytest.mark.parametrize("target_table", ["pool_daily_metrics_legacy", "pool_daily_metrics"])
def test_run_writes_expected_rows_idempotently_and_keeps_forecasts(
    db: Engine, db_config: DbConfig, target_table: str
) -> None:
    seed(db, target_table)

    summary = run(db_config, START, END, target_table)

    assert {k: summary[k] for k in EXPECTED_SUMMARY} == EXPECTED_SUMMARY
    first = read_table(db, target_table)
    assert_rows_close(first, EXPECTED_ROWS)

    # A second run upserts the same values onto the same keys.
    assert run(db_config, START, END, target_table)["rows_written"] == 2
    assert read_table(db, target_table) == first


def test_cli_reads_the_connection_from_the_environment_and_never_logs_the_password(
    db: Engine, db_config: DbConfig, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db, "pool_daily_metrics_legacy")
    caplog.set_level(logging.INFO)

    summary = main(["--start", "2026-05-01", "--end", "2026-05-04"], environ=db_config.env())

    assert {k: summary[k] for k in EXPECTED_SUMMARY} == EXPECTED_SUMMARY
    assert_rows_close(read_table(db, "pool_daily_metrics_legacy"), EXPECTED_ROWS)
    assert '"rows_written": 2' in caplog.text
    assert db_config.password() not in caplog.text


def test_run_on_empty_tables_creates_the_shadow_table_and_writes_nothing(db: Engine, db_config: DbConfig) -> None:
    summary = run(db_config, None, None, "pool_daily_metrics_legacy")

    assert {k: summary[k] for k in EXPECTED_SUMMARY} == {
        "pools": 0,
        "rows_written": 0,
        "rejected": dict.fromkeys(EXPECTED_SUMMARY["rejected"], 0),
        "tvl_nulled": dict.fromkeys(EXPECTED_SUMMARY["tvl_nulled"], 0),
        "active_pools_without_rows": 0,
    }
    assert read_table(db, "pool_daily_metrics_legacy") == []
