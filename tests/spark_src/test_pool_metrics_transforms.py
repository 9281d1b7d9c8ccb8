"""Pool-metrics transforms on small DataFrames with hand-computed expected rows."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.testing import assertDataFrameEqual

from spark_src.pool_metrics import transforms as T

UTC = dt.UTC
D = dt.date


def ts(day: int, hour: int = 12, minute: int = 0, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(2026, 5, day, hour, minute, tzinfo=tz)


HISTORY_SCHEMA = "history_id long, pool_id string, observed_at timestamp, apy_text string, tvl_text string"


def test_latest_observation_of_the_utc_day_wins(spark):
    minus_two = dt.timezone(dt.timedelta(hours=-2))
    history = spark.createDataFrame(
        [
            (1, "p1", ts(1, 10), "1.0", "10"),
            (2, "p1", ts(1, 18), "2.0", "20"),  # later the same day: wins
            (3, "p1", ts(2, 9), "3.0", "30"),
            (4, "p1", ts(2, 9), "4.0", "40"),  # same timestamp: the higher id wins
            # 23:30 at UTC-2 is 01:30 UTC on May 3: it belongs to May 3, not May 2.
            (5, "p1", dt.datetime(2026, 5, 2, 23, 30, tzinfo=minus_two), "5.0", "50"),
            (6, "p2", ts(1, 0, 0), "6.0", "60"),
        ],
        HISTORY_SCHEMA,
    )
    kept = T.latest_observation_per_day(history).select("history_id", "pool_id", "date")
    expected = spark.createDataFrame(
        [(2, "p1", D(2026, 5, 1)), (4, "p1", D(2026, 5, 2)), (5, "p1", D(2026, 5, 3)), (6, "p2", D(2026, 5, 1))],
        "history_id long, pool_id string, date date",
    )
    assertDataFrameEqual(kept, expected)


@pytest.mark.parametrize(
    ("apy_text", "tvl_text", "apy", "tvl", "apy_problem", "tvl_problem"),
    [
        (" 2.5 ", "100", 2.5, 100.0, None, None),
        ("1e1", "0", 10.0, 0.0, None, None),
        (None, "100", None, 100.0, "apy_missing", None),
        ("n/a", "100", None, 100.0, "apy_not_numeric", None),
        ("1.5d", "100", None, 100.0, "apy_not_numeric", None),  # Java would read it, Python would not
        ("1_0", "100", None, 100.0, "apy_not_numeric", None),  # Python would read it, Java would not
        ("true", "100", None, 100.0, "apy_not_numeric", None),
        ("NaN", "100", float("nan"), 100.0, "apy_not_finite", None),
        ("-Infinity", "100", float("-inf"), 100.0, "apy_not_finite", None),
        ("3", None, 3.0, None, None, "tvl_missing"),
        ("3", "lots", 3.0, None, None, "tvl_not_numeric"),
        ("3", "inf", 3.0, None, None, "tvl_not_finite"),
        ("3", "-5", 3.0, None, None, "tvl_negative"),
    ],
)
def test_validation_rejects_bad_apy_and_nulls_bad_tvl(spark, apy_text, tvl_text, apy, tvl, apy_problem, tvl_problem):
    daily = spark.createDataFrame(
        [("p1", D(2026, 5, 1), apy_text, tvl_text)], "pool_id string, date date, apy_text string, tvl_text string"
    )
    row = T.with_validated_values(daily).first()
    assert (row.apy_problem, row.tvl_problem) == (apy_problem, tvl_problem)
    assert row.tvl == tvl
    if apy is not None and math.isnan(apy):
        assert math.isnan(row.apy)
    else:
        assert row.apy == apy
    assert T.accepted_rows(T.with_validated_values(daily)).count() == (1 if apy_problem is None else 0)


ACCEPTED_SCHEMA = "pool_id string, date date, apy double, tvl double"


def test_calendar_windows_and_day_over_day_deltas_with_gaps(spark):
    # p1 has May 1, 2, 3, 5, 8 (gaps on 4, 6, 7); p2 one day only.
    accepted = spark.createDataFrame(
        [
            ("p1", D(2026, 5, 1), 1.0, 10.0),
            ("p1", D(2026, 5, 2), 2.0, None),
            ("p1", D(2026, 5, 3), 4.0, 30.0),
            ("p1", D(2026, 5, 5), 8.0, 50.0),
            ("p1", D(2026, 5, 8), 16.0, 80.0),
            ("p2", D(2026, 5, 2), 5.0, 1.0),
        ],
        ACCEPTED_SCHEMA,
    )
    result = (
        accepted.transform(T.with_rolling_apy(7))
        .transform(T.with_rolling_apy(30))
        .transform(T.with_day_over_day_deltas)
        .select(
            "pool_id",
            "date",
            "rolling_apy_7d",
            "stddev_apy_7d",
            "rolling_apy_30d",
            "stddev_apy_30d",
            "apy_delta_today_yesterday",
            "stddev_apy_7d_delta",
        )
    )
    # 7-day window [d-6, d]; sample variance = sum of squared deviations / (n-1):
    # May 2: {1,2}: mean 1.5, var 0.5.  May 3: {1,2,4}: mean 7/3, var (16/9+1/9+25/9)/2 = 7/3.
    # May 5: {1,2,4,8}: mean 3.75, var (7.5625+3.0625+0.0625+18.0625)/3 = 28.75/3.
    # May 8: [May 2, May 8] drops May 1 (7 days back): {2,4,8,16}: mean 7.5, var (30.25+12.25+0.25+72.25)/3 = 115/3.
    # 30-day window on May 8 keeps all five: mean 31/5 = 6.2, var (27.04+17.64+4.84+3.24+96.04)/4 = 148.8/4.
    expected = spark.createDataFrame(
        [
            ("p1", D(2026, 5, 1), 1.0, None, 1.0, None, None, None),
            ("p1", D(2026, 5, 2), 1.5, math.sqrt(0.5), 1.5, math.sqrt(0.5), 1.0, None),
            (
                "p1",
                D(2026, 5, 3),
                7 / 3,
                math.sqrt(7 / 3),
                7 / 3,
                math.sqrt(7 / 3),
                2.0,
                math.sqrt(7 / 3) - math.sqrt(0.5),
            ),
            # May 4 is missing: no deltas on May 5.
            ("p1", D(2026, 5, 5), 3.75, math.sqrt(28.75 / 3), 3.75, math.sqrt(28.75 / 3), None, None),
            ("p1", D(2026, 5, 8), 7.5, math.sqrt(115 / 3), 6.2, math.sqrt(148.8 / 4), None, None),
            ("p2", D(2026, 5, 2), 5.0, None, 5.0, None, None, None),
        ],
        "pool_id string, date date, rolling_apy_7d double, stddev_apy_7d double, rolling_apy_30d double, "
        "stddev_apy_30d double, apy_delta_today_yesterday double, stddev_apy_7d_delta double",
    )
    assertDataFrameEqual(result, expected, rtol=1e-12)


def test_as_of_exogenous_uses_the_latest_earlier_close_not_the_previous_row(spark):
    cmc = spark.createDataFrame(
        [
            (1, "ETH", ts(1, 23, 59), "100"),
            (2, "ETH", ts(2, 23, 59), "110"),
            # no ETH row on May 3
            (3, "ETH", ts(4, 10), "125"),
            (4, "ETH", ts(4, 23, 59), "130"),  # the day's latest row wins
            (5, "ETH", ts(5, 23, 59), "not-a-number"),  # an unusable close is skipped
            (6, "BTC", ts(3, 23, 59), "60000"),
        ],
        "id long, symbol string, data_timestamp timestamp, close_text string",
    )
    gas = spark.createDataFrame([(D(2026, 5, 2), 20.0), (D(2026, 5, 4), 40.0)], "date date, gas_gwei double")
    dates = spark.createDataFrame([(D(2026, 5, d),) for d in range(1, 7)], "date date")
    result = T.as_of_exogenous(dates, T.daily_closes(cmc, "ETH"), T.daily_closes(cmc, "BTC"), gas).join(dates, "date")
    expected = spark.createDataFrame(
        [
            (D(2026, 5, 1), None, None, None),  # nothing before May 1; no gas on or before May 1
            (D(2026, 5, 2), 100.0, None, 20.0),
            (D(2026, 5, 3), 110.0, None, 20.0),
            (D(2026, 5, 4), 110.0, 60000.0, 40.0),  # strictly before May 4 is May 2 (May 3 has no close)
            (D(2026, 5, 5), 130.0, 60000.0, 40.0),
            (D(2026, 5, 6), 130.0, 60000.0, 40.0),  # May 5's close was unusable
        ],
        "date date, eth_open double, btc_open double, gas_price_gwei double",
    )
    assertDataFrameEqual(result, expected)


def test_exogenous_values_older_than_the_limit_are_null_not_carried_forward(spark):
    cmc = spark.createDataFrame(
        [(1, "ETH", ts(1, 12), "100"), (2, "BTC", ts(1, 12), "60000")],
        "id long, symbol string, data_timestamp timestamp, close_text string",
    )
    gas = spark.createDataFrame([(D(2026, 5, 1), 20.0)], "date date, gas_gwei double")
    dates = spark.createDataFrame([(D(2026, 5, d),) for d in (2, 8, 9, 20)], "date date")
    result = T.as_of_exogenous(dates, T.daily_closes(cmc, "ETH"), T.daily_closes(cmc, "BTC"), gas).join(dates, "date")
    expected = spark.createDataFrame(
        [
            (D(2026, 5, 2), 100.0, 60000.0, 20.0),
            (D(2026, 5, 8), 100.0, 60000.0, 20.0),  # 7 days old: still within the limit
            (D(2026, 5, 9), None, None, None),  # 8 days old: stale
            (D(2026, 5, 20), None, None, None),
        ],
        "date date, eth_open double, btc_open double, gas_price_gwei double",
    )
    assertDataFrameEqual(result, expected)


def test_pool_daily_metrics_output_columns_and_date_range(spark):
    accepted = spark.createDataFrame(
        [("p1", D(2026, 5, 1), 1.0, 10.0), ("p1", D(2026, 5, 2), 3.0, 20.0), ("p1", D(2026, 5, 3), 5.0, None)],
        ACCEPTED_SCHEMA,
    )
    exogenous = spark.createDataFrame(
        [(D(2026, 5, 2), 100.0, 50.0, 7.0), (D(2026, 5, 3), 101.0, 51.0, 8.0)],
        "date date, eth_open double, btc_open double, gas_price_gwei double",
    )
    result = T.pool_daily_metrics(accepted, exogenous).transform(T.in_date_range("2026-05-02", "2026-05-03"))
    assert result.columns == T.OUTPUT_COLUMNS
    expected = spark.createDataFrame(
        [
            # May 2: window {1,3}: mean 2, var 2; delta 2.  May 3: {1,3,5}: mean 3, var 4; delta 2, std delta 2-√2.
            ("p1", D(2026, 5, 2), 3.0, 20.0, 2.0, 2.0, 2.0, math.sqrt(2), math.sqrt(2), None, None, 100.0, 50.0, 7.0),
            (
                "p1",
                D(2026, 5, 3),
                5.0,
                None,
                3.0,
                3.0,
                2.0,
                2.0,
                2.0,
                2 - math.sqrt(2),
                2 - math.sqrt(2),
                101.0,
                51.0,
                8.0,
            ),
        ],
        "pool_id string, date date, actual_apy double, actual_tvl double, rolling_apy_7d double, "
        "rolling_apy_30d double, apy_delta_today_yesterday double, stddev_apy_7d double, stddev_apy_30d double, "
        "stddev_apy_7d_delta double, stddev_apy_30d_delta double, eth_open double, btc_open double, "
        "gas_price_gwei double",
    ).select(*T.OUTPUT_COLUMNS)
    assertDataFrameEqual(result, expected, rtol=1e-12)


def test_a_value_that_overflows_is_null(spark):
    """1e300 % on May 1: the sums of squares of every window holding it overflow (1e600), its stddevs are NULL, not
    Infinity, and so are the deltas of those stddevs, not NaN; means, apy deltas and the other windows stay
    (the legacy job's test of the same rows expects the same values)."""
    accepted = spark.createDataFrame(
        [
            ("p1", D(2026, 5, 1), 1e300, 1.0),
            ("p1", D(2026, 5, 2), 1.0, 1.0),
            ("p1", D(2026, 5, 3), 3.0, 1.0),
            ("p1", D(2026, 5, 8), 5.0, 1.0),
            ("p1", D(2026, 5, 9), 6.0, 1.0),
        ],
        ACCEPTED_SCHEMA,
    )
    exogenous = spark.createDataFrame([], "date date, eth_open double, btc_open double, gas_price_gwei double")
    result = T.pool_daily_metrics(accepted, exogenous).select("date", *T.COMPUTED_COLUMNS)
    sqrt73 = math.sqrt(7 / 3)  # May 9's 7 days {3, 5, 6}: mean 14/3, sqrt((25/9 + 1/9 + 16/9) / 2)
    expected = spark.createDataFrame(
        [
            (D(2026, 5, 1), 1e300, 1e300, None, None, None, None, None),
            # (1e300 + 1) / 2 is 5e299 in float64; 1 - 1e300 is finite.
            (D(2026, 5, 2), 5e299, 5e299, 1.0 - 1e300, None, None, None, None),
            (D(2026, 5, 3), 1e300 / 3, 1e300 / 3, 2.0, None, None, None, None),
            # May 8's 7 days {1, 3, 5} have left May 1 behind: mean 3, stddev 2. The 30 days still hold it.
            (D(2026, 5, 8), 3.0, 1e300 / 4, None, 2.0, None, None, None),
            (D(2026, 5, 9), 14 / 3, 1e300 / 5, 1.0, sqrt73, None, sqrt73 - 2.0, None),
        ],
        "date date, rolling_apy_7d double, rolling_apy_30d double, apy_delta_today_yesterday double, "
        "stddev_apy_7d double, stddev_apy_30d double, stddev_apy_7d_delta double, stddev_apy_30d_delta double",
    )
    assertDataFrameEqual(result, expected, rtol=1e-12)


@pytest.mark.parametrize("legacy", ["false", "true"])
def test_a_stddev_of_one_value_is_null_whatever_the_statistical_aggregate_mode(spark, legacy):
    """``stddev_samp`` of one value is NULL in Spark's default mode and NaN in its legacy one: the metrics are NULL
    in both (May 1 and p2's only day), and so are the deltas of those stddevs (May 2)."""
    accepted = spark.createDataFrame(
        [("p1", D(2026, 5, 1), 1.0, 1.0), ("p1", D(2026, 5, 2), 3.0, 1.0), ("p2", D(2026, 5, 1), 4.0, 1.0)],
        ACCEPTED_SCHEMA,
    )
    exogenous = spark.createDataFrame([], "date date, eth_open double, btc_open double, gas_price_gwei double")
    before = spark.conf.get("spark.sql.legacy.statisticalAggregate")
    spark.conf.set("spark.sql.legacy.statisticalAggregate", legacy)
    try:
        rows = (
            T.pool_daily_metrics(accepted, exogenous)
            .select("pool_id", "date", "stddev_apy_7d", "stddev_apy_30d", "stddev_apy_7d_delta", "stddev_apy_30d_delta")
            .collect()
        )
    finally:
        spark.conf.set("spark.sql.legacy.statisticalAggregate", before)
    assert sorted(tuple(r) for r in rows) == [
        ("p1", D(2026, 5, 1), None, None, None, None),
        ("p1", D(2026, 5, 2), math.sqrt(2), math.sqrt(2), None, None),
        ("p2", D(2026, 5, 1), None, None, None, None),
    ]


def test_pool_daily_metrics_sorts_the_pools_days_once(spark):
    """The rolling and day-over-day columns share one window spec, so one sort: ordered by an expression
    (``unix_date(date)``) in each window instead, the plan had seven Window operators, each with its own sort."""
    accepted = spark.createDataFrame([("p1", D(2026, 5, 1), 1.0, 10.0)], ACCEPTED_SCHEMA)
    exogenous = spark.createDataFrame([], "date date, eth_open double, btc_open double, gas_price_gwei double")
    plan = T.pool_daily_metrics(accepted, exogenous)._jdf.queryExecution().executedPlan().toString()
    operators = [line.strip(" :+-*()0123456789").split(" ")[0] for line in plan.splitlines()]
    assert operators.count("Sort") == 1, plan
    # The deltas of the stddev columns need them first: two Window operators over the one sort.
    assert operators.count("Window") == 2, plan


def test_calendar_has_every_day_of_the_range_and_none_when_it_is_empty(spark):
    days = [row.date for row in T.calendar(spark, D(2024, 2, 27), D(2024, 3, 1)).collect()]
    assert days == [D(2024, 2, 27), D(2024, 2, 28), D(2024, 2, 29), D(2024, 3, 1)]
    assert T.calendar(spark, D(2024, 3, 2), D(2024, 3, 1)).count() == 0


def test_the_jobs_exogenous_lookup_reads_no_pool_row(spark):
    """The metrics' as-of lookup runs over the calendar of the run's days, so the cached pool rows appear once
    in the plan (the metrics' windows), not a second time under the broadcast (as the lookup's dates), and
    Spark can build the lookup while it reads the pools. The values are those of the pools' own dates."""
    from spark_src.pool_metrics import main as job

    validated = spark.createDataFrame(
        [
            ("p1", D(2026, 5, 2), 1, 1.0, 10.0, None, None),
            ("p1", D(2026, 5, 4), 1, 3.0, 30.0, None, None),
            ("p2", D(2026, 5, 4), 2, None, None, "apy_missing", "tvl_missing"),
        ],
        "pool_id string, date date, observations int, apy double, tvl double, apy_problem string, tvl_problem string",
    ).persist()
    cmc = spark.createDataFrame(
        [(1, "ETH", ts(1), "100"), (2, "BTC", ts(3), "60000")],
        "id long, symbol string, data_timestamp timestamp, close_text string",
    )
    gas = spark.createDataFrame([(D(2026, 5, 2), 20.0)], "date date, gas_gwei double")
    now = dt.datetime(2026, 5, 5, 12, tzinfo=UTC)
    try:
        result = job.metrics(spark, validated, cmc, gas, D(2026, 5, 2), D(2026, 5, 31), now)
        plan = result._jdf.queryExecution().optimizedPlan().toString()
        assert plan.count("InMemoryRelation") == 1, plan
        rows = [(r.pool_id, r.date, r.eth_open, r.btc_open, r.gas_price_gwei) for r in result.collect()]
    finally:
        validated.unpersist()
    assert sorted(rows) == [
        ("p1", D(2026, 5, 2), 100.0, None, 20.0),
        ("p1", D(2026, 5, 4), 100.0, 60000.0, 20.0),  # May 3 has no row of the pools: its BTC close still counts
    ]


@pytest.mark.parametrize(("partitions", "shuffles_by_pool"), [(1, 0), (4, 1)])
def test_a_one_partition_read_shuffles_nothing_a_partitioned_one_once_and_both_sort_once(
    spark, partitions, shuffles_by_pool
):
    """The job's windows all partition by pool_id (and date). A one-partition read (a day's run) satisfies them
    as it is: no Exchange at all besides the lookup's broadcast; a partitioned read is shuffled once by pool_id
    for every window. Either way the pools' rows are sorted once: the latest observation's window sorts them by
    pool, date, time, and the rolling windows (by pool, date) take that order as it is. The rows are the same."""
    from spark_src.pool_metrics import main as job

    history = spark.createDataFrame(
        [
            (1, "p1", ts(1), "1", "10"),
            (2, "p1", ts(2, 8), "9", "10"),  # superseded by the later observation of the day
            (3, "p1", ts(2, 20), "3", "30"),
            (4, "p2", ts(2), "5", "x"),  # tvl not numeric: NULL
        ],
        HISTORY_SCHEMA,
    )
    exogenous = spark.createDataFrame([], "date date, eth_open double, btc_open double, gas_price_gwei double")
    validated = (
        job.by_pool(history, partitions).transform(T.latest_observation_per_day).transform(T.with_validated_values)
    )
    result = T.pool_daily_metrics(T.accepted_rows(validated), exogenous)
    plan = result._jdf.queryExecution().executedPlan().toString()
    exchanges = [line for line in plan.splitlines() if "Exchange" in line and "BroadcastExchange" not in line]
    assert len(exchanges) == shuffles_by_pool, plan
    assert all("hashpartitioning(pool_id" in line for line in exchanges), plan
    operators = [line.strip(" :+-*()0123456789").split(" ")[0] for line in plan.splitlines()]
    assert operators.count("Sort") == 1, plan
    rows = sorted(
        (r.pool_id, r.date, r.actual_apy, r.actual_tvl, r.rolling_apy_7d, r.stddev_apy_7d, r.apy_delta_today_yesterday)
        for r in result.collect()
    )
    assert rows == [
        ("p1", D(2026, 5, 1), 1.0, 10.0, 1.0, None, None),
        ("p1", D(2026, 5, 2), 3.0, 30.0, 2.0, math.sqrt(2.0), 2.0),
        ("p2", D(2026, 5, 2), 5.0, None, 5.0, None, None),
    ]


def test_observed_counts_arrive_after_the_action_and_their_absence_fails_instead_of_hanging(spark):
    """``Observation.get`` waits forever for counts that never come (SPARK-54620): the job's wait is bounded."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from spark_src.pool_metrics import main as job

    counts = Observation("test_counts")
    observed = spark.range(3).observe(counts, F.count(F.lit(1)).alias("n"), F.sum("id").alias("total"))
    # No action has run: the counts cannot arrive.
    with pytest.raises(RuntimeError, match=r"^the write's summary counts did not arrive within 0.5 s$"):
        job.observed(counts, timeout_s=0.5)
    observed.collect()  # the action: the counts arrive (and the waiting thread above ends)
    assert job.observed(counts, timeout_s=30) == {"n": 3, "total": 3}
