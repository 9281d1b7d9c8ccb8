"""The forecast backtest against a real PostgreSQL: hand-computed MAE/RMSE/WAPE, fair rows, the gate, the report."""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl
from sqlalchemy import text

from components.evaluate_forecasts import evaluate_forecasts

D = dt.date
SPARK = "spark_lgbm_stacked"
LEGACY = "legacy_rf_lgbm"
HOLDOUT = "2026-08-25,2026-08-26"  # forecast dates 2026-08-26 and 2026-08-27
AS_OF = {D(2026, 8, 26): D(2026, 8, 25), D(2026, 8, 27): D(2026, 8, 26)}

# The hand example: two pools, actuals on both as-of dates and both forecast dates.
#   pool  date    apy   tvl
ACTUALS = [
    ("p1", D(2026, 8, 25), 5.0, 100.0),
    ("p1", D(2026, 8, 26), 4.0, 110.0),
    ("p1", D(2026, 8, 27), 6.0, 90.0),
    ("p2", D(2026, 8, 25), 10.0, 1000.0),
    ("p2", D(2026, 8, 26), 12.0, 1000.0),
    ("p2", D(2026, 8, 27), 11.0, 1200.0),
]
# Forecasts of (p1 08-26, p1 08-27, p2 08-26, p2 08-27), actual APY (4, 6, 12, 11) and TVL (110, 90, 1000, 1200).
#   spark APY  (5, 5, 14, 11)        errors (1, -1, 2, 0)
#   legacy APY (4.5, 5.5, 13, 10)    errors (0.5, -0.5, 1, -1)
#   spark TVL  (120, 80, 1050, 1100) errors (10, -10, 50, -100)
#   legacy TVL (110, 120, 980, 1240) errors (0, 30, -20, 40)
KEYS = [("p1", D(2026, 8, 26)), ("p1", D(2026, 8, 27)), ("p2", D(2026, 8, 26)), ("p2", D(2026, 8, 27))]
FORECASTS = {
    SPARK: list(zip(KEYS, [5.0, 5.0, 14.0, 11.0], [120.0, 80.0, 1050.0, 1100.0], strict=True)),
    LEGACY: list(zip(KEYS, [4.5, 5.5, 13.0, 10.0], [110.0, 120.0, 980.0, 1240.0], strict=True)),
}
# The naive forecast is the actual of the as-of date: APY (5, 4, 10, 12), errors (1, -2, -2, 1);
# TVL (100, 110, 1000, 1000), errors (-10, 20, 0, -200). Sum of |actual|: APY 4+6+12+11 = 33,
# TVL 110+90+1000+1200 = 2400.
EXPECTED = {
    "forecast_spark_apy_mae": (1 + 1 + 2 + 0) / 4,
    "forecast_spark_apy_rmse": math.sqrt((1 + 1 + 4 + 0) / 4),
    "forecast_spark_apy_wape": 4 / 33,
    "forecast_legacy_apy_mae": (0.5 + 0.5 + 1 + 1) / 4,
    "forecast_legacy_apy_rmse": math.sqrt((0.25 + 0.25 + 1 + 1) / 4),
    "forecast_legacy_apy_wape": 3 / 33,
    "forecast_naive_apy_mae": (1 + 2 + 2 + 1) / 4,
    "forecast_naive_apy_rmse": math.sqrt((1 + 4 + 4 + 1) / 4),
    "forecast_naive_apy_wape": 6 / 33,
    "forecast_spark_tvl_mae": (10 + 10 + 50 + 100) / 4,
    "forecast_spark_tvl_rmse": math.sqrt((100 + 100 + 2500 + 10000) / 4),
    "forecast_spark_tvl_wape": 170 / 2400,
    "forecast_legacy_tvl_mae": (0 + 30 + 20 + 40) / 4,
    "forecast_legacy_tvl_rmse": math.sqrt((0 + 900 + 400 + 1600) / 4),
    "forecast_legacy_tvl_wape": 90 / 2400,
    "forecast_naive_tvl_mae": (10 + 20 + 0 + 200) / 4,
    "forecast_naive_tvl_rmse": math.sqrt((100 + 400 + 0 + 40000) / 4),
    "forecast_naive_tvl_wape": 230 / 2400,
    "forecast_rows_evaluated_apy": 4.0,
    "forecast_rows_evaluated_tvl": 4.0,
    "forecast_rows_dropped_apy": 0.0,
    "forecast_rows_dropped_tvl": 0.0,
    "forecast_holdout_dates": 2.0,
    "forecast_rows_quarantined_apy": 0.0,
    "forecast_rows_quarantined_tvl": 0.0,
    "forecast_gate_pass": 0.0,  # spark 1.0 > legacy 0.75 x 1.05 = 0.7875
    "forecast_beats_naive": 1.0,  # spark 1.0 <= naive 1.5
    "forecast_promoted_naive": 0.0,  # the component's gate is off by default: spark is promoted unjudged
}
# The spark model's APY MAE is 4/3 of the legacy one's: a tolerance of 0.5 lets it pass, 0.25 does not.
PASSING_TOLERANCE = 0.5  # 0.75 x 1.5 = 1.125 >= 1.0
FAILING_TOLERANCE = 0.25  # 0.75 x 1.25 = 0.9375 < 1.0


def _actuals(conn, rows: list[tuple]) -> None:
    conn.execute(
        text("INSERT INTO pool_daily_metrics (pool_id, date, actual_apy, actual_tvl) VALUES (:p, :d, :apy, :tvl)"),
        [{"p": p, "d": d, "apy": apy, "tvl": tvl} for p, d, apy, tvl in rows],
    )


def _forecasts(conn, model: str, rows: list[tuple], run_id: str = "r1") -> None:
    """Inserts ((pool, forecast_date), apy, tvl) rows made as of the day before the forecast date."""
    conn.execute(
        text(
            "INSERT INTO pool_forecast_history (pool_id, forecast_date, model, run_id, as_of, forecasted_apy, "
            "forecasted_tvl) VALUES (:p, :d, :model, :run_id, :as_of, :apy, :tvl)"
        ),
        [
            {"p": p, "d": d, "model": model, "run_id": run_id, "as_of": d - dt.timedelta(days=1), "apy": a, "tvl": t}
            for (p, d), a, t in rows
        ],
    )


def _hand_example(db) -> None:
    with db.begin() as conn:
        _actuals(conn, ACTUALS)
        for model, rows in FORECASTS.items():
            _forecasts(conn, model, rows)


def _outputs(tmp_path: Path) -> tuple[dsl.Metrics, dsl.HTML]:
    metrics = dsl.Metrics(name="forecast_metrics", uri=str(tmp_path / "m"), metadata={})
    report = dsl.HTML(name="report", uri=str(tmp_path / "report.html"))
    return metrics, report


def _run(db_config, tmp_path: Path, **kwargs):
    """Runs the component; returns the summary, the logged metrics and the HTML report."""
    metrics, report = _outputs(tmp_path)
    params = {"database_url": db_config.url, "run_id": "r1", "holdout_as_of": HOLDOUT, **kwargs}
    summary = evaluate_forecasts.python_func(forecast_metrics=metrics, report=report, **params)
    return summary, metrics.metadata, Path(report.path).read_text()


def _assert_metrics(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, rel=1e-12, abs=0), name


def test_hand_example_scores_every_model_and_target(db, db_config, tmp_path):
    _hand_example(db)

    summary, metrics, _ = _run(db_config, tmp_path)

    _assert_metrics(metrics, EXPECTED)
    assert summary.spark_apy_mae == pytest.approx(1.0, rel=1e-12)
    assert summary.legacy_apy_mae == pytest.approx(0.75, rel=1e-12)
    assert summary.naive_apy_mae == pytest.approx(1.5, rel=1e-12)


def test_rows_lacking_any_forecast_are_dropped_for_every_model(db, db_config, tmp_path):
    _hand_example(db)
    far_off = 1000.0  # would move every mean if any of these rows were scored
    with db.begin() as conn:
        # p3: legacy has no APY or TVL forecast on 08-26 and no row at all on 08-27; spark has both.
        _actuals(conn, [("p3", D(2026, 8, d), 7.0, 700.0) for d in (25, 26, 27)])
        _forecasts(
            conn, SPARK, [(("p3", D(2026, 8, 26)), far_off, far_off), (("p3", D(2026, 8, 27)), far_off, far_off)]
        )
        _forecasts(conn, LEGACY, [(("p3", D(2026, 8, 26)), None, None)])
        # p4 is new on 08-27: no actual on the as-of date, so no naive forecast.
        _actuals(conn, [("p4", D(2026, 8, 27), 3.0, 300.0)])
        for model in (SPARK, LEGACY):
            _forecasts(conn, model, [(("p4", D(2026, 8, 27)), far_off, far_off)])
        # p5 has forecasts but no actual yet: not a candidate row, so not dropped either.
        for model in (SPARK, LEGACY):
            _forecasts(conn, model, [(("p5", D(2026, 8, 27)), far_off, far_off)])

    _, metrics, report = _run(db_config, tmp_path)

    # The same numbers as the hand example; 3 rows (p3 x 2, p4 x 1) dropped from both targets.
    _assert_metrics(metrics, {**EXPECTED, "forecast_rows_dropped_apy": 3.0, "forecast_rows_dropped_tvl": 3.0})
    # Counts per target: scored, dropped, quarantined, missing spark, missing legacy (p3 x 2), missing naive (p4).
    assert "<tr><td>APY</td><td>4</td><td>3</td><td>0</td><td>0</td><td>2</td><td>1</td></tr>" in report


def test_each_target_is_filtered_on_its_own_columns(db, db_config, tmp_path):
    _hand_example(db)
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE pool_forecast_history SET forecasted_tvl = NULL "
                "WHERE model = :m AND pool_id = 'p1' AND forecast_date = '2026-08-27'"
            ),
            {"m": LEGACY},
        )

    _, metrics, _ = _run(db_config, tmp_path)

    # APY keeps its 4 rows; TVL loses (p1, 08-27) for all three models. Remaining TVL rows: p1 08-26, p2 08-26,
    # p2 08-27, actuals 110 + 1000 + 1200 = 2310; errors spark (10, 50, -100), legacy (0, -20, 40),
    # naive (-10, 0, -200).
    tvl = {
        "forecast_spark_tvl_mae": (10 + 50 + 100) / 3,
        "forecast_spark_tvl_rmse": math.sqrt((100 + 2500 + 10000) / 3),
        "forecast_spark_tvl_wape": 160 / 2310,
        "forecast_legacy_tvl_mae": (0 + 20 + 40) / 3,
        "forecast_legacy_tvl_rmse": math.sqrt((0 + 400 + 1600) / 3),
        "forecast_legacy_tvl_wape": 60 / 2310,
        "forecast_naive_tvl_mae": (10 + 0 + 200) / 3,
        "forecast_naive_tvl_rmse": math.sqrt((100 + 0 + 40000) / 3),
        "forecast_naive_tvl_wape": 210 / 2310,
        "forecast_rows_evaluated_tvl": 3.0,
        "forecast_rows_dropped_tvl": 1.0,
    }
    _assert_metrics(metrics, {**EXPECTED, **tvl})


def test_other_runs_models_and_dates_are_ignored(db, db_config, tmp_path):
    _hand_example(db)
    perfect = [
        (key, apy, tvl)
        for key, (apy, tvl) in zip(KEYS, [(4.0, 110.0), (6.0, 90.0), (12.0, 1000.0), (11.0, 1200.0)], strict=True)
    ]
    with db.begin() as conn:
        _forecasts(conn, SPARK, perfect, run_id="r0")
        _forecasts(conn, LEGACY, perfect, run_id="r0")
        _forecasts(conn, "spark_lgbm_v0", perfect)
        # A day outside the holdout, with an actual: scored only if the dates leaked.
        _actuals(conn, [("p1", D(2026, 8, 28), 1.0, 1.0)])
        _forecasts(conn, SPARK, [(("p1", D(2026, 8, 28)), 99.0, 99.0)])
        _forecasts(conn, LEGACY, [(("p1", D(2026, 8, 28)), 99.0, 99.0)])
        # A two-day-ahead forecast of 08-27 (as of 08-25) under another run: a different as-of is not next-day.
        conn.execute(
            text(
                "INSERT INTO pool_forecast_history (pool_id, forecast_date, model, run_id, as_of, forecasted_apy) "
                "VALUES ('p2', '2026-08-27', :m, 'r2', '2026-08-25', 11.0)"
            ),
            {"m": SPARK},
        )

    _, metrics, _ = _run(db_config, tmp_path)
    _assert_metrics(metrics, EXPECTED)

    # Picking the other model by name scores its perfect forecasts.
    _, metrics, _ = _run(db_config, tmp_path, spark_model="spark_lgbm_v0")
    assert (metrics["forecast_spark_apy_mae"], metrics["forecast_spark_tvl_rmse"]) == (0.0, 0.0)


def test_a_forecast_made_from_other_as_of_data_is_not_next_day(db, db_config, tmp_path):
    _hand_example(db)
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE pool_forecast_history SET as_of = '2026-08-24' "
                "WHERE model = :m AND pool_id = 'p2' AND forecast_date = '2026-08-26'"
            ),
            {"m": SPARK},
        )

    _, metrics, _ = _run(db_config, tmp_path)

    assert (metrics["forecast_rows_evaluated_apy"], metrics["forecast_rows_dropped_apy"]) == (3.0, 1.0)
    # Without (p2, 08-26) spark's APY errors are (1, -1, 0): MAE 2/3.
    assert metrics["forecast_spark_apy_mae"] == pytest.approx(2 / 3, rel=1e-12)


def test_a_model_that_fails_the_gate_hands_tomorrow_to_naive(db, db_config, tmp_path):
    _hand_example(db)

    summary, metrics, report = _run(db_config, tmp_path, gate_enabled=True, gate_tolerance=FAILING_TOLERANCE)

    assert summary.promoted_model == "naive"  # a lost comparison is not a failure: persistence is promoted
    _assert_metrics(metrics, {**EXPECTED, "forecast_promoted_naive": 1.0})
    assert (
        "<h1>Forecast evaluation: promoted naive: the model lost, tomorrow&#x27;s forecast is persistence</h1>"
        in report
    )
    assert "forecast gate: promoting naive: APY MAE spark 1, legacy 0.75, naive 1.5" in report
    assert "(1 + 0.25) = 0.9375" in report and '<img src="data:image/png;base64,' in report


def test_the_model_is_promoted_when_it_passes_and_unjudged_when_the_gate_is_off(db, db_config, tmp_path):
    _hand_example(db)

    summary, metrics, report = _run(db_config, tmp_path, gate_enabled=True, gate_tolerance=PASSING_TOLERANCE)
    assert (metrics["forecast_gate_pass"], metrics["forecast_promoted_naive"]) == (1.0, 0.0)
    assert summary.spark_apy_mae == pytest.approx(1.0, rel=1e-12) and summary.promoted_model == SPARK
    assert f"<h1>Forecast evaluation: promoted {SPARK}</h1>" in report

    # Disabled, a failing comparison is still logged as such, and the model is promoted.
    summary, metrics, report = _run(db_config, tmp_path, gate_tolerance=FAILING_TOLERANCE)
    assert metrics["forecast_gate_pass"] == 0.0 and summary.promoted_model == SPARK
    assert f"<h1>Forecast evaluation: promoted {SPARK} (gate disabled)</h1>" in report


def test_staged_naive_forecasts_are_used_and_quarantined_actuals_are_not_scored(db, db_config, tmp_path):
    _hand_example(db)
    with db.begin() as conn:
        # The job's staged persistence (the clean value of the as-of day): 4.5 for p1 on 08-25 instead of 5.
        naive = [(key, apy, 0.0) for key, apy in zip(KEYS, [4.5, 4.0, 10.0, 12.0], strict=True)]
        _forecasts(conn, "naive", naive)
        conn.execute(
            text(
                "CREATE TABLE stg_quarantine_r1 (pool_id text, date date, column_name text, value double precision, "
                "reference double precision, reason text, run_id text);"
                "INSERT INTO stg_quarantine_r1 VALUES ('p2', '2026-08-26', 'actual_apy', 12.0, 1.0, 'apy_jump', 'r1')"
            )
        )

    _, metrics, report = _run(db_config, tmp_path, quarantine_table="stg_quarantine_r1")

    # Scored APY rows: p1 08-26, p1 08-27, p2 08-27. Naive errors 0.5, 2, 1; spark errors 1, 1, 0.
    assert (metrics["forecast_rows_evaluated_apy"], metrics["forecast_rows_quarantined_apy"]) == (3.0, 1.0)
    assert metrics["forecast_naive_apy_mae"] == pytest.approx(3.5 / 3, rel=1e-12)
    assert metrics["forecast_spark_apy_mae"] == pytest.approx(2 / 3, rel=1e-12)
    assert metrics["forecast_rows_evaluated_tvl"] == 4.0  # the quarantine flagged the APY only
    assert "<th>actual quarantined</th>" in report


def test_equal_maes_pass_the_gate_with_zero_tolerance(db, db_config, tmp_path):
    with db.begin() as conn:
        _actuals(conn, [("p1", D(2026, 8, 25), 5.0, 100.0), ("p1", D(2026, 8, 26), 4.0, 110.0)])
        # Errors of the same size on either side: |5 - 4| = |3 - 4| = 1.
        _forecasts(conn, SPARK, [(("p1", D(2026, 8, 26)), 5.0, 110.0)])
        _forecasts(conn, LEGACY, [(("p1", D(2026, 8, 26)), 3.0, 110.0)])

    summary, metrics, _ = _run(db_config, tmp_path, holdout_as_of="2026-08-25", gate_enabled=True, gate_tolerance=0.0)

    assert (summary.spark_apy_mae, summary.legacy_apy_mae, metrics["forecast_gate_pass"]) == (1.0, 1.0, 1.0)


def test_an_empty_evaluation_set_raises_after_a_report_that_says_so(db, db_config, tmp_path):
    with db.begin() as conn:
        _actuals(conn, ACTUALS)
        # Only the legacy model forecast, and only 08-26.
        _forecasts(conn, LEGACY, FORECASTS[LEGACY][:1])
    metrics, report = _outputs(tmp_path)

    with pytest.raises(RuntimeError) as failure:
        evaluate_forecasts.python_func(
            database_url=db_config.url, run_id="r1", holdout_as_of=HOLDOUT, forecast_metrics=metrics, report=report
        )

    message = str(failure.value)
    assert message.startswith("nothing to evaluate for run r1: no APY or TVL row")
    assert f"APY {SPARK} on as-of 2026-08-25, 2026-08-26" in message
    assert f"APY {LEGACY} on as-of 2026-08-26" in message
    assert "naive" not in message.split("; ", 1)[1]  # the actuals exist, so the naive forecast does too
    assert metrics.metadata["forecast_rows_evaluated_apy"] == 0.0
    assert "forecast_gate_pass" not in metrics.metadata
    written = Path(report.path).read_text()
    assert "<h1>Forecast evaluation: nothing to evaluate</h1>" in written
    assert "nothing to evaluate for run r1" in written


def test_the_report_embeds_charts_names_the_models_and_escapes_text(db, db_config, tmp_path):
    _hand_example(db)
    with db.begin() as conn:
        conn.execute(text("UPDATE pool_forecast_history SET model = 'spark<b>' WHERE model = :m"), {"m": SPARK})
        # p0 has a single scored row: it sorts first by id but has fewer rows than p1 and p2.
        _actuals(conn, [("p0", D(2026, 8, 26), 1.0, 10.0), ("p0", D(2026, 8, 27), 1.0, 10.0)])
        _forecasts(conn, "spark<b>", [(("p0", D(2026, 8, 27)), 1.0, 10.0)])
        _forecasts(conn, LEGACY, [(("p0", D(2026, 8, 27)), 1.0, 10.0)])

    _, _, report = _run(db_config, tmp_path, spark_model="spark<b>", sample_pools=2)

    assert "spark&lt;b&gt;" in report and "spark<b>" not in report
    assert LEGACY in report and "naive" in report
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert len(images) == 3  # the bar chart and two pools
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    sampled = re.findall(r"<h3>[^<]* <code>(\w+)</code></h3>", report)  # pool name (or id), then id
    assert sampled == ["p1", "p2"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"forecast_table": "pool_forecast_history; DROP TABLE pools"}, "identifier"),
        ({"quarantine_table": "Quarantine"}, "identifier"),
        ({"metrics_table": "Pool_Daily_Metrics"}, "identifier"),
        ({"run_id": " "}, "run_id"),
        ({"holdout_as_of": ""}, "holdout_as_of is empty"),
        ({"holdout_as_of": "2026-08-25,2026-13-01"}, "ISO date"),
        ({"holdout_as_of": "2026-08-25,"}, "ISO date"),
        ({"legacy_model": SPARK}, "nothing to compare"),
        ({"spark_model": ""}, "non-empty"),
        ({"gate_tolerance": -0.01}, "gate_tolerance"),
        ({"gate_tolerance": math.inf}, "gate_tolerance"),
        ({"sample_pools": -1}, "sample_pools"),
    ],
)
def test_parameters_are_validated_before_touching_the_database(db_config, tmp_path, override, match):
    with pytest.raises(ValueError, match=match):
        _run(db_config, tmp_path, **override)


def test_a_missing_table_is_a_clear_error(db, db_config, tmp_path):
    with pytest.raises(RuntimeError, match="table forecasts_elsewhere does not exist"):
        _run(db_config, tmp_path, forecast_table="forecasts_elsewhere")


def test_the_component_compiles_with_its_outputs(tmp_path):
    path = tmp_path / "evaluate_forecasts.yaml"
    compiler.Compiler().compile(evaluate_forecasts, str(path))

    spec = yaml.safe_load(path.read_text())
    outputs = spec["components"]["comp-evaluate-forecasts"]["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"forecast_metrics", "report"}
    assert set(outputs["parameters"]) == {"spark_apy_mae", "legacy_apy_mae", "naive_apy_mae", "promoted_model"}
