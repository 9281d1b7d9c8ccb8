"""The SynapseML forecaster's floor and robustness, on hand-made panels with known answers (real LightGBM fits).

- persistence is the floor: when nothing ever changes, the forecast is today's value, exactly;
- one 1e9 % day in the training window does not move anyone's forecast off their level, and a pool whose
  as-of observation is implausible gets no forecast at all (never one anchored on the spike).
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import functions as F

from spark_src.common.columns import METRIC_COLUMNS
from spark_src.forecast import model as M
from spark_src.forecast import quarantine as Q
from spark_src.forecast import transforms as T

DAY0 = dt.date(2026, 6, 1)
DAYS = 45
AS_OF = DAY0 + dt.timedelta(days=DAYS - 1)
LEVELS = {"p0": 1.5, "p1": 3.0, "p2": 4.2, "p3": 7.7, "p4": 12.0, "p5": 25.0}
SCHEMA = "pool_id string, date date, " + ", ".join(f"{c} double" for c in METRIC_COLUMNS)


def _frames(spark, apy):
    rest = [None] * (len(METRIC_COLUMNS) - 2)
    rows = [
        (pool, DAY0 + dt.timedelta(days=k), apy(pool, k), 1e6 * (i + 1), *rest)
        for i, pool in enumerate(LEVELS)
        for k in range(DAYS)
    ]
    pools = spark.createDataFrame(
        [(pool, "g" if i % 2 else "h", True, False) for i, pool in enumerate(LEVELS)],
        "pool_id string, pool_group string, is_active boolean, is_filtered_out boolean",
    )
    return spark.createDataFrame(rows, SCHEMA), pools


def _forecasts(metrics, pools) -> dict[str, tuple[float, float]]:
    clean = Q.clean_metrics(Q.flag_observations(metrics, Q.QuarantineRule()))
    frame = T.model_frame(clean, pools, AS_OF, 30).cache()
    fitted = M.fit(frame.where((F.col("date") < F.lit(AS_OF)) & F.col("target_apy").isNotNull()))
    rows = M.forecast(fitted.model, frame.where(F.col("date") == F.lit(AS_OF))).collect()
    return {r.pool_id: (r.forecasted_apy, r.forecasted_tvl) for r in rows}


@pytest.mark.slow
def test_when_nothing_changes_the_forecast_is_today(spark):
    forecasts = _forecasts(*_frames(spark, lambda pool, k: LEVELS[pool]))
    assert sorted(forecasts) == sorted(LEVELS)
    for i, (pool, level) in enumerate(LEVELS.items()):
        apy, tvl = forecasts[pool]
        assert apy == pytest.approx(level, rel=1e-9), pool
        assert tvl == pytest.approx(1e6 * (i + 1), rel=1e-9), pool


@pytest.mark.slow
def test_a_1e9_spike_moves_no_forecast_and_a_spiked_as_of_day_gets_none(spark):
    def apy(pool: str, k: int) -> float:
        if pool == "p0" and k == 35:
            return 1e9  # in the training window
        if pool == "p3" and k == DAYS - 1:
            return 1e9  # the as-of observation itself
        return LEVELS[pool] * (1.0 + 0.05 * math.sin(1.7 * k + len(pool) * int(pool[1])))

    forecasts = _forecasts(*_frames(spark, apy))
    assert sorted(forecasts) == ["p0", "p1", "p2", "p4", "p5"]  # p3: nothing plausible to start from
    for pool, (value, _) in forecasts.items():
        assert 0.8 * LEVELS[pool] <= value <= 1.2 * LEVELS[pool], (pool, value)


@pytest.mark.slow
def test_a_fit_gives_back_what_it_cached_when_it_returns_and_when_it_fails(spark, monkeypatch):
    """A fit caches its training rows and their stacked features; it releases both either way. The failure is
    injected in the correction-shrink step, after both are cached (no GCP here: nothing else is replaced)."""
    metrics, pools = _frames(spark, lambda pool, k: LEVELS[pool] * (1 + 0.01 * (k % 5)))
    frame = T.model_frame(Q.clean_metrics(Q.flag_observations(metrics, Q.QuarantineRule())), pools, AS_OF, 30)
    training = frame.where((F.col("date") < F.lit(AS_OF)) & F.col("target_apy").isNotNull())
    cache_manager = spark._jsparkSession.sharedState().cacheManager()
    spark.catalog.clearCache()

    fitted = M.fit(training)
    assert fitted.training_rows == 174  # 6 pools x the window's 29 days before AS_OF
    assert cache_manager.isEmpty()

    def fail(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(M, "choose_correction_shrink", fail)
    with pytest.raises(RuntimeError, match="injected"):
        M.fit(training)
    assert cache_manager.isEmpty()


def test_an_unknown_objective_is_refused_before_any_work():
    with pytest.raises(ValueError, match="apy_objective 'l3' is not one of"):
        M.fit(None, apy_objective="l3")
