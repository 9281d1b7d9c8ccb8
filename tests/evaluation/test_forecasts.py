"""Forecast scoring on in-memory panels (no database): hand-computed MAE/RMSE/WAPE, fair rows, the gate."""

from __future__ import annotations

import datetime as dt
import math
import sys

import pandas as pd
import pytest

from evaluation import forecasts
from evaluation.forecast_report import render_html, sample_pools

D = dt.date
AS_OF = [D(2026, 8, 25), D(2026, 8, 26)]
# (pool, as_of, forecast_date), then actual, spark, legacy, naive for APY and TVL. Errors against the actuals
# (APY 4, 6, 12, 11 and TVL 110, 90, 1000, 1200; sums of |actual| 33 and 2400):
#   spark  APY (1, -1, 2, 0)       TVL (10, -10, 50, -100)
#   legacy APY (0.5, -0.5, 1, -1)  TVL (0, 30, -20, 40)
#   naive  APY (1, -2, -2, 1)      TVL (-10, 20, 0, -200)
ROWS = [
    ("p1", D(2026, 8, 25), D(2026, 8, 26), 4.0, 110.0, 5.0, 120.0, 4.5, 110.0, 5.0, 100.0),
    ("p1", D(2026, 8, 26), D(2026, 8, 27), 6.0, 90.0, 5.0, 80.0, 5.5, 120.0, 4.0, 110.0),
    ("p2", D(2026, 8, 25), D(2026, 8, 26), 12.0, 1000.0, 14.0, 1050.0, 13.0, 980.0, 10.0, 1000.0),
    ("p2", D(2026, 8, 26), D(2026, 8, 27), 11.0, 1200.0, 11.0, 1100.0, 10.0, 1240.0, 12.0, 1000.0),
]
COLUMNS = ["pool_id", "as_of", "forecast_date"] + [
    f"{s}_{t}" for s in ("actual", "spark", "legacy", "naive") for t in ("apy", "tvl")
]
EXPECTED = {
    "forecast_holdout_dates": 2.0,
    "forecast_rows_evaluated_apy": 4.0,
    "forecast_rows_dropped_apy": 0.0,
    "forecast_rows_evaluated_tvl": 4.0,
    "forecast_rows_dropped_tvl": 0.0,
    "forecast_spark_apy_mae": 1.0,
    "forecast_spark_apy_rmse": math.sqrt(6 / 4),
    "forecast_spark_apy_wape": 4 / 33,
    "forecast_spark_tvl_mae": 42.5,
    "forecast_spark_tvl_rmse": math.sqrt(12700 / 4),
    "forecast_spark_tvl_wape": 170 / 2400,
    "forecast_legacy_apy_mae": 0.75,
    "forecast_legacy_apy_rmse": math.sqrt(2.5 / 4),
    "forecast_legacy_apy_wape": 3 / 33,
    "forecast_legacy_tvl_mae": 22.5,
    "forecast_legacy_tvl_rmse": math.sqrt(2900 / 4),
    "forecast_legacy_tvl_wape": 90 / 2400,
    "forecast_naive_apy_mae": 1.5,
    "forecast_naive_apy_rmse": math.sqrt(10 / 4),
    "forecast_naive_apy_wape": 6 / 33,
    "forecast_naive_tvl_mae": 57.5,
    "forecast_naive_tvl_rmse": math.sqrt(40500 / 4),
    "forecast_naive_tvl_wape": 230 / 2400,
    "forecast_rows_quarantined_apy": 0.0,
    "forecast_rows_quarantined_tvl": 0.0,
    "forecast_gate_pass": 0.0,  # spark 1.0 > legacy 0.75 x 1.05
    "forecast_beats_naive": 1.0,  # spark 1.0 <= naive 1.5
    "forecast_promoted_naive": 1.0,  # it beats naive but not legacy: naive is promoted
}


def _panel(rows=ROWS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def _request(**overrides) -> forecasts.Request:
    return forecasts.Request(**{"run_id": "r1", "as_of_dates": AS_OF, **overrides})


def test_the_hand_example_scores_every_model_and_target():
    evaluation = forecasts.score(_panel(), _request())

    metrics = evaluation.metrics()
    assert metrics == pytest.approx(EXPECTED, rel=1e-12)
    assert evaluation.apy_maes() == pytest.approx({"spark": 1.0, "legacy": 0.75, "naive": 1.5})
    assert evaluation.message() == (
        "forecast gate: promoting naive: APY MAE spark 1, legacy 0.75, naive 1.5; spark is promoted when at most "
        "naive and at most legacy x (1 + 0.05) = 0.7875"
    )
    assert evaluation.promoted_model(gate_enabled=True) == "naive"


def test_a_row_without_every_forecast_is_dropped_for_all_models_of_that_target_only():
    rows = [list(r) for r in ROWS]
    rows[1][5] = float("nan")  # spark APY of p1 08-27
    rows[2][8] = None  # legacy TVL of p2 08-26
    evaluation = forecasts.score(_panel(rows), _request())

    metrics = evaluation.metrics()
    assert (metrics["forecast_rows_evaluated_apy"], metrics["forecast_rows_dropped_apy"]) == (3.0, 1.0)
    assert (metrics["forecast_rows_evaluated_tvl"], metrics["forecast_rows_dropped_tvl"]) == (3.0, 1.0)
    # APY on p1 08-26, p2 08-26, p2 08-27: legacy errors 0.5, 1, 1; naive 1, 2, 1.
    assert metrics["forecast_legacy_apy_mae"] == pytest.approx(2.5 / 3)
    assert metrics["forecast_naive_apy_mae"] == pytest.approx(4 / 3)
    assert metrics["forecast_naive_apy_wape"] == pytest.approx(4 / 27)
    # TVL on p1 08-26, p1 08-27, p2 08-27: spark errors 10, 10, 100.
    assert metrics["forecast_spark_tvl_mae"] == pytest.approx(40.0)
    assert evaluation.missing == {
        ("spark", "apy"): 1,
        ("spark", "tvl"): 0,
        ("legacy", "apy"): 0,
        ("legacy", "tvl"): 1,
        ("naive", "apy"): 0,
        ("naive", "tvl"): 0,
    }


def test_wape_is_left_out_when_the_actuals_sum_to_zero():
    rows = [[*r[:3], 0.0, *r[4:]] for r in ROWS]  # every actual APY is 0
    metrics = forecasts.score(_panel(rows), _request()).metrics()
    assert "forecast_spark_apy_wape" not in metrics and "forecast_spark_apy_mae" in metrics
    assert metrics["forecast_spark_tvl_wape"] == pytest.approx(170 / 2400)


def test_scores_whose_sums_overflow_are_computed_scaled_and_finite():
    """Legacy APY forecasts of 1.7e308 for p1: the sum of the two errors overflows, and so do their squares. Each
    score is computed scaled by the largest error, so it is finite (as Infinity, KFP and Experiments refused it:
    the run used to fail there). Errors 1.7e308, 1.7e308, 1, -1: MAE 8.5e307, RMSE 1.7e308 x sqrt(2 / 4), WAPE
    8.5e307 / (33 / 4)."""
    rows = [list(r) for r in ROWS]
    rows[0][7] = rows[1][7] = 1.7e308  # errors 1.7e308 - 4 and 1.7e308 - 6: both 1.7e308 in float64
    evaluation = forecasts.score(_panel(rows), _request())

    metrics = evaluation.metrics()
    assert [k for k, v in metrics.items() if not math.isfinite(v)] == []
    assert metrics["forecast_legacy_apy_mae"] == pytest.approx(8.5e307, rel=1e-12)
    assert metrics["forecast_legacy_apy_rmse"] == pytest.approx(1.7e308 * math.sqrt(2 / 4), rel=1e-12)
    assert metrics["forecast_legacy_apy_wape"] == pytest.approx(8.5e307 / (33 / 4), rel=1e-12)
    assert metrics["forecast_spark_apy_rmse"] == pytest.approx(math.sqrt(6 / 4), rel=1e-12)  # unchanged
    # Spark 1.0 <= naive 1.5 and <= legacy's limit: the model is promoted.
    assert evaluation.promoted_model(gate_enabled=True) == "spark_lgbm_stacked"
    assert "legacy 8.5e+307" in evaluation.message()
    # The report renders (matplotlib cannot draw a bar near float64's limit) and prints them with 4 digits, not 308.
    page = render_html(evaluation, gate_enabled=True)
    assert "<td>8.5e+307</td><td>1.202e+308</td><td>1.03e+307</td>" in page


def test_wape_of_actuals_whose_sum_overflows_is_the_ratio_of_the_means():
    """Actual APYs of 1e308 for p1 (their sum overflows, and errors of 1e308 - 0.9e308 are finite): legacy's WAPE is
    (1e307 + 1e307 + 1 + 1) / (1e308 + 1e308 + 12 + 11) = 0.1, not 0 (a finite sum over an infinite one)."""
    rows = [list(r) for r in ROWS]
    rows[0][3] = rows[1][3] = 1e308
    rows[0][7] = rows[1][7] = 0.9e308
    metrics = forecasts.score(_panel(rows), _request()).metrics()
    assert metrics["forecast_legacy_apy_wape"] == pytest.approx(0.1, rel=1e-12)
    assert metrics["forecast_legacy_apy_mae"] == pytest.approx((1e307 + 1e307 + 1 + 1) / 4, rel=1e-12)


def test_an_error_beyond_float64s_range_is_left_out_of_the_metrics_and_of_the_outputs():
    """A legacy APY forecast of 1.7e308 for an actual of -1.7e308, both finite: the error, 3.4e308, is Infinity in
    float64, and so are the legacy APY scores. The metrics leave them out (KFP and Experiments refuse Infinity),
    and the component's MAE output, a JSON number that Vertex AI cannot read as Infinity, is the largest float."""
    rows = [list(r) for r in ROWS]
    rows[0][3], rows[0][7] = -1.7e308, 1.7e308
    evaluation = forecasts.score(_panel(rows), _request())

    assert evaluation.scores["legacy", "apy"] == {"mae": math.inf, "rmse": math.inf, "wape": math.inf}
    metrics = evaluation.metrics()
    assert [k for k in metrics if k.startswith("forecast_legacy_apy_")] == []
    assert [k for k, v in metrics.items() if not math.isfinite(v)] == []
    outputs = evaluation.output_apy_maes()
    assert outputs["legacy"] == sys.float_info.max == 1.7976931348623157e308
    assert outputs["spark"] == evaluation.apy_maes()["spark"] == pytest.approx((1.7e308 + 1 + 2 + 0) / 4, rel=1e-12)
    assert "legacy inf" in evaluation.message()


def test_the_model_is_promoted_when_it_beats_naive_within_the_legacy_tolerance():
    passing = forecasts.score(_panel(), _request(gate_tolerance=0.5))  # 0.75 x 1.5 = 1.125 >= 1, naive 1.5
    assert passing.gate_pass and passing.beats_naive
    assert passing.promoted_model(gate_enabled=True) == "spark_lgbm_stacked"
    assert passing.metrics()["forecast_promoted_naive"] == 0.0
    failing = forecasts.score(_panel(), _request(gate_tolerance=0.25))  # 0.75 x 1.25 = 0.9375 < 1
    assert not failing.gate_pass and failing.promoted_model(gate_enabled=True) == "naive"
    # Disabled, the gate promotes the model unjudged; a lost comparison never fails the run.
    assert failing.promoted_model(gate_enabled=False) == "spark_lgbm_stacked"
    assert failing.message(gate_enabled=False).startswith("forecast gate: gate disabled, promoting spark_lgbm_stacked")
    failing.check()


def test_a_model_that_loses_to_naive_hands_tomorrow_to_naive():
    # Spark now errs by 2 on every APY row (MAE 2) against naive's 1.5; legacy stays 0.75.
    rows = [[*r[:5], r[3] + 2.0, *r[6:]] for r in ROWS]
    evaluation = forecasts.score(_panel(rows), _request(gate_tolerance=10.0))
    assert evaluation.gate_pass and not evaluation.beats_naive
    assert evaluation.promoted_model(gate_enabled=True) == "naive"
    assert evaluation.metrics()["forecast_promoted_naive"] == 1.0
    title = "<title>Forecast evaluation: promoted naive: the model lost, tomorrow&#x27;s forecast is persistence"
    assert title in render_html(evaluation, gate_enabled=True)


def test_a_quarantined_actual_is_counted_and_not_scored():
    panel = _panel().assign(quarantined_apy=[False, False, True, False], quarantined_tvl=False)
    panel.loc[2, "actual_apy"] = None  # as read_panel returns it: the quarantined actual is NULL
    evaluation = forecasts.score(panel, _request())
    metrics = evaluation.metrics()
    assert (metrics["forecast_rows_evaluated_apy"], metrics["forecast_rows_quarantined_apy"]) == (3.0, 1.0)
    assert metrics["forecast_rows_dropped_apy"] == 0.0  # no actual: not a dropped row
    assert metrics["forecast_spark_apy_mae"] == pytest.approx(2.0 / 3)  # errors 1, 1, 0


def test_nothing_to_evaluate_says_which_source_was_missing_and_always_raises():
    rows = [[*r[:5], None, *r[6:]] for r in ROWS]  # no spark APY at all
    evaluation = forecasts.score(_panel(rows), _request())

    assert evaluation.empty_targets == ["apy"]
    assert evaluation.metrics() == {
        "forecast_holdout_dates": 2.0,
        "forecast_rows_evaluated_apy": 0.0,
        "forecast_rows_dropped_apy": 4.0,
        "forecast_rows_quarantined_apy": 0.0,
        "forecast_rows_evaluated_tvl": 4.0,
        "forecast_rows_dropped_tvl": 0.0,
        "forecast_rows_quarantined_tvl": 0.0,
    }
    assert evaluation.message().endswith("no rows for APY spark_lgbm_stacked on as-of 2026-08-25, 2026-08-26")
    with pytest.raises(RuntimeError, match="nothing to evaluate for run r1: no APY row"):
        evaluation.check()
    assert "<title>Forecast evaluation: nothing to evaluate</title>" in render_html(evaluation, gate_enabled=False)


def test_a_duplicate_key_is_refused():
    with pytest.raises(RuntimeError, match="1 duplicate \\(pool_id, date\\) keys"):
        forecasts.score(_panel([*ROWS, ROWS[0]]), _request())


def test_the_report_samples_the_pools_with_most_scored_rows_ties_by_id():
    rows = [list(r) for r in ROWS]
    rows[0][5] = None  # p1 keeps one scored APY row, p2 two
    evaluation = forecasts.score(_panel(rows), _request(sample_pools=1))
    assert sample_pools(evaluation) == ["p2"]
    assert sample_pools(forecasts.score(_panel(), _request(sample_pools=5))) == ["p1", "p2"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"run_id": " "}, "run_id is empty"),
        ({"spark_model": "m", "legacy_model": "m"}, "nothing to compare"),
        ({"naive_model": "spark_lgbm_stacked"}, "nothing to compare"),
        ({"forecast_table": "History"}, "not a plain lower-case SQL identifier"),
        ({"quarantine_table": "q-1"}, "not a plain lower-case SQL identifier"),
        ({"gate_tolerance": float("nan")}, "gate_tolerance must be a finite number"),
        ({"sample_pools": -1}, "sample_pools must be >= 0"),
        ({"as_of_dates": []}, "holdout_as_of is empty"),
    ],
)
def test_requests_are_validated(overrides, match):
    with pytest.raises(ValueError, match=match):
        _request(**overrides)


def test_holdout_dates_are_parsed_sorted_and_distinct():
    assert forecasts.parse_holdout_dates("2026-08-26, 2026-08-25,2026-08-26") == AS_OF
    with pytest.raises(ValueError, match=r"non-ISO date .*'26\.08\.2026'"):
        forecasts.parse_holdout_dates("2026-08-25,26.08.2026")
    with pytest.raises(ValueError, match="holdout_as_of is empty"):
        forecasts.parse_holdout_dates(" ")


def test_the_report_gives_units_thousands_separators_and_pool_names():
    big = [(*r[:4], r[4] * 10_000, *r[5:6], r[6] * 10_000, r[7], r[8] * 10_000, r[9], r[10] * 10_000) for r in ROWS]
    panel = _panel(big)
    panel["pool_name"] = ["curve USDC-USDT (Ethereum)"] * 2 + [None] * 2  # p2 is missing from pools
    page = render_html(forecasts.score(panel, _request()), gate_enabled=True)

    assert "<th>APY MAE (percentage points)</th>" in page and "<th>TVL MAE (USD)</th>" in page
    assert "<th>TVL WAPE</th>" in page
    # spark: APY MAE 1.0, TVL MAE 42.5 x 10,000 = 425,000, TVL WAPE 170/2400 = 7.08 %
    assert "<td>1.000</td>" in page and "<td>425,000</td>" in page and "<td>7.08%</td>" in page
    assert "<h3>curve USDC-USDT (Ethereum) <code>p1</code></h3>" in page
    assert "<h3>p2 <code>p2</code></h3>" in page  # no name: the id
