"""Backtest of the next-day forecasters: the Spark model, the legacy model and a naive persistence forecast,
scored with MAE, RMSE and WAPE on the same rows, and the gate that chooses what is promoted: the Spark model
when it is no worse than naive and than legacy (within a tolerance), else naive persistence (``model = naive``).

:func:`read_panel` reads one row per (pool, holdout day) from PostgreSQL; :func:`score` is pure pandas/numpy.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spark_src.common.config import DbConfig
from spark_src.common.sql import check_identifiers, connect, table_exists

MODELS = ("spark", "legacy", "naive")
TARGETS = ("apy", "tvl")
SOURCES = ("actual", *MODELS)
VALUE_COLUMNS = [f"{source}_{t}" for source in SOURCES for t in TARGETS]
MEASURES = ("mae", "rmse", "wape")


@dataclass(frozen=True)
class Request:
    """What to evaluate; validated on construction, before anything touches the database."""

    run_id: str
    as_of_dates: list[dt.date]
    spark_model: str = "spark_lgbm_stacked"
    legacy_model: str = "legacy_rf_lgbm"
    naive_model: str = "naive"
    # Where the run's forecasts are: its staging tables in the pipeline (before promotion), or the history.
    forecast_table: str = "pool_forecast_history"  # the Spark model's and the naive forecasts
    legacy_table: str = "pool_forecast_history"
    quarantine_table: str = ""  # the run's quarantined observations: their actuals are not scored
    metrics_table: str = "pool_daily_metrics"
    gate_tolerance: float = 0.05
    sample_pools: int = 4  # how many pools the report plots

    def __post_init__(self) -> None:
        check_identifiers(self.forecast_table, self.legacy_table, self.metrics_table)
        if self.quarantine_table:
            check_identifiers(self.quarantine_table)
        if not self.run_id.strip():
            raise ValueError("run_id is empty: the forecasts to evaluate are those of one run")
        if not self.spark_model.strip() or not self.legacy_model.strip():
            raise ValueError("spark_model and legacy_model must be non-empty model names")
        if len({self.spark_model, self.legacy_model, self.naive_model}) < 3:
            raise ValueError("spark_model, legacy_model and naive_model must differ: nothing to compare otherwise")
        if not (math.isfinite(self.gate_tolerance) and self.gate_tolerance >= 0):
            raise ValueError(f"gate_tolerance must be a finite number >= 0, got {self.gate_tolerance!r}")
        if self.sample_pools < 0:
            raise ValueError(f"sample_pools must be >= 0, got {self.sample_pools}")
        if not self.as_of_dates:
            raise ValueError("holdout_as_of is empty: give comma-separated ISO as-of dates")

    @property
    def model_names(self) -> dict[str, str]:
        return {"spark": self.spark_model, "legacy": self.legacy_model, "naive": "naive (persistence)"}


def parse_holdout_dates(holdout_as_of: str) -> list[dt.date]:
    """``2026-08-25,2026-08-26`` -> the sorted distinct dates; a clear error for an empty or non-ISO value."""
    if not holdout_as_of.strip():
        raise ValueError("holdout_as_of is empty: give comma-separated ISO as-of dates")
    dates = set()
    for value in holdout_as_of.split(","):
        try:
            dates.add(dt.date.fromisoformat(value.strip()))
        except ValueError:
            raise ValueError(f"holdout_as_of holds a non-ISO date (YYYY-MM-DD): {value.strip()!r}") from None
    return sorted(dates)


def panel_sql(request: Request) -> str:
    """One row per (pool, as-of) with an actual on the forecast date or a forecast of the run.

    The coverage table thus also counts forecasts that have no actual. The as-of must match too: a forecast of
    d + 1 made from older data is not the next-day forecast the naive one is compared with. The naive forecast
    is the run's staged persistence forecast (the pool's clean value of d), or, for a run that staged none,
    the actual of d. An actual the run quarantined is not scored (``quarantined_*`` is true and the actual
    NULL). The tables are keyed (pool, day) and (pool, day, model, run), so the left joins add no rows;
    :func:`score`'s duplicate check guards other tables.
    """
    r = request
    check_identifiers(r.forecast_table, r.legacy_table, r.metrics_table)

    def forecasts(alias: str, table: str, model: str) -> str:
        return (
            f'LEFT JOIN "{table}" AS {alias} ON {alias}.pool_id = k.pool_id AND {alias}.forecast_date = '
            f"k.forecast_date AND {alias}.as_of = k.as_of AND {alias}.run_id = :run_id AND {alias}.model = :{model}"
        )

    def quarantined(column: str) -> str:
        if not r.quarantine_table:
            return "false"
        check_identifiers(r.quarantine_table)
        return (
            f'EXISTS (SELECT 1 FROM "{r.quarantine_table}" AS q WHERE q.pool_id = k.pool_id '
            f"AND q.date = k.forecast_date AND q.column_name = '{column}')"
        )

    return f"""
        WITH holdout AS (
            SELECT d AS as_of, d + 1 AS forecast_date FROM unnest(CAST(:as_of AS date[])) AS d
        ), keys AS (
            SELECT h.as_of, h.forecast_date, m.pool_id
            FROM holdout AS h JOIN "{r.metrics_table}" AS m ON m.date = h.forecast_date
            UNION
            SELECT h.as_of, h.forecast_date, f.pool_id
            FROM holdout AS h JOIN "{r.forecast_table}" AS f ON f.forecast_date = h.forecast_date AND f.as_of = h.as_of
            WHERE f.run_id = :run_id AND f.model = :spark_model
            UNION
            SELECT h.as_of, h.forecast_date, f.pool_id
            FROM holdout AS h JOIN "{r.legacy_table}" AS f ON f.forecast_date = h.forecast_date AND f.as_of = h.as_of
            WHERE f.run_id = :run_id AND f.model = :legacy_model
        ), flagged AS (
            SELECT k.*, {quarantined("actual_apy")} AS quarantined_apy, {quarantined("actual_tvl")} AS quarantined_tvl
            FROM keys AS k
        )
        SELECT k.pool_id, k.as_of, k.forecast_date, k.quarantined_apy, k.quarantined_tvl,
               p.project || ' ' || p.symbol || ' (' || p.chain || ')' AS pool_name,
               CASE WHEN NOT k.quarantined_apy THEN CAST(a.actual_apy AS double precision) END AS actual_apy,
               CASE WHEN NOT k.quarantined_tvl THEN CAST(a.actual_tvl AS double precision) END AS actual_tvl,
               CAST(s.forecasted_apy AS double precision) AS spark_apy,
               CAST(s.forecasted_tvl AS double precision) AS spark_tvl,
               CAST(l.forecasted_apy AS double precision) AS legacy_apy,
               CAST(l.forecasted_tvl AS double precision) AS legacy_tvl,
               CAST(CASE WHEN n.pool_id IS NOT NULL THEN n.forecasted_apy ELSE m.actual_apy END AS double precision)
                   AS naive_apy,
               CAST(CASE WHEN n.pool_id IS NOT NULL THEN n.forecasted_tvl ELSE m.actual_tvl END AS double precision)
                   AS naive_tvl
        FROM flagged AS k
        LEFT JOIN pools AS p ON p.pool_id = k.pool_id
        LEFT JOIN "{r.metrics_table}" AS a ON a.pool_id = k.pool_id AND a.date = k.forecast_date
        LEFT JOIN "{r.metrics_table}" AS m ON m.pool_id = k.pool_id AND m.date = k.as_of
        {forecasts("s", r.forecast_table, "spark_model")}
        {forecasts("n", r.forecast_table, "naive_model")}
        {forecasts("l", r.legacy_table, "legacy_model")}
        ORDER BY k.pool_id, k.forecast_date
    """


def read_panel(db: DbConfig, request: Request) -> pd.DataFrame:
    """The panel of :func:`panel_sql` for the request (columns pool_id, as_of, forecast_date, pool_name (NULL
    for a pool missing from ``pools``), VALUE_COLUMNS)."""
    from sqlalchemy import text

    params = {
        "as_of": request.as_of_dates,
        "run_id": request.run_id,
        "spark_model": request.spark_model,
        "legacy_model": request.legacy_model,
        "naive_model": request.naive_model,
    }
    tables = [request.forecast_table, request.legacy_table, request.metrics_table, request.quarantine_table]
    with connect(db) as conn:
        for table in filter(None, tables):
            if not table_exists(conn, table):
                raise RuntimeError(f"table {table} does not exist")
        result = conn.execute(text(panel_sql(request)), params)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


@dataclass(frozen=True)
class Evaluation:
    """The scores of one backtest. ``scored[t]`` marks the panel rows where the actual and all three forecasts
    of target ``t`` are finite: every model is scored on those rows and no others."""

    request: Request
    panel: pd.DataFrame
    scored: dict[str, np.ndarray]
    rows: dict[str, int]  # scored rows per target
    dropped: dict[str, int]  # rows with an actual but not every forecast, per target
    missing: dict[tuple[str, str], int]  # (model, target) -> rows with an actual but no forecast of the model
    quarantined: dict[str, int]  # rows whose actual the run quarantined (not scored), per target
    coverage: list[dict]  # per as-of date and target: rows of each source, and scored rows
    scores: dict[tuple[str, str], dict[str, float | None]]  # (model, target) -> mae, rmse, wape (None: undefined)

    @property
    def empty_targets(self) -> list[str]:
        return [t for t in TARGETS if not self.rows[t]]

    @property
    def gate_limit(self) -> float:
        return self.scores["legacy", "apy"]["mae"] * (1 + self.request.gate_tolerance)

    @property
    def gate_pass(self) -> bool:
        """The Spark model is no worse than legacy (within the tolerance) on APY."""
        return self.scores["spark", "apy"]["mae"] <= self.gate_limit

    @property
    def beats_naive(self) -> bool:
        """The Spark model is no worse than naive persistence on APY."""
        return self.scores["spark", "apy"]["mae"] <= self.scores["naive", "apy"]["mae"]

    def promoted(self, gate_enabled: bool) -> str:
        """What the run promotes: "spark" when the gate is off or the model beats naive and passes the legacy
        check, else "naive" (the model lost: tomorrow's forecast is persistence, labelled ``naive``)."""
        if not gate_enabled or self.empty_targets:
            return "spark"
        return "spark" if self.beats_naive and self.gate_pass else "naive"

    def promoted_model(self, gate_enabled: bool) -> str:
        """The ``model`` name of :meth:`promoted` (as staged by the forecast job)."""
        chosen = self.promoted(gate_enabled)
        return self.request.spark_model if chosen == "spark" else self.request.naive_model

    def apy_maes(self) -> dict[str, float]:
        return {m: self.scores[m, "apy"]["mae"] for m in MODELS}

    def output_apy_maes(self) -> dict[str, float]:
        """:meth:`apy_maes` as a component's output parameters. A parameter is a JSON number, which cannot be
        Infinity: kfp writes it bare with json.dumps, which protobuf's JSON parser on the backend refuses
        (kubeflow/pipelines#10208). An MAE that is still infinite (an error beyond float64's range) is given as
        the largest float, 1.797e308; the metrics leave it out."""
        return {m: max(-sys.float_info.max, min(sys.float_info.max, v)) for m, v in self.apy_maes().items()}

    def metrics(self, gate_enabled: bool = True) -> dict[str, float]:
        """The ``forecast_*`` metrics: counts always, scores and the gate's verdicts when nothing is empty."""
        found = {"forecast_holdout_dates": float(len(self.request.as_of_dates))}
        for t in TARGETS:
            found[f"forecast_rows_evaluated_{t}"] = float(self.rows[t])
            found[f"forecast_rows_dropped_{t}"] = float(self.dropped[t])
            found[f"forecast_rows_quarantined_{t}"] = float(self.quarantined[t])
        if self.empty_targets:
            return found
        for m in MODELS:
            for t in TARGETS:
                # A metric must be finite (KFP and Experiments refuse Infinity): a score that overflowed (an error
                # beyond float64's range, see _errors) is left out here; the message and the report show it.
                scores = self.scores[m, t].items()
                found.update({f"forecast_{m}_{t}_{k}": v for k, v in scores if v is not None and math.isfinite(v)})
        found["forecast_gate_pass"] = 1.0 if self.gate_pass else 0.0
        found["forecast_beats_naive"] = 1.0 if self.beats_naive else 0.0
        found["forecast_promoted_naive"] = 1.0 if self.promoted(gate_enabled) == "naive" else 0.0
        return found

    def message(self, gate_enabled: bool = True) -> str:
        """One line: what is promoted and why (the APY MAEs), or why there is nothing to evaluate."""
        request, dates = self.request, ", ".join(d.isoformat() for d in self.request.as_of_dates)
        if self.empty_targets:
            return (
                f"nothing to evaluate for run {request.run_id}: no {' or '.join(t.upper() for t in self.empty_targets)}"
                f" row has an actual and forecasts from {request.spark_model}, {request.legacy_model} and naive "
                f"(as-of {dates}); {self._empty_reason()}"
            )
        maes = self.apy_maes()
        if not gate_enabled:
            verdict = f"gate disabled, promoting {request.spark_model}"
        else:
            verdict = f"promoting {self.promoted_model(gate_enabled)}"
        return (
            f"forecast gate: {verdict}: APY MAE spark {maes['spark']:.6g}, legacy {maes['legacy']:.6g}, naive "
            f"{maes['naive']:.6g}; spark is promoted when at most naive and at most legacy x (1 + "
            f"{request.gate_tolerance:g}) = {self.gate_limit:.6g}"
        )

    def _empty_reason(self) -> str:
        """Which sources had no row on which date, per empty target: the usual causes of an empty set."""
        gaps = []
        for t in self.empty_targets:
            for source in SOURCES:
                days = [c["as_of"].isoformat() for c in self.coverage if c["target"] == t and not c[source]]
                if days:
                    label = "actuals" if source == "actual" else self.request.model_names[source]
                    gaps.append(f"{t.upper()} {label} on as-of {', '.join(days)}")
        if gaps:
            return "no rows for " + "; ".join(gaps)
        return "every source has rows, but never all of them for the same pool and day"

    def check(self) -> None:
        """Raises (after the outputs are written) when nothing was scored: the gate cannot judge, so it fails
        and nothing is promoted. A model that loses is not a failure: naive is promoted instead."""
        if self.empty_targets:
            raise RuntimeError(self.message())


def _scaled_if_overflow(statistic, values: np.ndarray) -> float:
    """``statistic(values)`` for a statistic that scales with its values (``f(c x) = c f(x)``: a mean of absolute
    values, a root mean square). Its sums overflow to Infinity for values near float64's limit (squares already
    from ~1e154), though the statistic of finite values is at most the largest of them: then it is computed on
    the values scaled by the largest, and scaled back, so it is finite."""
    with np.errstate(over="ignore"):
        result = float(statistic(values))
    largest = float(np.abs(values).max(initial=0.0))
    if math.isinf(result) and 0.0 < largest < math.inf:
        result = largest * float(statistic(values / largest))
    return result


def _mean_abs(values: np.ndarray) -> float:
    return _scaled_if_overflow(lambda v: np.abs(v).mean(), values)


def _rmse(error: np.ndarray) -> float:
    return _scaled_if_overflow(lambda v: np.sqrt(np.square(v).mean()), error)


def _errors(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float | None]:
    """MAE, RMSE and WAPE. Each is finite when every error is; an error beyond float64's range (a forecast and an
    actual near 1e308 of opposite signs) is Infinity, and so are the scores it enters (see Evaluation.metrics)."""
    with np.errstate(over="ignore"):
        error = forecast - actual
        mae, absolute_errors, scale = _mean_abs(error), float(np.abs(error).sum()), float(np.abs(actual).sum())
    if scale == 0:
        wape = None  # WAPE of a target whose actuals are all 0 is undefined, not 0 or infinite.
    elif math.isinf(absolute_errors) or math.isinf(scale):
        wape = mae / _mean_abs(actual)  # a sum overflowed: the same ratio, of the means
    else:
        wape = absolute_errors / scale
    return {"mae": mae, "rmse": _rmse(error), "wape": wape}


def score(panel: pd.DataFrame, request: Request) -> Evaluation:
    """Scores the panel (NULL, NaN and +-Infinity count as missing).

    Raises:
        RuntimeError: the panel holds a (pool_id, forecast_date) twice.
    """
    panel = panel.copy()
    panel[VALUE_COLUMNS] = panel[VALUE_COLUMNS].astype("float64")
    for t in TARGETS:
        if f"quarantined_{t}" not in panel:
            panel[f"quarantined_{t}"] = False
    duplicates = int(panel.duplicated(["pool_id", "forecast_date"]).sum())
    if duplicates:
        raise RuntimeError(
            f"{duplicates} duplicate (pool_id, date) keys in {request.metrics_table} or {request.forecast_table} over "
            "the holdout dates: the evaluation needs one actual and one forecast per model, pool and day"
        )
    present = {column: np.isfinite(panel[column].to_numpy()) for column in VALUE_COLUMNS}
    scored = {t: np.logical_and.reduce([present[f"{s}_{t}"] for s in SOURCES]) for t in TARGETS}
    with_actual = {t: present[f"actual_{t}"] for t in TARGETS}
    coverage = []
    for as_of in request.as_of_dates:
        on_day = (panel["as_of"] == as_of).to_numpy()
        for t in TARGETS:
            counts = {source: int((on_day & present[f"{source}_{t}"]).sum()) for source in SOURCES}
            coverage.append({"as_of": as_of, "target": t, **counts, "scored": int((on_day & scored[t]).sum())})
    rows = {t: int(scored[t].sum()) for t in TARGETS}
    scores = {
        (m, t): _errors(panel[f"actual_{t}"].to_numpy()[scored[t]], panel[f"{m}_{t}"].to_numpy()[scored[t]])
        for t in TARGETS
        if rows[t]
        for m in MODELS
    }
    return Evaluation(
        request=request,
        panel=panel,
        scored=scored,
        rows=rows,
        dropped={t: int((with_actual[t] & ~scored[t]).sum()) for t in TARGETS},
        missing={(m, t): int((with_actual[t] & ~present[f"{m}_{t}"]).sum()) for m in MODELS for t in TARGETS},
        quarantined={t: int(panel[f"quarantined_{t}"].astype(bool).sum()) for t in TARGETS},
        coverage=coverage,
        scores=scores,
    )
