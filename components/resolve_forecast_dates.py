"""Fixes the run's forecast dates once, so the Spark and legacy forecasters and the evaluation agree on them."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def resolve_forecast_dates(
    database_url: str,
    as_of: str = "",
    holdout_days: int = 3,
    now: str = "",
    password_secret: str = "env:DB_PASSWORD",
) -> NamedTuple("ForecastDates", as_of=str, forecast_date=str, holdout_as_of=str):
    """The as-of date (default: the latest day up to today, UTC, with actuals) and the holdout as-of dates.

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        as_of: ISO date to forecast from; empty for the latest day up to today with an ``actual_apy``.
        holdout_days: Backtest as-of dates: the ``holdout_days`` days before ``as_of`` (their next days have
            actuals, so forecasts made from them can be scored).
        now: The run's clock (ISO timestamp, the run context's): "today" is its UTC date; empty: this step's.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).

    Returns:
        as_of: The as-of date.
        forecast_date: as_of + 1, the day the production forecasts are for.
        holdout_as_of: Comma-separated backtest as-of dates, oldest first.
    """
    import datetime as dt
    from collections import namedtuple

    from sqlalchemy import text

    from spark_src.common import time_bounds
    from spark_src.common.config import DbConfig
    from spark_src.common.sql import connect

    if holdout_days < 1:
        raise ValueError(f"holdout_days must be >= 1 (the evaluation scores the holdout dates), got {holdout_days}")
    now = time_bounds.parse_now(now)
    with connect(DbConfig.from_url(database_url, password_secret).named("resolve_forecast_dates")) as conn:
        latest = conn.execute(text(time_bounds.latest_actuals_query(now))).scalar()
    if latest is None:
        raise RuntimeError(f"pool_daily_metrics has no actuals up to today ({now.date()}): nothing to forecast from")
    day = dt.date.fromisoformat(as_of) if as_of else latest
    if day > latest:
        raise ValueError(f"as_of {day} is after the latest day up to today with actuals ({latest})")
    holdouts = [day - dt.timedelta(days=k) for k in range(holdout_days, 0, -1)]
    result = namedtuple("ForecastDates", ["as_of", "forecast_date", "holdout_as_of"])
    return result(day.isoformat(), (day + dt.timedelta(days=1)).isoformat(), ",".join(d.isoformat() for d in holdouts))
