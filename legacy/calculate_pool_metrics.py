"""The legacy (pandas) daily pool-metrics job: the reference the Spark job is compared with, and its rollback path.

It reads the active pools' DeFiLlama history, the CoinMarketCap ETH/BTC closes and the daily gas price, computes
one row of ``pool_daily_metrics`` per pool and day, and upserts the metric columns into a target table
(``forecasted_*`` are never touched)::

    python -m legacy.calculate_pool_metrics --start 2026-05-01 --end 2026-06-01 \\
        --target-table pool_daily_metrics_legacy

The metric semantics, shared with ``spark_src.pool_metrics`` (the parity gate compares the two cell by cell),
are written once, in README.md, section "Metric semantics".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extras import execute_values
from sqlalchemy import Connection, text

from spark_src.common import faults, pg, time_bounds
from spark_src.common.columns import METRIC_COLUMNS, POOL_METRIC_COLUMNS
from spark_src.common.config import DbConfig
from spark_src.common.sql import IDENTIFIER, transaction
from spark_src.common.time_bounds import EXOGENOUS_MAX_AGE_DAYS, TIMESTAMP_REJECTION_REASONS

log = logging.getLogger("legacy.calculate_pool_metrics")

PRODUCTION_TABLE = "pool_daily_metrics"
DEFAULT_TARGET_TABLE = "pool_daily_metrics_legacy"

# The 30-day window of day `start` reaches back to start-29, and the stddev delta of `start` needs the
# 30-day window of start-1, which reaches back to start-30.
LOOKBACK_DAYS = 30

APY_REJECTION_REASONS = ("apy_missing", "apy_not_numeric", "apy_not_finite")
TVL_NULLED_REASONS = ("tvl_missing", "tvl_not_numeric", "tvl_not_finite", "tvl_negative")

KEY_COLUMNS = ("pool_id", "date")

# What both Python's float() and Java's Double.parseDouble read (the Spark job parses with the same pattern):
# plain decimals with an optional exponent, ASCII digits only. Python-only forms ("1_0", non-ASCII digits) and
# Java-only forms ("1.5d", "0x1p3") are not numbers here. NaN/Infinity in any letter case are numbers, which
# validation then rejects as not finite.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPECIAL = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
# The ASCII whitespace that both Python's str.strip() and Java's String.trim() remove (Python would also strip
# Unicode spaces, Java also control characters below U+0020).
_WHITESPACE = " \t\n\r\f\v"


# --------------------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------------------


def parse_strict_float(value: str) -> float:
    """Parses a number the way both Python and Java would, refusing what only one of them accepts.

    Args:
        value: Text from a JSON field (``raw_json_data->>'apy'``): surrounding ASCII whitespace is ignored.

    Returns:
        The float; ``nan``/``inf`` for the NaN/Infinity spellings (any case) and for overflowing exponents.

    Raises:
        ValueError: ``value`` is not a number in this strict sense (e.g. ``"n/a"``, ``"true"``, ``""``,
            ``"1_0"``, ``"0x1p3"``, ``"1.5d"``).
    """
    stripped = value.strip(_WHITESPACE)
    if _DECIMAL.fullmatch(stripped) or _SPECIAL.fullmatch(stripped):
        return float(stripped)
    raise ValueError(f"not a number: {value!r}")


def _is_missing(value: Any) -> bool:
    # The text columns hold str or None; pandas may turn a None into NaN when it builds or concatenates frames.
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parse_field(value: Any, prefix: str, *, negative_is_bad: bool) -> tuple[float, str | None]:
    """Returns (number, None) for a usable value, else (nan, reason)."""
    if _is_missing(value):
        return math.nan, f"{prefix}_missing"
    try:
        number = parse_strict_float(str(value))
    except ValueError:
        return math.nan, f"{prefix}_not_numeric"
    if not math.isfinite(number):
        return math.nan, f"{prefix}_not_finite"
    # -0.0 is not negative (it compares equal to 0), as in SQL.
    if negative_is_bad and number < 0:
        return math.nan, f"{prefix}_negative"
    return number, None


def _utc_day(timestamps: pd.Series) -> pd.Series:
    """UTC calendar day (midnight, tz-naive datetime64) of timestamps; naive timestamps are taken as UTC."""
    return pd.to_datetime(timestamps, utc=True).dt.tz_localize(None).dt.floor("D")


def select_daily_observations(
    history: pd.DataFrame, count_from: dt.date | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keeps one validated observation per pool and UTC day.

    The latest observation of the day is kept first (tie on the timestamp: the highest ``id``) and validated
    afterwards, so a day whose latest observation has a bad apy is rejected even if an earlier one was fine.

    Args:
        history: Columns ``id``, ``pool_id``, ``timestamp`` (tz-aware, any offset; naive means UTC),
            ``apy_raw`` and ``tvl_raw`` (the JSON fields as text, None when absent or JSON null).
        count_from: Count rejections and NULLed tvls only for days on or after this date: the look-back
            history read before ``--start`` feeds the windows but is not part of the run's report.

    Returns:
        ``daily`` with columns ``pool_id``, ``date`` (midnight, datetime64), ``apy`` (finite), ``tvl`` (NaN when
        NULLed), sorted by pool and date; and the counts by reason (all keys of
        :data:`APY_REJECTION_REASONS` and :data:`TVL_NULLED_REASONS`). tvl reasons are counted on surviving
        rows only.
    """
    counts = dict.fromkeys((*APY_REJECTION_REASONS, *TVL_NULLED_REASONS), 0)
    observations = history.assign(
        date=_utc_day(history["timestamp"]), _instant=pd.to_datetime(history["timestamp"], utc=True)
    )
    kept = (
        observations.sort_values(["pool_id", "date", "_instant", "id"])
        .drop_duplicates(["pool_id", "date"], keep="last")
        .reset_index(drop=True)
    )
    apy = [_parse_field(v, "apy", negative_is_bad=False) for v in kept["apy_raw"]]
    tvl = [_parse_field(v, "tvl", negative_is_bad=True) for v in kept["tvl_raw"]]
    validated = pd.DataFrame(
        {
            "pool_id": kept["pool_id"],
            "date": kept["date"],
            "apy": pd.Series([value for value, _ in apy], dtype="float64"),
            "tvl": pd.Series([value for value, _ in tvl], dtype="float64"),
            "apy_issue": pd.Series([issue for _, issue in apy], dtype="object"),
            "tvl_issue": pd.Series([issue for _, issue in tvl], dtype="object"),
        }
    )
    survives = validated["apy_issue"].isna()
    reported = (
        validated["date"] >= pd.Timestamp(count_from) if count_from is not None else pd.Series(True, validated.index)
    )
    for reason, n in validated.loc[reported, "apy_issue"].value_counts().items():
        counts[reason] = int(n)
    for reason, n in validated.loc[reported & survives, "tvl_issue"].value_counts().items():
        counts[reason] = int(n)
    daily = validated.loc[survives, ["pool_id", "date", "apy", "tvl"]].reset_index(drop=True)
    return daily, counts


def _window_stats(apy: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample stddev over the trailing ``days`` calendar days of a gap-filled daily apy array.

    Computed exactly per window (two-pass) rather than with pandas' ``rolling('7D')``, whose add/remove
    online update carries rounding error from values that left the window long ago (after a spike, later
    stddevs drift); the windows are the same: [d-(days-1), d].
    """
    padded = np.concatenate([np.full(days - 1, np.nan), apy])
    windows = sliding_window_view(padded, days)  # row i: calendar days i-days+1 .. i
    count = np.count_nonzero(~np.isnan(windows), axis=1)
    # An overflow (apy values above ~1e154) gives an infinite value, which compute_pool_metrics makes NULL.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = np.nansum(windows, axis=1) / count
        # Deviations from the day's own value first: a window of identical values then gives exactly 0
        # (as Spark's Welford update does), and the subtraction loses less precision.
        shifted = windows - apy[:, None]
        shifted_mean = np.nansum(shifted, axis=1) / count
        variance = np.nansum((shifted - shifted_mean[:, None]) ** 2, axis=1) / (count - 1)
    stddev = np.where(count >= 2, np.sqrt(np.maximum(variance, 0.0)), np.nan)
    return mean, stddev


def _day_over_day(values: np.ndarray) -> np.ndarray:
    """values[d] - values[d-1] on a gap-filled daily array: NaN when either day is missing."""
    previous = np.concatenate([[np.nan], values[:-1]])
    with np.errstate(invalid="ignore", over="ignore"):  # Infinity - Infinity, made NULL by compute_pool_metrics
        return values - previous


def compute_pool_metrics(daily_one_pool: pd.DataFrame) -> pd.DataFrame:
    """Rolling means, stddevs and day-over-day deltas of one pool's daily apy.

    Args:
        daily_one_pool: One pool's rows of :func:`select_daily_observations`: ``date`` (midnight, unique),
            ``apy`` (finite), ``tvl``; ``pool_id`` is carried over when present.

    Returns:
        One row per input day, sorted by date: ``[pool_id,] date`` and :data:`POOL_METRIC_COLUMNS`
        (NaN = NULL).
    """
    carried = ["pool_id", "date"] if "pool_id" in daily_one_pool.columns else ["date"]
    if daily_one_pool.empty:
        return pd.DataFrame(columns=[*carried, *POOL_METRIC_COLUMNS])
    pool = daily_one_pool.sort_values("date").reset_index(drop=True)
    dates = pd.DatetimeIndex(pool["date"])
    if dates.has_duplicates:
        raise ValueError("compute_pool_metrics needs one row per day (run select_daily_observations first)")
    if not np.isfinite(pool["apy"].to_numpy(dtype="float64")).all():
        raise ValueError("compute_pool_metrics needs finite apy values (run select_daily_observations first)")

    # On a gap-free calendar, "d-1" and "[d-6, d]" are plain array offsets; missing days are NaN.
    calendar = pd.date_range(dates[0], dates[-1], freq="D")
    apy = pool.set_index(dates)["apy"].astype("float64").reindex(calendar).to_numpy()
    observed = calendar.isin(dates)
    rolling_7d, stddev_7d = _window_stats(apy, 7)
    rolling_30d, stddev_30d = _window_stats(apy, 30)
    # A day without a row has no stddev, so the next day's stddev delta is NULL.
    stddev_7d = np.where(observed, stddev_7d, np.nan)
    stddev_30d = np.where(observed, stddev_30d, np.nan)
    on_calendar = pd.DataFrame(
        {
            "rolling_apy_7d": rolling_7d,
            "rolling_apy_30d": rolling_30d,
            "apy_delta_today_yesterday": _day_over_day(apy),
            "stddev_apy_7d": stddev_7d,
            "stddev_apy_30d": stddev_30d,
            "stddev_apy_7d_delta": _day_over_day(stddev_7d),
            "stddev_apy_30d_delta": _day_over_day(stddev_30d),
        },
        index=calendar,
    )
    # A sum of squares beyond float64's range (apy values above ~1e154 in a window) gives an infinite stddev, and
    # deltas of infinite values are infinite or NaN: a value that is not finite is NULL.
    on_calendar = on_calendar.where(np.isfinite(on_calendar))
    actuals = pool[["apy", "tvl"]].astype("float64").set_axis(["actual_apy", "actual_tvl"], axis=1)
    per_day = on_calendar.loc[dates].reset_index(drop=True)
    return pd.concat([pool[carried], actuals, per_day], axis=1)[[*carried, *POOL_METRIC_COLUMNS]]


def daily_closes(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """One close per CMC date (UTC date of ``data_timestamp``) for one symbol.

    Unusable closes (missing, not numeric, not finite) are dropped first, then the latest ``data_timestamp``
    of the date wins (tie: the highest ``id``); a date without a usable close is as if it were missing, so
    the as-of lookup falls back to an earlier date. This mirrors the Spark job's ``daily_closes``.

    Args:
        ohlcv: Columns ``id``, ``data_timestamp`` and ``close_raw`` (``raw_json_data->'USD'->>'close'``).

    Returns:
        Columns ``date`` (midnight, datetime64) and ``close``, sorted by date.
    """
    closes = ohlcv.assign(
        date=_utc_day(ohlcv["data_timestamp"]),
        _instant=pd.to_datetime(ohlcv["data_timestamp"], utc=True),
        close=[_parse_field(v, "close", negative_is_bad=False)[0] for v in ohlcv["close_raw"]],
    )
    usable = closes[np.isfinite(closes["close"].to_numpy(dtype="float64"))]
    latest = usable.sort_values(["date", "_instant", "id"]).drop_duplicates("date", keep="last")
    return latest[["date", "close"]].astype({"close": "float64"}).reset_index(drop=True)


def _as_of(
    days: pd.Series,
    values_by_date: pd.DataFrame,
    value_column: str,
    *,
    strictly_before: bool,
    max_age_days: int = EXOGENOUS_MAX_AGE_DAYS,
) -> np.ndarray:
    """For each day: the value on the latest date before it (``strictly_before``) or on or before it; NaN when
    that date is more than ``max_age_days`` before the day (a stale value is not carried forward)."""
    usable = values_by_date[np.isfinite(values_by_date[value_column].to_numpy(dtype="float64"))]
    usable = usable.sort_values("date")
    dates = pd.DatetimeIndex(usable["date"])
    if dates.has_duplicates:
        raise ValueError(f"more than one {value_column} per date")
    values = usable[value_column].to_numpy(dtype="float64")
    # searchsorted on the sorted dates: side="left" counts dates < day, side="right" dates <= day.
    position = dates.searchsorted(pd.DatetimeIndex(days), side="left" if strictly_before else "right") - 1
    found = position >= 0
    age = (pd.DatetimeIndex(days) - dates[np.maximum(position, 0)]).days if len(dates) else np.zeros(len(days))
    found &= np.asarray(age) <= max_age_days
    result = np.full(len(days), np.nan)
    result[found] = values[position[found]]
    return result


def attach_exogenous(
    metrics: pd.DataFrame, eth_closes: pd.DataFrame, btc_closes: pd.DataFrame, gas: pd.DataFrame
) -> pd.DataFrame:
    """Adds ``eth_open``, ``btc_open`` (close of the latest date < d) and ``gas_price_gwei`` (latest date <= d).

    These are as-of lookups on dates, not a lag over rows: a missing CMC or gas date does not shift the
    values by a day. Dates without a usable (finite, non-NULL) value are skipped. A value from more than
    :data:`EXOGENOUS_MAX_AGE_DAYS` days before d is stale: NULL.

    Args:
        metrics: Any frame with a ``date`` column (midnight datetime64).
        eth_closes: ``date``, ``close`` (one row per date, e.g. from :func:`daily_closes`).
        btc_closes: ``date``, ``close``.
        gas: ``date``, ``gas_gwei`` (one row per date).

    Returns:
        ``metrics`` with the three columns added (NaN = NULL), rows in the same order.
    """
    days = metrics["date"]
    return metrics.assign(
        eth_open=_as_of(days, eth_closes, "close", strictly_before=True),
        btc_open=_as_of(days, btc_closes, "close", strictly_before=True),
        gas_price_gwei=_as_of(days, gas, "gas_gwei", strictly_before=False),
    )


def in_date_range(frame: pd.DataFrame, start: dt.date | None, end: dt.date | None) -> pd.DataFrame:
    """Rows whose ``date`` lies in [start, end] (an open bound when None)."""
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= frame["date"] >= pd.Timestamp(start)
    if end is not None:
        keep &= frame["date"] <= pd.Timestamp(end)
    return frame[keep]


# --------------------------------------------------------------------------------------------------------------
# I/O
# --------------------------------------------------------------------------------------------------------------


def fetch_pool_history(conn: Connection, since: dt.date | None, until: dt.date, now: dt.datetime) -> pd.DataFrame:
    """History rows of the active pools observed on UTC days [since, until], plus every row whose timestamp is
    rejected (later than ``now`` + skew, or before the earliest believable time), in one query.

    Args:
        conn: SQLAlchemy connection.
        since: First UTC day to read (None: from the beginning).
        until: Last UTC day to read, inclusive.
        now: The run's reference time.

    Returns:
        Columns ``id``, ``pool_id``, ``timestamp`` (UTC; NaT when rejected), ``timestamp_problem`` (None or a
        :data:`TIMESTAMP_REJECTION_REASONS` value), ``apy_raw``, ``tvl_raw`` (text or None).
    """
    history = pd.read_sql(text(time_bounds.history_query(since, until, now)), conn).rename(
        columns={"history_id": "id", "observed_at": "timestamp", "apy_text": "apy_raw", "tvl_text": "tvl_raw"}
    )
    history["timestamp"] = pd.to_datetime(history["timestamp"], utc=True)
    return history


def split_timestamp_rejections(history: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drops the rows whose timestamp the history query rejected; returns the rest and the counts by reason."""
    rejected = history["timestamp_problem"].notna()
    found = history.loc[rejected, "timestamp_problem"].value_counts()
    counts = {reason: int(found.get(reason, 0)) for reason in TIMESTAMP_REJECTION_REASONS}
    return history.loc[~rejected].drop(columns="timestamp_problem").reset_index(drop=True), counts


def fetch_coinmarketcap_closes(conn: Connection, symbol: str, until: dt.date, now: dt.datetime) -> pd.DataFrame:
    """One symbol's CMC rows up to UTC day ``until`` (inclusive) and ``now`` + skew, with no lower bound: the
    as-of lookup may need a close from before ``--start``.

    Returns:
        Columns ``id``, ``data_timestamp`` (UTC), ``close_raw`` (text or None).
    """
    closes = pd.read_sql(text(time_bounds.cmc_query(until, now)), conn)
    closes = closes[closes["symbol"] == symbol].rename(columns={"close_text": "close_raw"}).reset_index(drop=True)
    closes["data_timestamp"] = pd.to_datetime(closes["data_timestamp"], utc=True)
    return closes[["id", "data_timestamp", "close_raw"]]


def fetch_gas(conn: Connection, until: dt.date, now: dt.datetime) -> pd.DataFrame:
    """Daily gas prices up to ``until`` and today (inclusive), no lower bound (as-of lookup).

    Returns:
        Columns ``date`` (midnight datetime64) and ``gas_gwei`` (float; NaN for NULL).
    """
    # numeric -> double in the database: correctly rounded, and the Spark job reads it the same way.
    gas = pd.read_sql(text(time_bounds.gas_query(until, now)), conn)
    gas["date"] = pd.to_datetime(gas["date"])
    gas["gas_gwei"] = gas["gas_gwei"].astype("float64")
    return gas


def check_table_name(name: str) -> str:
    """Returns ``name`` if it is a plain lower-case SQL identifier, else raises ValueError."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain lower-case table name: {name!r}")
    return name


def ensure_target_table(conn: PgConnection, target_table: str) -> None:
    """Creates ``target_table`` with the production schema if it does not exist (no-op for production)."""
    statement = sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)").format(
        sql.Identifier(check_table_name(target_table)), sql.Identifier(PRODUCTION_TABLE)
    )
    with conn.cursor() as cur:
        cur.execute(statement)


def _db_value(value: Any) -> Any:
    # psycopg2 would send a float NaN as 'NaN'::float; a missing metric is NULL.
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_metrics(conn: PgConnection, frame: pd.DataFrame, target_table: str, page_size: int = 1000) -> int:
    """Upserts metric rows; on conflict only the metric columns (and ``updated_at``) are updated.

    ``forecasted_*`` are never written, so a rollback run into the production table keeps the forecasts.
    Runs in the caller's transaction (no commit).

    Args:
        conn: psycopg2 connection.
        frame: ``pool_id``, ``date`` and :data:`METRIC_COLUMNS` (NaN = NULL), unique on (pool_id, date).
        target_table: Plain lower-case table name with the ``pool_daily_metrics`` schema.
        page_size: Rows per multi-row INSERT.

    Returns:
        The number of rows written.
    """
    columns = [*KEY_COLUMNS, *METRIC_COLUMNS]
    if frame.duplicated(list(KEY_COLUMNS)).any():
        # One INSERT ... ON CONFLICT cannot update the same row twice.
        raise ValueError("metric rows are not unique on (pool_id, date)")
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES %s ON CONFLICT ({keys}) DO UPDATE SET {assignments}, updated_at = now()"
    ).format(
        table=sql.Identifier(check_table_name(target_table)),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        keys=sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMNS)),
        assignments=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in METRIC_COLUMNS),
    )
    rows = [
        (pool_id, day.date(), *map(_db_value, values))
        for pool_id, day, *values in frame[columns].itertuples(index=False, name=None)
    ]
    if rows:
        with conn.cursor() as cur:
            execute_values(cur, statement.as_string(conn), rows, page_size=page_size)
    return len(rows)


def run(
    config: DbConfig,
    start: dt.date | None = None,
    end: dt.date | None = None,
    target_table: str = DEFAULT_TARGET_TABLE,
    replace_range: bool = False,
    now: dt.datetime | None = None,
    run_id: str = "",
) -> dict[str, Any]:
    """Computes the metrics of days [start, end] and upserts them into ``target_table`` in one transaction.

    History is read from ``start`` - 30 days so that windows and deltas of the first days are complete;
    CMC closes and gas prices are read with no lower bound. Pools are processed one by one.

    Args:
        config: Database location; the password is resolved from its secret reference.
        start: First day to write (None: from the first observation).
        end: Last day to write, inclusive (None: today, UTC, of ``now``).
        target_table: A shadow table (created if missing) or ``pool_daily_metrics`` (rollback).
        replace_range: Delete the target's rows in [start, end] first (same transaction), so that a shadow table
            holds exactly this run's rows for the range (rows of an earlier run that would no longer be produced
            must not show up in the parity comparison). Refused on the production table: it would drop forecasts.
        now: The run's reference time (None: the current time); later observations are rejected.
        run_id: The pipeline run, for the sessions' ``application_name``.

    Returns:
        ``pools`` (pools with at least one row written), ``rows_written``, ``rejected`` and ``tvl_nulled``
        (counts by reason, days in [start, end] only; timestamp rejections over all rows read),
        ``active_pools_without_rows``, ``target_table``, ``start``, ``end``, ``now``.
    """
    check_table_name(target_table)
    if replace_range and target_table == PRODUCTION_TABLE:
        raise ValueError(f"replace_range would delete rows (and forecasts) of {PRODUCTION_TABLE}; use a shadow table")
    now = now or time_bounds.utc_now()
    end = time_bounds.default_end(end, now)
    if start is not None and start > end:
        raise ValueError(f"start {start} is after the run's last day {end}")
    read_from = start - dt.timedelta(days=LOOKBACK_DAYS) if start is not None else None

    # One transaction for the reads and the write: a failed run leaves the target untouched.
    with transaction(config.named("legacy_metrics", run_id)) as conn:
        history, timestamp_rejections = split_timestamp_rejections(fetch_pool_history(conn, read_from, end, now))
        ohlcv_eth = fetch_coinmarketcap_closes(conn, "ETH", end, now)
        ohlcv_btc = fetch_coinmarketcap_closes(conn, "BTC", end, now)
        gas = fetch_gas(conn, end, now)
        active_pools = conn.execute(text(time_bounds.active_pools_query())).scalar_one()

        daily, counts = select_daily_observations(history, count_from=start)
        per_pool = []
        for _, pool_daily in daily.groupby("pool_id", sort=True):
            per_pool.append(in_date_range(compute_pool_metrics(pool_daily), start, end))
        if per_pool:
            metrics = pd.concat(per_pool, ignore_index=True)
        else:
            metrics = pd.DataFrame(columns=["pool_id", "date", *POOL_METRIC_COLUMNS])
            metrics["date"] = pd.to_datetime(metrics["date"])
        metrics = attach_exogenous(metrics, daily_closes(ohlcv_eth), daily_closes(ohlcv_btc), gas)

        # Writers of one table queue here (the rollback path may meet the pipeline's promotion).
        pg.lock_for_promotion(conn, target_table)
        raw = conn.connection.driver_connection
        ensure_target_table(raw, target_table)
        if replace_range:
            _delete_range(raw, target_table, start, end)
        rows_written = write_metrics(raw, metrics, target_table)
        faults.maybe_kill("legacy")

    pools = int(metrics["pool_id"].nunique())
    return {
        "pools": pools,
        "rows_written": rows_written,
        "rejected": {
            **{reason: counts[reason] for reason in APY_REJECTION_REASONS},
            **timestamp_rejections,
        },
        "tvl_nulled": {reason: counts[reason] for reason in TVL_NULLED_REASONS},
        # Active pools with no accepted day in the range (no history at all, or every day rejected).
        "active_pools_without_rows": int(active_pools) - pools,
        "target_table": target_table,
        "start": start.isoformat() if start else None,
        "end": end.isoformat(),
        "now": now.isoformat(),
    }


def _delete_range(conn: PgConnection, target_table: str, start: dt.date | None, end: dt.date | None) -> None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "DELETE FROM {} WHERE (%s::date IS NULL OR date >= %s) AND (%s::date IS NULL OR date <= %s)"
            ).format(sql.Identifier(target_table)),
            (start, start, end, end),
        )


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m legacy.calculate_pool_metrics",
        description="Legacy pandas pool-metrics job. Connection settings come from DB_URL or "
        "DB_HOST/DB_PORT/DB_NAME/DB_USER, the password from the secret named by DB_PASSWORD_SECRET "
        "(default env:DB_PASSWORD).",
    )
    parser.add_argument("--start", type=dt.date.fromisoformat, help="first day to write, YYYY-MM-DD (default: all)")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last day to write, inclusive (default: today, UTC)")
    parser.add_argument(
        "--now",
        type=time_bounds.parse_now,
        default="",
        help="the run's reference time (ISO; default: the current time): later observations are rejected",
    )
    parser.add_argument(
        "--target-table",
        default=DEFAULT_TARGET_TABLE,
        type=check_table_name,
        help=f"table to upsert into (default: {DEFAULT_TARGET_TABLE}; {PRODUCTION_TABLE} for a rollback)",
    )
    args = parser.parse_args(list(argv))
    if args.start and args.end and args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    return args


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Runs the job from the command line; logs and returns the summary."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = DbConfig.from_env(None if environ is None else dict(environ))
    log.info(
        "pool metrics %s..%s from %s into %s",
        args.start or "first day",
        args.end or "today",
        config.url,  # password-less
        args.target_table,
    )
    summary = run(config, args.start, args.end, args.target_table, now=args.now)
    log.info("summary %s", json.dumps(summary, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
