"""The whole local pipeline (kfp.local, real Spark, real PostgreSQL) on a small synthetic set.

The resulting table is checked against an oracle written in PostgreSQL's own SQL (window frames with
RANGE intervals, LATERAL as-of lookups), an implementation independent of the Spark code under test.
Run status is not trusted (kubeflow/pipelines#13332): the checks read outputs and tables.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from sqlalchemy import text

from database.synthetic import SyntheticSpec, generate, load
from pipelines.local_run import LocalRunFailed, run_local, table_fingerprint
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

pytestmark = pytest.mark.slow

NUMBER = r"^\s*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity)|[+-]?nan)\s*$"
ORACLE_SQL = """
WITH observations AS (
    SELECT h.pool_id, (h."timestamp" AT TIME ZONE 'UTC')::date AS date,
           h.raw_json_data->>'apy' AS apy_text, h.raw_json_data->>'tvlUsd' AS tvl_text,
           row_number() OVER (PARTITION BY h.pool_id, (h."timestamp" AT TIME ZONE 'UTC')::date
                              ORDER BY h."timestamp" DESC, h.id DESC) AS latest
    FROM raw_defillama_pool_history h JOIN pools p USING (pool_id)
    WHERE p.is_active AND h."timestamp" BETWEEN '2009-01-03' AND now() + INTERVAL '10 minutes'
), parsed AS (
    SELECT pool_id, date,
           CASE WHEN apy_text ~* :number THEN trim(apy_text)::float8 END AS apy,
           CASE WHEN tvl_text ~* :number THEN trim(tvl_text)::float8 END AS tvl
    FROM observations WHERE latest = 1
), kept AS (
    SELECT pool_id, date, apy,
           CASE WHEN tvl >= 0 AND tvl < 'Infinity'::float8 THEN tvl END AS tvl  -- NaN sorts above Infinity
    FROM parsed WHERE apy IS NOT NULL AND apy NOT IN ('NaN', 'Infinity', '-Infinity')
), closes AS (
    SELECT DISTINCT ON (symbol, (data_timestamp AT TIME ZONE 'UTC')::date)
           symbol, (data_timestamp AT TIME ZONE 'UTC')::date AS date, (raw_json_data->'USD'->>'close')::float8 AS close
    FROM raw_coinmarketcap_ohlcv ORDER BY symbol, (data_timestamp AT TIME ZONE 'UTC')::date, data_timestamp DESC
), windows AS (
    SELECT pool_id, date, apy, tvl,
           avg(apy) OVER w7 AS rolling_apy_7d, stddev_samp(apy) OVER w7 AS stddev_apy_7d,
           avg(apy) OVER w30 AS rolling_apy_30d, stddev_samp(apy) OVER w30 AS stddev_apy_30d,
           lag(date) OVER w AS previous_date, lag(apy) OVER w AS previous_apy
    FROM kept
    WINDOW w AS (PARTITION BY pool_id ORDER BY date),
           w7 AS (PARTITION BY pool_id ORDER BY date RANGE BETWEEN INTERVAL '6 days' PRECEDING AND CURRENT ROW),
           w30 AS (PARTITION BY pool_id ORDER BY date RANGE BETWEEN INTERVAL '29 days' PRECEDING AND CURRENT ROW)
)
SELECT w.pool_id, w.date, w.apy AS actual_apy, w.tvl AS actual_tvl, w.rolling_apy_7d, w.rolling_apy_30d,
       CASE WHEN w.previous_date = w.date - 1 THEN w.apy - w.previous_apy END AS apy_delta_today_yesterday,
       w.stddev_apy_7d, w.stddev_apy_30d,
       CASE WHEN w.previous_date = w.date - 1 THEN w.stddev_apy_7d - y.stddev_apy_7d END AS stddev_apy_7d_delta,
       CASE WHEN w.previous_date = w.date - 1 THEN w.stddev_apy_30d - y.stddev_apy_30d END AS stddev_apy_30d_delta,
       (SELECT close FROM closes c WHERE c.symbol = 'ETH' AND c.date < w.date AND c.date >= w.date - 7
        ORDER BY c.date DESC LIMIT 1) AS eth_open,
       (SELECT close FROM closes c WHERE c.symbol = 'BTC' AND c.date < w.date AND c.date >= w.date - 7
        ORDER BY c.date DESC LIMIT 1) AS btc_open,
       (SELECT actual_avg_gas_gwei::float8 FROM gas_fees_daily g WHERE g.date <= w.date AND g.date >= w.date - 7
        ORDER BY g.date DESC LIMIT 1) AS gas_price_gwei
FROM windows w LEFT JOIN windows y ON y.pool_id = w.pool_id AND y.date = w.date - 1
ORDER BY w.pool_id, w.date
"""


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _assert_metrics_match_the_oracle(db) -> list:
    """pool_daily_metrics equals the SQL oracle cell by cell; the planted forecast survived; no staging is left.
    Returns the oracle's rows."""
    with db.connect() as conn:
        expected = conn.execute(text(ORACLE_SQL), {"number": NUMBER}).mappings().all()
        actual = (
            conn.execute(
                text(
                    f"SELECT pool_id, date, {', '.join(METRIC_COLUMNS)} FROM pool_daily_metrics "
                    "WHERE actual_apy IS NOT NULL ORDER BY pool_id, date"
                )
            )
            .mappings()
            .all()
        )
        forecast = conn.execute(
            text(
                "SELECT forecasted_apy, actual_apy IS NOT NULL FROM pool_daily_metrics WHERE forecasted_apy IS NOT NULL"
            )
        ).all()
        leftover_staging = conn.execute(text("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'stg_%'")).scalar()

    assert len(expected) > 250  # the synthetic set is not trivially small (8 pools x 50 days)
    assert [(r["pool_id"], r["date"]) for r in actual] == [(r["pool_id"], r["date"]) for r in expected]
    mismatches = [
        (e["pool_id"], e["date"], column, a[column], e[column])
        for a, e in zip(actual, expected, strict=True)
        for column in METRIC_COLUMNS
        if not _close(a[column], e[column])
    ]
    assert mismatches == []
    assert (4.2, True) in forecast  # the forecast survived and the day's actuals were filled in
    assert leftover_staging == 0
    return expected


def _run_range(run) -> tuple:
    meta = run.metadata("run_range")
    return meta["mode"], meta["start"], meta["end"], meta["days"]


def test_local_pipeline_computes_promotes_and_is_idempotent(db, db_config):
    data = generate(SyntheticSpec(pools=8, days=50, seed=11))
    load(db, data)
    with db.begin() as conn:
        # A forecast already in the table must survive the metrics promotion.
        conn.execute(
            text(
                "INSERT INTO pool_daily_metrics (pool_id, date, forecasted_apy) "
                "SELECT pool_id, DATE '2026-06-05', 4.2 FROM pools WHERE is_active ORDER BY pool_id LIMIT 1"
            )
        )

    first = run_local(db_config, legacy_n_trials=3)

    expected = _assert_metrics_match_the_oracle(db)

    # Nothing promoted yet: the default (incremental) run computes every day with data.
    assert _run_range(first) == ("incremental", "2026-05-01", "2026-06-19", 50)
    staging = first.metadata("staging")
    promoted = first.promotion("metrics_staging_table", "pool_daily_metrics").metadata
    parity = first.metadata("parity")
    assert (parity["parity_pass"], parity["parity_rows_compared"], parity["parity_cells_mismatched"]) == (
        1,
        len(expected),
        0,
    )
    assert staging["rows_written"] == len(expected)
    assert promoted["inserted"] + promoted["updated"] == len(expected)
    assert promoted["updated"] == 1  # the pre-existing forecast row got its metrics
    rejected = sum(staging["rejected"].values())
    assert rejected > 0 and staging["observations_superseded"] > 0

    # Forecasts for as_of + 1 of every forecastable pool (active, kept, with actuals on the as-of day).
    with db.connect() as conn:
        as_of = conn.execute(text("SELECT max(date) FROM pool_daily_metrics WHERE actual_apy IS NOT NULL")).scalar()
        forecastable = (
            conn.execute(
                text(
                    "SELECT m.pool_id FROM pool_daily_metrics m JOIN pools p USING (pool_id) "
                    "WHERE m.date = :d AND m.actual_apy IS NOT NULL AND p.is_active AND NOT p.is_filtered_out "
                    "ORDER BY 1"
                ),
                {"d": as_of},
            )
            .scalars()
            .all()
        )
        forecast_rows = conn.execute(
            text("SELECT pool_id, forecasted_apy, actual_apy FROM pool_daily_metrics WHERE date = :d ORDER BY 1"),
            {"d": as_of + dt.timedelta(days=1)},
        ).all()
        history_models = conn.execute(
            text("SELECT model, count(*) FROM pool_forecast_history GROUP BY 1 ORDER BY 1")
        ).all()
    assert len(forecastable) >= 4
    assert [r.pool_id for r in forecast_rows] == forecastable
    assert all(r.actual_apy is None and math.isfinite(r.forecasted_apy) for r in forecast_rows)
    # history: the as_of + 1 forecasts and 3 holdout dates of Spark and naive, the 3 holdout dates of legacy
    assert [m for m, _ in history_models] == ["legacy_rf_lgbm", "naive", "spark_lgbm_stacked"]
    model = first.sibling(first.find("forecasts"), "model")
    assert (Path(model.uri) / "model_card.json").exists() and (Path(model.uri) / "pipeline_model").is_dir()
    assert model.metadata["training_rows"] > 100
    forecasts_promoted = first.promotion("forecast_staging_table", "pool_daily_metrics").metadata
    assert forecasts_promoted["inserted"] == len(forecastable)  # the as_of + 1 rows are new
    evaluation = first.metadata("forecast_metrics")
    assert evaluation["forecast_holdout_dates"] == 3 and evaluation["forecast_rows_evaluated_apy"] > 10

    # Lineage: a Dataset per source, staging and target table, a Model for the forecast model.
    lineage = {(i["metadata"].get("table", "model"), i["metadata"].get("role", "model")): i for i in first.lineage()}
    with db.connect() as conn:
        history_rows = conn.execute(text("SELECT count(*) FROM raw_defillama_pool_history")).scalar()
    source = lineage[("raw_defillama_pool_history", "source")]
    assert source["uri"] == f"postgresql://127.0.0.1:{db_config.port}/defi/public.raw_defillama_pool_history"
    assert (source["metadata"]["rows"], source["metadata"]["first_day"]) == (history_rows, "2026-05-01")
    assert lineage[(staging["staging_table"], "staging")]["metadata"]["rows"] == len(expected)
    assert ("pool_daily_metrics", "target") in lineage and ("pool_forecast_history", "target") in lineage
    assert lineage[("model", "model")]["uri"] == model.uri
    assert lineage[("model", "model")]["metadata"]["training_rows"] == model.metadata["training_rows"]

    fingerprint = table_fingerprint(db)
    # The second run skips the legacy comparison (the pipeline's other branch) and must change nothing. It is
    # incremental: the last promoted day (06-19) minus the 2 late-data days, to the latest day with data.
    second = run_local(db_config, compare_with_legacy=False, legacy_n_trials=3)
    assert table_fingerprint(db) == fingerprint
    assert second.metadata("parity") == {"parity_skipped": 1}
    assert _run_range(second) == ("incremental", "2026-06-17", "2026-06-19", 3)
    last_days = [r for r in expected if r["date"] >= dt.date(2026, 6, 17)]
    again = second.promotion("metrics_staging_table", "pool_daily_metrics").metadata
    assert (again["inserted"], again["updated"], again["unchanged"], len(last_days) > 10) == (
        0,
        0,
        len(last_days),
        True,
    )


def test_a_parity_mismatch_stops_the_run_before_promotion(db, db_config):
    load(db, generate(SyntheticSpec(pools=4, days=40, seed=5)))
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO pool_daily_metrics (pool_id, date, actual_apy) VALUES ('kept', '2026-01-01', 1)")
        )
        # Plant a mismatch where the legacy job writes: one cell of its per-run shadow table is nudged on insert
        # (an event trigger puts the row trigger on the shadow table when the run creates it).
        conn.execute(
            text(
                """
                CREATE FUNCTION nudge() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.date = DATE '2026-05-20' AND NEW.pool_id = (SELECT min(pool_id) FROM pools WHERE is_active)
                    THEN NEW.rolling_apy_7d := NEW.rolling_apy_7d * 1.001; END IF;
                    RETURN NEW;
                END $$;
                CREATE FUNCTION add_nudge() RETURNS event_trigger LANGUAGE plpgsql AS $$
                DECLARE created record;
                BEGIN
                    -- CREATE TABLE … LIKE … INCLUDING ALL reports the table more than once.
                    FOR created IN SELECT DISTINCT object_identity FROM pg_event_trigger_ddl_commands()
                                   WHERE object_type = 'table'
                                     AND object_identity LIKE 'public.stg\\_legacy\\_metrics\\_%' LOOP
                        EXECUTE format('CREATE OR REPLACE TRIGGER nudge BEFORE INSERT ON %s FOR EACH ROW '
                                       'EXECUTE FUNCTION nudge()',
                                       created.object_identity);
                    END LOOP;
                END $$;
                CREATE EVENT TRIGGER add_nudge ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
                    EXECUTE FUNCTION add_nudge();
                """
            )
        )
    before = table_fingerprint(db)

    try:
        with pytest.raises(LocalRunFailed) as failure:
            run_local(db_config, legacy_n_trials=3)
    finally:
        with db.begin() as conn:
            conn.execute(text("DROP EVENT TRIGGER add_nudge"))

    assert table_fingerprint(db) == before  # nothing promoted
    run = failure.value.run
    # The failed task is named by its display name, with its own last error line.
    message = str(failure.value)
    assert message.startswith("the local run failed in task 'parity gate: Spark vs legacy' after "), message
    assert ": RuntimeError: metrics parity failed: " in message and message.endswith("; see the report artifact")
    assert failure.value.failed_task == "evaluate-metrics-parity"
    assert "metrics parity failed" in (run.root / "run.log").read_text()
    assert run.find("parity") is None  # a failed task records no metrics (on Vertex neither)
    assert run.outputs("promoted") == []
    assert run.find("forecasts") is None  # nothing after the gate ran
    # The failed task is the gate: its Markdown report is written before it fails, and copied as parity.md.
    report = run.file(failure.value.failed_task, "report")
    assert (run.root / "parity.md").read_text() == report.read_text()
    assert report is not None
    text_ = report.read_text()
    assert "Metrics parity: FAIL" in text_ and "| 1 of " in text_
    assert "rolling_apy_7d" in text_ and "2026-05-20" in text_


SPIKE_SQL = """
UPDATE raw_defillama_pool_history SET raw_json_data = jsonb_set(raw_json_data, '{apy}', '1e9')
WHERE id = (
    SELECT h.id FROM raw_defillama_pool_history h JOIN pools p USING (pool_id)
    WHERE p.is_active AND NOT p.is_filtered_out AND (h."timestamp" AT TIME ZONE 'UTC')::date = :day
      AND jsonb_typeof(h.raw_json_data->'apy') = 'number'
    ORDER BY h.pool_id, h."timestamp" DESC LIMIT 1
)
RETURNING pool_id
"""


def test_a_1e9_apy_is_promoted_as_a_metric_and_kept_out_of_the_forecasts(db, db_config):
    """The issue's done-when: with a 1e9 % APY in one pool, parity passes (operand-scaled tolerance), the run
    completes, the quarantine records the value and no forecast above the plausibility bound is promoted."""
    load(db, generate(SyntheticSpec(pools=6, days=50, seed=13)))
    spike_day = dt.date(2026, 6, 12)  # 2026-05-01 + 42: in every holdout window and the 30-day stats of as_of
    with db.begin() as conn:
        spiked = conn.execute(text(SPIKE_SQL), {"day": spike_day}).scalar_one()

    run = run_local(db_config, legacy_n_trials=3)

    with db.connect() as conn:
        metric = conn.execute(
            text("SELECT actual_apy, stddev_apy_30d FROM pool_daily_metrics WHERE pool_id = :p AND date = :d"),
            {"p": spiked, "d": spike_day},
        ).one()
        as_of = conn.execute(text("SELECT max(date) FROM pool_daily_metrics WHERE actual_apy IS NOT NULL")).scalar()
        tomorrow = conn.execute(
            text("SELECT pool_id, forecasted_apy, forecast_model FROM pool_daily_metrics WHERE date = :d"),
            {"d": as_of + dt.timedelta(days=1)},
        ).all()
        quarantined = conn.execute(
            text("SELECT pool_id, date, column_name, value, reason FROM pool_observation_quarantine")
        ).all()
    assert run.metadata("parity")["parity_pass"] == 1
    assert metric.actual_apy == 1e9 and metric.stddev_apy_30d > 1e8  # the metrics keep the value
    assert (spiked, spike_day, "actual_apy", 1e9, "apy_above_bound") in quarantined
    assert len(tomorrow) >= 3
    assert all(r.forecasted_apy is not None and -100 <= r.forecasted_apy <= 10_000 for r in tomorrow)
    assert {r.forecast_model for r in tomorrow} <= {"spark_lgbm_stacked", "naive"} and len(
        {r.forecast_model for r in tomorrow}
    ) == 1
    evaluation = run.metadata("forecast_metrics")
    assert evaluation["forecast_spark_apy_mae"] < 100  # no spike-sized error anywhere in the backtest
