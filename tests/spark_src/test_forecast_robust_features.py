"""The Spark forecaster's robust features and its reversion choice, on hand-made panels with known answers.

Expected values are written out from the panel by hand (logs of the chosen APYs), not computed by the code
under test.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from pyspark.sql import functions as F

from spark_src.forecast import model as M
from spark_src.forecast import transforms as T

DAY0 = dt.date(2026, 6, 1)
# Pool p (group g): day 5 is missing; day 7 jumps from 3 to 9 (a move above ln 1.5). Pool q (group g): 1 %,
# but 3 % on day 8. Pool r has no group.
P_APY = {0: 3.0, 1: 4.0, 2: 3.0, 3: 4.0, 4: 3.0, 6: 3.0, 7: 9.0, 8: 9.0, 9: 7.0}
PANEL_SCHEMA = "pool_id string, date date, actual_apy double, actual_tvl double, pool_group string"
Q_APY = {k: (3.0 if k == 8 else 1.0) for k in range(10)}


def _panel(spark):
    rows = [("p", DAY0 + dt.timedelta(days=k), apy, 100.0 * 2**k, "g") for k, apy in P_APY.items()]
    rows += [("q", DAY0 + dt.timedelta(days=k), apy, 1000.0, "g") for k, apy in Q_APY.items()]
    rows += [("r", DAY0 + dt.timedelta(days=k), 2.0, 1000.0, None) for k in range(10)]
    return spark.createDataFrame(rows, PANEL_SCHEMA)


def _row(frame, pool: str, k: int) -> dict:
    return frame.where((frame.pool_id == pool) & (frame.date == DAY0 + dt.timedelta(days=k))).first().asDict()


def test_robust_features_of_known_rows(spark):
    features = T.add_robust_features(_panel(spark)).cache()
    ln = math.log
    p9 = _row(features, "p", 9)
    expected_p9 = {
        "apy_median_3d": 9.0,  # days 7, 8, 9: 9, 9, 7
        "apy_gap_3d": ln(8) - ln(10),
        "apy_change_1d": ln(8) - ln(10),
        "apy_change_3d": ln(8) - ln(4),  # day 6: 3
        "apy_change_7d": ln(8) - ln(4),  # day 2: 3
        # daily changes: ±ln 1.25 on days 1-4, none on 5 and 6 (no row the day before), ln 2.5, 0, ln 0.8:
        # median 0, absolute deviations' median ln 1.25
        "apy_change_mad_30d": ln(1.25),
        "days_since_jump": 2.0,  # the jump of day 7 (ln 2.5 > ln 1.5); ln 0.8 of day 9 is not one
        "group_apy_change_mean": (ln(0.8) + (ln(2) - ln(4))) / 2,  # p and q on day 9
        "group_apy_change_mean_lag1": (0.0 + (ln(4) - ln(2))) / 2,  # p and q on day 8
        "tvl_change_1d": ln(2),
        "tvl_change_7d": 7 * ln(2),
    }
    assert {k: p9[k] for k in expected_p9} == pytest.approx(expected_p9, rel=1e-12, abs=1e-12)
    p6 = _row(features, "p", 6)
    assert (p6["apy_change_1d"], p6["tvl_change_1d"]) == (None, None)  # no row on day 5
    assert p6["apy_change_3d"] == pytest.approx(ln(4) - ln(5), rel=1e-12)
    assert _row(features, "p", 2)["days_since_jump"] == 30.0  # no jump yet
    assert _row(features, "q", 0)["group_apy_change_mean_lag1"] is None  # no day before
    r9 = _row(features, "r", 9)
    assert (r9["group_apy_change_mean"], r9["group_apy_change_mean_lag1"], r9["apy_change_1d"]) == (None, None, 0.0)


def test_the_reversion_weight_is_the_share_that_fits_the_training_rows(spark):
    # Today 3 % (slog ln 4), 3-day median 1 % (slog ln 2): the gap is ln 2.
    def rows(target: float):
        return spark.createDataFrame(
            [(3.0, math.log(2), target)] * 4, "actual_apy double, apy_gap_3d double, target_apy double"
        )

    assert M.choose_reversion_weight(rows(3.0)) == 0.0  # tomorrow = today: no reversion
    assert M.choose_reversion_weight(rows(1.0)) == 1.0  # tomorrow = the median: all of it
    assert M.choose_reversion_weight(rows(4 / math.sqrt(2) - 1)) == 0.5  # halfway on the slog scale


def test_a_robust_feature_of_day_d_does_not_change_when_later_days_change(spark):
    panel = _panel(spark)
    later = panel.date >= DAY0 + dt.timedelta(days=8)
    changed = panel.withColumn("actual_apy", F.when(later, panel.actual_apy * 5).otherwise(panel.actual_apy))
    changed = changed.withColumn("actual_tvl", F.when(later, changed.actual_tvl * 3).otherwise(changed.actual_tvl))

    def up_to_day_7(frame):
        features = T.add_robust_features(frame).where(F.col("date") < DAY0 + dt.timedelta(days=8))
        return features.select("pool_id", "date", *T.ROBUST_FEATURE_COLUMNS).orderBy("pool_id", "date").collect()

    before = up_to_day_7(panel)
    assert len(before) == 7 + 8 + 8  # p has no day 5
    assert up_to_day_7(changed) == before


def _noise_panel(spark, log_apy):
    rows = [
        (f"p{i}", DAY0 + dt.timedelta(days=k), float(math.exp(log_apy[i, k])), 1e6, "g")
        for i in range(log_apy.shape[0])
        for k in range(log_apy.shape[1])
    ]
    return spark.createDataFrame(rows, PANEL_SCHEMA)


def test_noise_around_a_level_reverts_and_a_random_walk_does_not(spark):
    """Seeded panels, 6 pools x 60 days: i.i.d. noise around 5 % (tomorrow is best forecast near the recent
    median: all of the distance) against a random walk (tomorrow = today: no reversion at all)."""
    rng = np.random.default_rng(3)
    noise = math.log(5.0) + rng.normal(0.0, 0.3, (6, 60))
    walk = math.log(5.0) + np.cumsum(rng.normal(0.0, 0.05, (6, 60)), axis=1)

    def weight(log_apy) -> float:
        rows = T.add_targets(T.add_robust_features(_noise_panel(spark, log_apy)))
        return M.choose_reversion_weight(rows.where(F.col("target_apy").isNotNull()))

    assert weight(noise) == 1.0
    assert weight(walk) == 0.0
