"""The legacy (pandas) global pool forecaster: next-day APY and TVL of every pool from one model over all pools.

It is the reference the SynapseML Spark forecaster is compared with, feature by feature, so every feature is
built by a pure pandas function below (no I/O, no configuration) and has a plain column name::

    python -m legacy.forecast_pools --as-of 2026-08-01 --train-days 60 --n-trials 20 \\
        --target-table pool_forecasts_legacy --run-id nightly-2026-08-01

Semantics (what the Spark job must reproduce):

- panel: the rows of ``pool_daily_metrics`` (or ``--metrics-table``) with an ``actual_apy``, of the pools that
  are active and not filtered out, on the ``train_days`` calendar days [as_of - train_days + 1, as_of];
  ``as_of`` defaults to the latest date with an ``actual_apy`` in the metrics table (never today's date);
- features: :data:`FEATURE_COLUMNS`. A feature of (pool, d) depends only on rows dated d or earlier: the
  pool's own metrics of d, the calendar of d, the other pools of its group on d and the ``pools`` table;
- targets: ``target_apy`` / ``target_tvl`` = the pool's ``actual_apy`` / ``actual_tvl`` on the calendar day
  d + 1, NULL when it has no row that day (or a NULL tvl);
- models: LightGBM forecasts next-day TVL; its forecast is the extra feature ``pred_tvl`` of an Optuna-tuned
  random forest that forecasts next-day APY (see :func:`fit_and_forecast`);
- output: one forecast for as_of + 1 per pool with a panel row on ``as_of``, upserted into a shadow table
  (default ``pool_forecasts_legacy``) under ``model`` = ``legacy_rf_lgbm`` and the caller's ``run_id``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm
import numpy as np
import optuna
import pandas as pd
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extras import execute_values
from sklearn.ensemble import RandomForestRegressor
from sqlalchemy import Connection

from legacy.calculate_pool_metrics import METRIC_COLUMNS, PRODUCTION_TABLE, check_table_name
from spark_src.common import faults
from spark_src.common.columns import FEATURE_COLUMNS as _FEATURE_COLUMNS
from spark_src.common.config import DbConfig
from spark_src.common.sql import transaction

log = logging.getLogger("legacy.forecast_pools")

DEFAULT_TARGET_TABLE = "pool_forecasts_legacy"
DEFAULT_METRICS_TABLE = PRODUCTION_TABLE
MODEL_NAME = "legacy_rf_lgbm"

#: The model inputs, in this order (the Spark forecaster assembles its feature vector in the same order).
#:
#: - ``actual_apy`` … ``gas_price_gwei``: the pool's ``pool_daily_metrics`` row of day d, as stored;
#: - ``pool_group_index``: position of the pool's ``pool_group`` in the sorted (Python ``sorted``, i.e. by
#:   code point) list of the distinct non-NULL groups of ALL pools of the ``pools`` table that are active and
#:   not filtered out, whatever their history: the same group gets the same index in every window. NULL for a
#:   pool without a group;
#: - ``dow_sin`` / ``dow_cos``: sin / cos of 2π·dow/7, dow = day of week of d, Monday 0 … Sunday 6;
#: - ``group_*`` / ``tvl_share``: over the panel rows of the same date and ``pool_group`` (the pool included):
#:   ``group_tvl_sum`` = sum of the non-NULL ``actual_tvl`` (NULL when all are NULL), ``group_apy_mean`` = mean
#:   of ``actual_apy``, ``group_apy_std`` = its sample stddev (ddof=1; NULL with fewer than two pools),
#:   ``tvl_share`` = ``actual_tvl / group_tvl_sum`` (NULL when the tvl is NULL or the sum is NULL or 0). All
#:   four are NULL for a pool without a group: pools of unknown kind are nobody's neighbours.
FEATURE_COLUMNS: tuple[str, ...] = _FEATURE_COLUMNS
TARGET_COLUMNS = ("target_apy", "target_tvl")
STACKED_FEATURE = "pred_tvl"
FORECAST_COLUMNS = ("pool_id", "forecast_date", "forecasted_apy", "forecasted_tvl")

#: The last this-many dates of the training rows are the validation dates of the Optuna search (fewer when
#: the training rows span fewer than twice as many dates, so that at least half of the dates are fitted on).
VALIDATION_DAYS = 7

# Fixed, untuned, and strongly regularised: a pool's TVL is close to a random walk, so the model only has to
# learn a small correction to "tomorrow = today" (on the synthetic data it barely beats persistence; with
# more leaves or trees it fits the noise and does worse).
LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.02,
    "num_leaves": 4,
    "min_child_samples": 100,
    "reg_lambda": 10.0,
}


# --------------------------------------------------------------------------------------------------------------
# Pure functions: the features
# --------------------------------------------------------------------------------------------------------------


def pool_group_indices(pools: pd.DataFrame) -> dict[str, int]:
    """Index of each group in the sorted distinct non-NULL ``pool_group`` of the active, not filtered-out pools.

    Args:
        pools: Columns ``pool_group``, ``is_active``, ``is_filtered_out`` (the whole ``pools`` table).

    Returns:
        ``{pool_group: index}``, indices 0, 1, … in sorted group order.
    """
    eligible = pools["is_active"].astype(bool) & ~pools["is_filtered_out"].astype(bool)
    groups = sorted(pools.loc[eligible, "pool_group"].dropna().unique())
    return {group: index for index, group in enumerate(groups)}


def build_panel(metrics: pd.DataFrame, pools: pd.DataFrame, as_of: dt.date, train_days: int) -> pd.DataFrame:
    """The metric rows of the forecastable pools in the training window, with their group.

    Args:
        metrics: ``pool_daily_metrics`` rows: ``pool_id``, ``date`` (date or datetime64) and
            :data:`~legacy.calculate_pool_metrics.METRIC_COLUMNS` (NaN = NULL); may hold other dates.
        pools: The ``pools`` table: ``pool_id``, ``pool_group``, ``is_active``, ``is_filtered_out``.
        as_of: Last day of the window (inclusive).
        train_days: Length of the window in calendar days: [as_of - train_days + 1, as_of].

    Returns:
        ``pool_id``, ``date`` (midnight datetime64), the metric columns, ``pool_group`` and
        ``pool_group_index`` (float, NaN for a NULL group), for the rows with a non-NULL ``actual_apy`` of the
        active, not filtered-out pools in the window; sorted by date then pool.

    Raises:
        ValueError: ``train_days`` < 1, or two rows for one pool and date.
    """
    if train_days < 1:
        raise ValueError(f"train_days must be at least 1, got {train_days}")
    first_day = pd.Timestamp(as_of - dt.timedelta(days=train_days - 1))
    dates = pd.to_datetime(metrics["date"])
    in_window = (dates >= first_day) & (dates <= pd.Timestamp(as_of)) & metrics["actual_apy"].notna()
    rows = metrics.loc[in_window, ["pool_id", *METRIC_COLUMNS]].assign(date=dates[in_window])

    eligible = pools["is_active"].astype(bool) & ~pools["is_filtered_out"].astype(bool)
    panel = rows.merge(pools.loc[eligible, ["pool_id", "pool_group"]], on="pool_id", how="inner", validate="m:1")
    if panel.duplicated(["pool_id", "date"]).any():
        raise ValueError("metric rows are not unique on (pool_id, date)")
    panel["pool_group_index"] = panel["pool_group"].map(pool_group_indices(pools)).astype("float64")
    panel = panel.astype(dict.fromkeys(METRIC_COLUMNS, "float64"))
    columns = ["pool_id", "date", *METRIC_COLUMNS, "pool_group", "pool_group_index"]
    return panel[columns].sort_values(["date", "pool_id"]).reset_index(drop=True)


def add_calendar_features(panel: pd.DataFrame) -> pd.DataFrame:
    """Adds ``dow_sin`` and ``dow_cos`` = sin / cos(2π·dow/7), dow = Monday 0 … Sunday 6 of ``date``.

    The cyclic encoding puts Sunday next to Monday, which an integer day of week would not.
    """
    angle = 2.0 * math.pi * panel["date"].dt.dayofweek.astype("float64") / 7.0
    return panel.assign(dow_sin=np.sin(angle), dow_cos=np.cos(angle))


def add_neighbour_features(panel: pd.DataFrame) -> pd.DataFrame:
    """Adds ``group_tvl_sum``, ``group_apy_mean``, ``group_apy_std`` and ``tvl_share`` (see :data:`FEATURE_COLUMNS`).

    Computed per (``date``, ``pool_group``) over the rows of ``panel``, so only same-day rows are used; rows
    with a NULL ``pool_group`` get NULL.
    """
    by_group = panel.groupby(["date", "pool_group"], dropna=True, sort=False)
    # min_count=1: a group whose tvls are all NULL has a NULL sum (as SQL's SUM), not 0.
    group_tvl_sum = by_group["actual_tvl"].transform("sum", min_count=1)
    usable_sum = group_tvl_sum.where(group_tvl_sum != 0)
    return panel.assign(
        group_tvl_sum=group_tvl_sum,
        group_apy_mean=by_group["actual_apy"].transform("mean"),
        group_apy_std=by_group["actual_apy"].transform("std"),  # ddof=1, NaN for a group of one
        tvl_share=panel["actual_tvl"] / usable_sum,
    )


def add_targets(panel: pd.DataFrame) -> pd.DataFrame:
    """Adds ``target_apy`` / ``target_tvl``: the pool's ``actual_apy`` / ``actual_tvl`` on the calendar day d + 1.

    A calendar-day lookup, not a shift over rows: when the pool has no row on d + 1 the targets are NULL
    even if it has a later row. Rows of the last date of ``panel`` therefore have NULL targets.
    """
    next_day = panel[["pool_id", "date", "actual_apy", "actual_tvl"]].rename(
        columns={"actual_apy": "target_apy", "actual_tvl": "target_tvl"}
    )
    next_day["date"] = next_day["date"] - pd.Timedelta(days=1)
    return panel.merge(next_day, on=["pool_id", "date"], how="left", validate="1:1")


def feature_frame(panel: pd.DataFrame) -> pd.DataFrame:
    """The model frame of a panel: ``pool_id``, ``date``, :data:`FEATURE_COLUMNS` (float) and the targets.

    Args:
        panel: Output of :func:`build_panel`.

    Returns:
        One row per panel row (none dropped, whether or not it has a target), sorted by date then pool.
    """
    features = add_targets(add_neighbour_features(add_calendar_features(panel)))
    features = features.astype(dict.fromkeys(FEATURE_COLUMNS, "float64"))
    columns = ["pool_id", "date", *FEATURE_COLUMNS, *TARGET_COLUMNS]
    return features[columns].sort_values(["date", "pool_id"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------


def _tvl_model(seed: int) -> lightgbm.LGBMRegressor:
    return lightgbm.LGBMRegressor(
        **LGBM_PARAMS, random_state=seed, deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1
    )


def _tvl_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows the TVL model learns from: a tvl today and tomorrow (its target is the log change between them)."""
    return rows[rows["actual_tvl"].notna() & rows["target_tvl"].notna()]


def _log_tvl_change(rows: pd.DataFrame) -> np.ndarray:
    # TVLs span 1e5 … 1e9 USD and move by a few percent a day: trees fitted on the level would quantise it
    # into a handful of leaf values, so the model learns log1p(tvl tomorrow) - log1p(tvl today) instead.
    return (np.log1p(rows["target_tvl"]) - np.log1p(rows["actual_tvl"])).to_numpy()


def _predict_tvl(model: lightgbm.LGBMRegressor, rows: pd.DataFrame) -> np.ndarray:
    """Next-day TVL in USD; NaN where today's TVL is NULL (there is no level to apply the change to)."""
    change = model.predict(rows[list(FEATURE_COLUMNS)])
    return np.expm1(np.log1p(rows["actual_tvl"].to_numpy()) + change)


def fit_tvl_model(training: pd.DataFrame, seed: int) -> lightgbm.LGBMRegressor:
    """LightGBM on :data:`FEATURE_COLUMNS` (NaN native) for the next-day TVL of the rows with a ``target_tvl``."""
    rows = _tvl_rows(training)
    if rows.empty:
        raise ValueError("no training row has a tvl today and tomorrow")
    return _tvl_model(seed).fit(rows[list(FEATURE_COLUMNS)], _log_tvl_change(rows))


# The random forest reads its inputs as float32. A finite metric beyond that range (an apy of 1e300 % is kept by the
# metric semantics) made it fail the whole run ("Input X contains infinity or a value too large for
# dtype('float32')"): such a value is read as missing instead, and counted (:func:`values_beyond_float32`).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _apy_inputs(rows: pd.DataFrame, pred_tvl: np.ndarray) -> np.ndarray:
    # scikit-learn >= 1.4 forests split on NaN natively (the missing values go to the side that fits best, or
    # to the larger child for a feature that had none at fit time), so NULL features are not imputed.
    inputs = np.column_stack([rows[list(FEATURE_COLUMNS)].to_numpy(dtype="float64"), pred_tvl])
    inputs[np.abs(inputs) > FLOAT32_MAX] = np.nan
    return inputs


def values_beyond_float32(rows: pd.DataFrame) -> int:
    """How many :data:`FEATURE_COLUMNS` values of ``rows`` the random forest reads as missing (beyond float32's
    range; the stacked TVL prediction is read the same way, not counted here)."""
    return int((np.abs(rows[list(FEATURE_COLUMNS)].to_numpy(dtype="float64")) > FLOAT32_MAX).sum())


def _apy_model(params: Mapping[str, Any], seed: int) -> RandomForestRegressor:
    return RandomForestRegressor(**params, random_state=seed, n_jobs=1)


def _suggest_forest(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, 300, step=50),
        "max_depth": trial.suggest_int("max_depth", 3, 16),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 30, log=True),
        "max_features": trial.suggest_float("max_features", 0.3, 1.0),
    }


def split_validation_dates(dates: pd.Series) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    """Splits the distinct training dates into (fit dates, validation dates = the last :data:`VALIDATION_DAYS`).

    Raises:
        ValueError: fewer than two distinct dates.
    """
    distinct = pd.DatetimeIndex(sorted(dates.unique()))
    if len(distinct) < 2:
        raise ValueError(f"need training rows on at least 2 dates for a validation split, got {len(distinct)}")
    n_validation = min(VALIDATION_DAYS, len(distinct) // 2)
    return distinct[:-n_validation], distinct[-n_validation:]


def _mae(actual: pd.Series, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(actual.to_numpy() - predicted)))


def fit_and_forecast(
    features: pd.DataFrame, as_of: dt.date, n_trials: int, seed: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tunes and fits the stacked models on the rows before ``as_of`` and forecasts as_of + 1.

    1. Training rows: the rows dated before ``as_of`` with a ``target_apy``; prediction rows: the rows dated
       ``as_of`` (selected from all rows, their targets being unknown).
    2. Validation: the last :data:`VALIDATION_DAYS` training dates. The TVL model is fitted on the earlier
       dates; its in-sample predictions there and its out-of-sample ones on the validation dates are the
       ``pred_tvl`` feature, as at forecast time. Optuna (``TPESampler(seed)``) searches the random forest's
       ``n_estimators``, ``max_depth``, ``min_samples_leaf`` and ``max_features`` for ``n_trials`` trials,
       minimising the APY MAE on the validation rows.
    3. Refit on all training rows: the TVL model, then ``pred_tvl`` = its in-sample predictions (not
       out-of-fold: simpler, and one TVL fit), then the forest with the best parameters.
    4. Forecast: TVL model on the as-of rows, then the forest with that ``pred_tvl``.

    Args:
        features: Output of :func:`feature_frame`.
        as_of: The forecast is for ``as_of`` + 1.
        n_trials: Optuna trials (at least 1).
        seed: Seed of LightGBM, the forest and the sampler; the same inputs give the same forecasts.

    Returns:
        The forecasts (:data:`FORECAST_COLUMNS`, ``forecast_date`` a ``datetime.date``, ``forecasted_tvl`` NaN
        when the as-of tvl is NULL), sorted by pool; and ``training_info``: ``training_rows``,
        ``tvl_training_rows``, ``validation_dates``, ``validation_rows``, ``validation_mae``,
        ``persistence_mae`` (MAE of "tomorrow = today" on the same rows), ``best_params``, ``n_trials``,
        ``values_read_as_missing`` (feature values of the training and as-of rows beyond float32's range).

    Raises:
        ValueError: no row on ``as_of``, no training row, or training rows on fewer than two dates.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    as_of_day = pd.Timestamp(as_of)
    # Bootstrap samples are drawn by row position: a fixed row order makes the forecasts independent of the
    # order the database returned the rows in.
    features = features.sort_values(["date", "pool_id"])
    to_forecast = features[features["date"] == as_of_day].sort_values("pool_id")
    training = features[(features["date"] < as_of_day) & features["target_apy"].notna()]
    if to_forecast.empty:
        raise ValueError(f"no pool has a row on the as-of date {as_of}")
    if training.empty:
        raise ValueError(f"no training row (a row before {as_of} with a next-day actual_apy)")

    fit_dates, validation_dates = split_validation_dates(training["date"])
    fit_part = training[training["date"].isin(fit_dates)]
    validation = training[training["date"].isin(validation_dates)]
    tvl_model = fit_tvl_model(fit_part, seed)
    fit_inputs = _apy_inputs(fit_part, _predict_tvl(tvl_model, fit_part))
    validation_inputs = _apy_inputs(validation, _predict_tvl(tvl_model, validation))

    def objective(trial: optuna.Trial) -> float:
        forest = _apy_model(_suggest_forest(trial), seed).fit(fit_inputs, fit_part["target_apy"])
        return _mae(validation["target_apy"], forest.predict(validation_inputs))

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)

    tvl_model = fit_tvl_model(training, seed)
    forest = _apy_model(study.best_params, seed).fit(
        _apy_inputs(training, _predict_tvl(tvl_model, training)), training["target_apy"]
    )
    forecasted_tvl = _predict_tvl(tvl_model, to_forecast)
    forecasts = pd.DataFrame(
        {
            "pool_id": to_forecast["pool_id"].to_numpy(),
            "forecast_date": as_of + dt.timedelta(days=1),
            "forecasted_apy": forest.predict(_apy_inputs(to_forecast, forecasted_tvl)),
            "forecasted_tvl": forecasted_tvl,
        }
    )
    training_info = {
        "training_rows": len(training),
        "tvl_training_rows": len(_tvl_rows(training)),
        "validation_dates": [day.date().isoformat() for day in validation_dates],
        "validation_rows": len(validation),
        "validation_mae": float(study.best_value),
        "persistence_mae": _mae(validation["target_apy"], validation["actual_apy"].to_numpy()),
        "best_params": dict(study.best_params),
        "n_trials": n_trials,
        "values_read_as_missing": values_beyond_float32(pd.concat([training, to_forecast])),
    }
    return forecasts, training_info


# --------------------------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------------------------


def _read(conn: Connection, query: sql.Composable, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Runs a psycopg2-composed query (quoted identifiers) on a SQLAlchemy connection into a frame."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(query, params)
        columns = [column.name for column in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=columns)
    finally:
        cursor.close()


def latest_actuals_date(conn: Connection, metrics_table: str = DEFAULT_METRICS_TABLE) -> dt.date | None:
    """The latest date with a non-NULL ``actual_apy`` in ``metrics_table``; None when there is none."""
    query = sql.SQL("SELECT max(date) AS latest FROM {} WHERE actual_apy IS NOT NULL").format(
        sql.Identifier(check_table_name(metrics_table))
    )
    return _read(conn, query)["latest"].iloc[0]


def fetch_metrics(
    conn: Connection, as_of: dt.date, train_days: int, metrics_table: str = DEFAULT_METRICS_TABLE
) -> pd.DataFrame:
    """The metric rows with an ``actual_apy`` on the days [as_of - train_days + 1, as_of].

    Returns:
        ``pool_id``, ``date`` (midnight datetime64) and the metric columns (float, NaN = NULL).
    """
    columns = ["pool_id", "date", *METRIC_COLUMNS]
    query = sql.SQL(
        "SELECT {columns} FROM {table} WHERE date BETWEEN %(first_day)s AND %(as_of)s AND actual_apy IS NOT NULL"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        table=sql.Identifier(check_table_name(metrics_table)),
    )
    params = {"first_day": as_of - dt.timedelta(days=train_days - 1), "as_of": as_of}
    metrics = _read(conn, query, params).reindex(columns=columns)
    metrics["date"] = pd.to_datetime(metrics["date"])
    # psycopg2 returns NULL as None: an all-NULL column would stay object dtype.
    return metrics.astype(dict.fromkeys(METRIC_COLUMNS, "float64"))


def fetch_pools(conn: Connection) -> pd.DataFrame:
    """The whole ``pools`` table: ``pool_id``, ``pool_group``, ``is_active``, ``is_filtered_out``."""
    columns = ["pool_id", "pool_group", "is_active", "is_filtered_out"]
    query = sql.SQL("SELECT {} FROM pools").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    return _read(conn, query).reindex(columns=columns)


def ensure_forecast_table(conn: PgConnection, target_table: str) -> None:
    """Creates the shadow forecast table if it does not exist."""
    statement = sql.SQL(
        """CREATE TABLE IF NOT EXISTS {} (
            pool_id text NOT NULL,
            forecast_date date NOT NULL,
            as_of date NOT NULL,
            model text NOT NULL,
            run_id text NOT NULL,
            forecasted_apy double precision,
            forecasted_tvl double precision,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (pool_id, forecast_date, model, run_id)
        )"""
    ).format(sql.Identifier(check_table_name(target_table)))
    with conn.cursor() as cur:
        cur.execute(statement)


def create_forecast_table(config: DbConfig, target_table: str) -> None:
    """Creates ``target_table`` (empty) if missing: a staging table the promotion can read with no forecast."""
    with transaction(config) as conn:
        ensure_forecast_table(conn.connection.driver_connection, target_table)


def _nullable(value: float) -> float | None:
    # psycopg2 would send NaN as 'NaN'::float; a forecast that could not be made is NULL.
    return None if math.isnan(value) else float(value)


def write_forecasts(
    conn: PgConnection,
    forecasts: pd.DataFrame,
    as_of: dt.date,
    target_table: str,
    run_id: str,
    model: str = MODEL_NAME,
    page_size: int = 1000,
) -> int:
    """Upserts forecasts; a rerun of the same ``run_id`` overwrites its values (``created_at`` is kept).

    Runs in the caller's transaction (no commit); creates ``target_table`` if missing.

    Args:
        conn: psycopg2 connection.
        forecasts: :data:`FORECAST_COLUMNS` rows, unique on ``pool_id`` and ``forecast_date``.
        as_of: Date of the data the forecasts were made from.
        target_table: Plain lower-case table name.
        run_id: Identifies the run (part of the key: runs do not overwrite each other).
        model: Model name (part of the key).
        page_size: Rows per multi-row INSERT.

    Returns:
        The number of rows written.
    """
    if forecasts.duplicated(["pool_id", "forecast_date"]).any():
        raise ValueError("forecasts are not unique on (pool_id, forecast_date)")
    ensure_forecast_table(conn, target_table)
    columns = ["pool_id", "forecast_date", "as_of", "model", "run_id", "forecasted_apy", "forecasted_tvl"]
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES %s ON CONFLICT (pool_id, forecast_date, model, run_id) DO UPDATE "
        "SET as_of = EXCLUDED.as_of, forecasted_apy = EXCLUDED.forecasted_apy, "
        "forecasted_tvl = EXCLUDED.forecasted_tvl"
    ).format(
        table=sql.Identifier(check_table_name(target_table)),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
    )
    rows = [
        (pool_id, forecast_date, as_of, model, run_id, _nullable(apy), _nullable(tvl))
        for pool_id, forecast_date, apy, tvl in forecasts[list(FORECAST_COLUMNS)].itertuples(index=False, name=None)
    ]
    if rows:
        with conn.cursor() as cur:
            execute_values(cur, statement.as_string(conn), rows, page_size=page_size)
    return len(rows)


def run(
    config: DbConfig,
    as_of: dt.date | None = None,
    train_days: int = 60,
    n_trials: int = 20,
    seed: int = 42,
    target_table: str = DEFAULT_TARGET_TABLE,
    run_id: str = "legacy",
    metrics_table: str = DEFAULT_METRICS_TABLE,
) -> dict[str, Any]:
    """Reads the panel, fits, forecasts as_of + 1 and upserts the forecasts into ``target_table``.

    The reads share one transaction (one consistent as-of date and window); the write is a second one, so
    no transaction stays open while the models train.

    Args:
        config: Database location; the password is resolved from its secret reference.
        as_of: Last day of data (None: the latest date with an ``actual_apy`` in ``metrics_table``).
        train_days: Calendar days of the training window, as_of included.
        n_trials: Optuna trials.
        seed: Seed of every random choice.
        target_table: Forecast table (created if missing).
        run_id: Recorded with each forecast (part of the key).
        metrics_table: ``pool_daily_metrics`` or a table of the same shape (e.g. ``pool_daily_metrics_legacy``).

    Returns:
        ``as_of``, ``forecast_date`` (ISO dates), ``pools_forecast``, ``training_rows``, ``validation_mae``,
        ``persistence_mae``, ``best_params``, ``values_read_as_missing``, ``seconds``, ``target_table``,
        ``metrics_table``, ``model``, ``run_id``.

    Raises:
        ValueError: bad table names, no actuals at all, or nothing to train on / forecast (see
            :func:`fit_and_forecast`).
    """
    check_table_name(target_table)
    check_table_name(metrics_table)
    started = time.monotonic()
    with transaction(config) as conn:
        if as_of is None:
            as_of = latest_actuals_date(conn, metrics_table)
            if as_of is None:
                raise ValueError(f"{metrics_table} has no actual_apy: nothing to forecast from")
        metrics = fetch_metrics(conn, as_of, train_days, metrics_table)
        pools = fetch_pools(conn)

    features = feature_frame(build_panel(metrics, pools, as_of, train_days))
    forecasts, training_info = fit_and_forecast(features, as_of, n_trials, seed)

    with transaction(config) as conn:
        write_forecasts(conn.connection.driver_connection, forecasts, as_of, target_table, run_id)
        faults.maybe_kill("legacy_forecast")

    return {
        "as_of": as_of.isoformat(),
        "forecast_date": (as_of + dt.timedelta(days=1)).isoformat(),
        "pools_forecast": len(forecasts),
        "training_rows": training_info["training_rows"],
        "validation_mae": training_info["validation_mae"],
        "persistence_mae": training_info["persistence_mae"],
        "best_params": training_info["best_params"],
        "values_read_as_missing": training_info["values_read_as_missing"],
        "seconds": round(time.monotonic() - started, 3),
        "target_table": target_table,
        "metrics_table": metrics_table,
        "model": MODEL_NAME,
        "run_id": run_id,
    }


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _run_id(value: str) -> str:
    if not value or len(value) > 200 or not value.isprintable():
        raise argparse.ArgumentTypeError("a run id is 1-200 printable characters")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m legacy.forecast_pools",
        description="Legacy pandas forecaster (LightGBM TVL -> Optuna-tuned random forest APY) of as_of + 1. "
        "Connection settings come from DB_URL or DB_HOST/DB_PORT/DB_NAME/DB_USER, the password from the secret "
        "named by DB_PASSWORD_SECRET (default env:DB_PASSWORD).",
    )
    parser.add_argument(
        "--as-of",
        type=dt.date.fromisoformat,
        help="last day of data, YYYY-MM-DD (default: the latest date with an actual_apy in the metrics table)",
    )
    parser.add_argument("--train-days", type=_positive_int, default=60, help="training window in days (default 60)")
    parser.add_argument("--n-trials", type=_positive_int, default=20, help="Optuna trials (default 20)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the models and the sampler (default 42)")
    parser.add_argument(
        "--target-table",
        type=check_table_name,
        default=DEFAULT_TARGET_TABLE,
        help=f"forecast table, created if missing (default {DEFAULT_TARGET_TABLE})",
    )
    parser.add_argument("--run-id", type=_run_id, default="legacy", help="run identifier (default 'legacy')")
    parser.add_argument(
        "--metrics-table",
        type=check_table_name,
        default=DEFAULT_METRICS_TABLE,
        help=f"table of daily metrics to read (default {DEFAULT_METRICS_TABLE})",
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Runs the forecaster from the command line; logs and returns the summary."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = DbConfig.from_env(None if environ is None else dict(environ))
    log.info(
        "forecast from %s (%s, as of %s, %d days) into %s, run %s",
        config.url,  # password-less
        args.metrics_table,
        args.as_of or "latest actuals",
        args.train_days,
        args.target_table,
        args.run_id,
    )
    summary = run(
        config,
        args.as_of,
        train_days=args.train_days,
        n_trials=args.n_trials,
        seed=args.seed,
        target_table=args.target_table,
        run_id=args.run_id,
        metrics_table=args.metrics_table,
    )
    log.info("summary %s", json.dumps(summary, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
