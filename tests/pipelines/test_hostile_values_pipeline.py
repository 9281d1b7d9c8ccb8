"""One absurd but finite APY, 1e300 %, through the whole local pipeline (kfp.local, real Spark, SynapseML,
PostgreSQL), with a day of 1e300 USD TVLs, an ETH close and a gas price of 1e300 around it.

The metric semantics keep every finite value, so it reaches `pool_daily_metrics`, and every window holding it
overflows. It used to fail the run: the Spark job wrote NaN stddev deltas where the legacy job wrote NULL
(the parity gate failed); the legacy forecaster's random forest refused it ("Input X contains infinity or a
value too large for dtype('float32')"); and on the demo's data the gate's metrics then held an infinite legacy
RMSE, which KFP cannot serialize. Now the run completes: the overflowed metrics are NULL in both jobs, the
forest reads the value as missing, and tomorrow's forecasts are promoted.

Run status is not trusted (kubeflow/pipelines#13332): the checks read the tables and the outputs.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import text

from database.synthetic import SyntheticSpec, generate, load
from pipelines.local_run import run_local
from tests.absurd_values import non_finite_metric_cells, plant_apy

pytestmark = pytest.mark.slow

SPEC = SyntheticSpec(pools=6, days=40, seed=17)  # 2026-05-01 .. 2026-06-09
PLANTED_DAY = dt.date(2026, 6, 5)
# Around it (SQL, days from PLANTED_DAY): a TVL of 1e300 USD for every pool, an ETH close and a gas price of 1e300.
AROUND_IT = (
    (
        """UPDATE raw_defillama_pool_history
           SET raw_json_data = jsonb_set(raw_json_data, '{tvlUsd}', '1e300')
           WHERE "timestamp" >= :d AND "timestamp" < :d + 1""",
        1,
    ),
    (
        """UPDATE raw_coinmarketcap_ohlcv
           SET raw_json_data = jsonb_set(raw_json_data, '{USD,close}', '1e300')
           WHERE symbol = 'ETH' AND data_timestamp >= :d AND data_timestamp < :d + 1""",
        -2,
    ),
    ("UPDATE gas_fees_daily SET actual_avg_gas_gwei = 1e300 WHERE date = :d", -1),
)


def test_an_apy_of_1e300_percent_goes_through_the_whole_pipeline(db, db_config):
    load(db, generate(SPEC))
    with db.begin() as conn:
        pool = plant_apy(conn, PLANTED_DAY, "1e300")
        changed = [
            conn.execute(text(sql), {"d": PLANTED_DAY + dt.timedelta(days=offset)}).rowcount
            for sql, offset in AROUND_IT
        ]
    assert changed == [5, 1, 1]  # 5 history rows on June 6, one ETH row, one gas row

    run = run_local(db_config, legacy_n_trials=2, holdout_days=2)

    with db.connect() as conn:
        assert non_finite_metric_cells(conn, "pool_daily_metrics") == 0
        planted = conn.execute(
            text(
                "SELECT date, actual_apy, stddev_apy_30d, stddev_apy_30d_delta FROM pool_daily_metrics "
                "WHERE pool_id = :p AND date >= :d AND actual_apy IS NOT NULL ORDER BY date"
            ),
            {"p": pool, "d": PLANTED_DAY},
        ).all()
        as_of = conn.execute(text("SELECT max(date) FROM pool_daily_metrics WHERE actual_apy IS NOT NULL")).scalar()
        tomorrow = conn.execute(
            text(
                "SELECT pool_id, forecasted_apy, forecast_model FROM pool_daily_metrics "
                "WHERE date = :d AND forecasted_apy IS NOT NULL"
            ),
            {"d": as_of + dt.timedelta(days=1)},
        ).all()
        legacy_backtests = conn.execute(
            text("SELECT count(*) FROM pool_forecast_history WHERE model = 'legacy_rf_lgbm'")
        ).scalar()

    # The planted day is a metric row; its 30-day stddev, and every later one the window still holds, is NULL.
    assert planted[0][:2] == (PLANTED_DAY, 1e300)
    assert as_of == dt.date(2026, 6, 9)
    assert [(r.date, r.stddev_apy_30d, r.stddev_apy_30d_delta) for r in planted] == [
        (r.date, None, None) for r in planted
    ]
    assert [r.date for r in planted] == [PLANTED_DAY + dt.timedelta(days=k) for k in range(5)]  # June 5 .. 9
    # The run got as far as promoting tomorrow's forecasts, the legacy backtest included: for the 4 pools the
    # forecast keeps (of the 6, one is inactive and one filtered out), on each of the 2 holdout dates.
    assert legacy_backtests == 4 * 2
    assert len(tomorrow) == 4 and all(math.isfinite(r.forecasted_apy) for r in tomorrow)
    evaluation = run.metadata("forecast_metrics")
    assert evaluation["forecast_rows_evaluated_apy"] == 4 * 2
    assert [k for k, v in evaluation.items() if not math.isfinite(v)] == []
