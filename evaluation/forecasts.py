"""Backtest of the next-day forecasters: the Spark model, the legacy model and a naive persistence forecast,
scored with MAE, RMSE and WAPE on the same rows, and the gate on the Spark model not being worse than legacy.

:func:`read_panel` reads one row per (pool, holdout day) from PostgreSQL; :func:`score` is pure pandas/numpy.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spark_src.common.config import DbConfig
from spark_src.common.sql import check_identifiers, connect

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
    history_table: str = "pool_forecast_history"
    metrics_table: str = "pool_daily_metrics"
    gate_tolerance: float = 0.05
    sample_pools: int = 4  # how many pools the report plots

    def __post_init__(self) -> None:
        check_identifiers(self.history_table, self.metrics_table)
        if not self.run_id.strip():
            raise ValueError("run_id is empty: the forecasts to evaluate are those of one run")
        if not self.spark_model.strip() or not self.legacy_model.strip():
            raise ValueError("spark_model and legacy_model must be non-empty model names")
        if self.spark_model == self.legacy_model:
            raise ValueError(f"spark_model and legacy_model are both {self.spark_model!r}: nothing to compare")
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


def panel_sql(history_table: str, metrics_table: str) -> str:
    """One row per (pool, as-of) with an actual on the forecast date or a forecast of the run.

    The coverage table thus also counts forecasts that have no actual. The as-of must match too: a forecast of
    d + 1 made from older data is not the next-day forecast the naive one is compared with. Both tables are
    keyed (pool, day) and (pool, day, model, run), so the left joins add no rows; :func:`score`'s duplicate
    check guards other tables.
    """
    check_identifiers(history_table, metrics_table)
    return f"""
        WITH holdout AS (
            SELECT d AS as_of, d + 1 AS forecast_date FROM unnest(CAST(:as_of AS date[])) AS d
        ), keys AS (
            SELECT h.as_of, h.forecast_date, m.pool_id
            FROM holdout AS h JOIN "{metrics_table}" AS m ON m.date = h.forecast_date
            UNION
            SELECT h.as_of, h.forecast_date, f.pool_id
            FROM holdout AS h JOIN "{history_table}" AS f ON f.forecast_date = h.forecast_date AND f.as_of = h.as_of
            WHERE f.run_id = :run_id AND f.model IN (:spark_model, :legacy_model)
        )
        SELECT k.pool_id, k.as_of, k.forecast_date,
               p.project || ' ' || p.symbol || ' (' || p.chain || ')' AS pool_name,
               CAST(a.actual_apy AS double precision) AS actual_apy,
               CAST(a.actual_tvl AS double precision) AS actual_tvl,
               CAST(s.forecasted_apy AS double precision) AS spark_apy,
               CAST(s.forecasted_tvl AS double precision) AS spark_tvl,
               CAST(l.forecasted_apy AS double precision) AS legacy_apy,
               CAST(l.forecasted_tvl AS double precision) AS legacy_tvl,
               CAST(n.actual_apy AS double precision) AS naive_apy,
               CAST(n.actual_tvl AS double precision) AS naive_tvl
        FROM keys AS k
        LEFT JOIN pools AS p ON p.pool_id = k.pool_id
        LEFT JOIN "{metrics_table}" AS a ON a.pool_id = k.pool_id AND a.date = k.forecast_date
        LEFT JOIN "{metrics_table}" AS n ON n.pool_id = k.pool_id AND n.date = k.as_of
        LEFT JOIN "{history_table}" AS s
            ON s.pool_id = k.pool_id AND s.forecast_date = k.forecast_date AND s.as_of = k.as_of
           AND s.run_id = :run_id AND s.model = :spark_model
        LEFT JOIN "{history_table}" AS l
            ON l.pool_id = k.pool_id AND l.forecast_date = k.forecast_date AND l.as_of = k.as_of
           AND l.run_id = :run_id AND l.model = :legacy_model
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
    }
    with connect(db) as conn:
        for table in (request.history_table, request.metrics_table):
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{table}"'}).scalar() is None:
                raise RuntimeError(f"table {table} does not exist")
        result = conn.execute(text(panel_sql(request.history_table, request.metrics_table)), params)
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
        return self.scores["spark", "apy"]["mae"] <= self.gate_limit

    def apy_maes(self) -> dict[str, float]:
        return {m: self.scores[m, "apy"]["mae"] for m in MODELS}

    def metrics(self) -> dict[str, float]:
        """The ``forecast_*`` metrics: counts always, scores and the gate's verdict when nothing is empty."""
        found = {"forecast_holdout_dates": float(len(self.request.as_of_dates))}
        for t in TARGETS:
            found[f"forecast_rows_evaluated_{t}"] = float(self.rows[t])
            found[f"forecast_rows_dropped_{t}"] = float(self.dropped[t])
        if self.empty_targets:
            return found
        for m in MODELS:
            for t in TARGETS:
                found.update({f"forecast_{m}_{t}_{k}": v for k, v in self.scores[m, t].items() if v is not None})
        found["forecast_gate_pass"] = 1.0 if self.gate_pass else 0.0
        return found

    def message(self) -> str:
        """One line: the gate's verdict and the APY MAEs, or why there is nothing to evaluate."""
        request, dates = self.request, ", ".join(d.isoformat() for d in self.request.as_of_dates)
        if self.empty_targets:
            return (
                f"nothing to evaluate for run {request.run_id}: no {' or '.join(t.upper() for t in self.empty_targets)}"
                f" row has an actual and forecasts from {request.spark_model}, {request.legacy_model} and naive "
                f"(as-of {dates}); {self._empty_reason()}"
            )
        maes = self.apy_maes()
        return (
            f"forecast gate {'passed' if self.gate_pass else 'failed'}: APY MAE spark {maes['spark']:.6g}, legacy "
            f"{maes['legacy']:.6g}, naive {maes['naive']:.6g}; spark may be at most legacy x (1 + "
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

    def check(self, gate_enabled: bool) -> None:
        """Raises (after the outputs are written) when nothing was scored or an enabled gate failed."""
        if self.empty_targets or (gate_enabled and not self.gate_pass):
            raise RuntimeError(self.message())


def _errors(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float | None]:
    error = forecast - actual
    scale = float(np.abs(actual).sum())
    return {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt(np.square(error).mean())),
        # WAPE of a target whose actuals are all 0 is undefined, not 0 or infinite.
        "wape": float(np.abs(error).sum()) / scale if scale > 0 else None,
    }


def score(panel: pd.DataFrame, request: Request) -> Evaluation:
    """Scores the panel (NULL, NaN and +-Infinity count as missing).

    Raises:
        RuntimeError: the panel holds a (pool_id, forecast_date) twice.
    """
    panel = panel.copy()
    panel[VALUE_COLUMNS] = panel[VALUE_COLUMNS].astype("float64")
    duplicates = int(panel.duplicated(["pool_id", "forecast_date"]).sum())
    if duplicates:
        raise RuntimeError(
            f"{duplicates} duplicate (pool_id, date) keys in {request.metrics_table} or {request.history_table} over "
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
        coverage=coverage,
        scores=scores,
    )
