"""The days a pool-metrics run computes: incremental by default, a full recompute or a backfill only on request.

- ``incremental`` (the default, and what the daily schedule runs): from the last promoted day minus
  ``late_days`` (observations that arrive late, or are corrected upstream, for days already promoted are
  picked up as long as they are at most ``late_days`` days older than the last promoted day) up to the latest
  day with data. With nothing promoted yet it is the full range. Explicit ``start``/``end`` are refused here:
  a backfill says so with ``mode=range``.
- ``range``: a backfill of [start, end]; an empty ``start`` is the first day with data, an empty ``end`` the
  latest.
- ``full``: every day with data.

The latest day with data is never after today (UTC): a future-stamped observation does not move the range.
The first is never before the earliest observation the jobs accept (:data:`time_bounds.EARLIEST_OBSERVATION`).
Pure Python (no pyspark): the pipeline's range step imports it with the database queries below.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from spark_src.common import time_bounds

MODES = ("incremental", "range", "full")
DEFAULT_LATE_DAYS = 2


class RangeError(ValueError):
    """The requested range cannot be resolved (bad parameters, or no data)."""


@dataclass(frozen=True)
class DataBounds:
    """What the database holds: the first and latest UTC days of history (up to today), the last promoted day."""

    first_day: dt.date | None
    latest_day: dt.date | None
    last_promoted: dt.date | None


@dataclass(frozen=True)
class RunRange:
    mode: str
    start: dt.date
    end: dt.date
    reason: str

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def as_dict(self) -> dict:
        return {**asdict(self), "start": self.start.isoformat(), "end": self.end.isoformat(), "days": self.days}


def _date(text: str, name: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise RangeError(f"{name} {text!r} is not an ISO date (YYYY-MM-DD)") from None


def resolve(mode: str, start: str, end: str, late_days: int, bounds: DataBounds) -> RunRange:
    """The run's [start, end] for ``mode`` (see the module docstring); raises RangeError with one clear line."""
    if mode not in MODES:
        raise RangeError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if late_days < 0:
        raise RangeError(f"late_days must be >= 0, got {late_days}")
    first, latest = bounds.first_day, bounds.latest_day
    if first is None or latest is None:
        raise RangeError("raw_defillama_pool_history has no observation of an active pool up to today: nothing to do")
    start_day, end_day = _date(start, "start"), _date(end, "end")

    if mode == "incremental":
        if start_day or end_day:
            raise RangeError(
                f"start/end ({start or '-'}..{end or '-'}) are for a backfill: pass mode=range with them, "
                "or leave them empty for an incremental run"
            )
        if bounds.last_promoted is None:
            return RunRange(mode, first, latest, "nothing promoted yet: every day with data")
        from_day = bounds.last_promoted - dt.timedelta(days=late_days)
        # Never before the data; never after the latest day (re-compute that day if nothing newer arrived).
        from_day = min(max(from_day, first), latest)
        return RunRange(
            mode,
            from_day,
            latest,
            f"last promoted day {bounds.last_promoted} minus {late_days} late-data days, to the latest day with data",
        )
    if mode == "full":
        if start_day or end_day:
            raise RangeError("mode=full computes every day with data: leave start/end empty (or use mode=range)")
        return RunRange(mode, first, latest, "full recompute: every day with data")

    start_day, end_day = start_day or first, end_day or latest
    if start_day > end_day:
        raise RangeError(f"start {start_day} is after end {end_day}")
    return RunRange(mode, start_day, end_day, f"backfill of {start_day}..{end_day}")


def fetch_bounds(conn, today: dt.date | None = None) -> DataBounds:
    """Reads :class:`DataBounds` with a SQLAlchemy connection.

    The last promoted day is the latest day of ``pool_daily_metrics`` with an actual: rows that only hold a
    forecast (for as_of + 1) are not promoted metrics.
    """
    from sqlalchemy import text

    today = today or dt.datetime.now(dt.UTC).date()
    before = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    # ORDER BY "timestamp" LIMIT 1 walks the raw_defillama_pool_history_ts index (schema.sql) from either end
    # until it meets an active pool's row: no table scan. A day counts when an active pool was observed on it
    # at a time the jobs accept: a row stamped before the earliest believable time ('-infinity', 1970) is
    # rejected by both jobs, and would otherwise start a full run in year 1.
    edge = (
        'SELECT h."timestamp" FROM raw_defillama_pool_history h JOIN pools p USING (pool_id) '
        'WHERE p.is_active AND h."timestamp" >= :earliest AND h."timestamp" < :before '
        'ORDER BY h."timestamp" {} LIMIT 1'
    )
    window = {"earliest": time_bounds.EARLIEST_OBSERVATION, "before": before}
    first = conn.execute(text(edge.format("ASC")), window).scalar()
    latest = conn.execute(text(edge.format("DESC")), window).scalar()
    last_promoted = conn.execute(text("SELECT max(date) FROM pool_daily_metrics WHERE actual_apy IS NOT NULL")).scalar()
    return DataBounds(
        first_day=first.astimezone(dt.UTC).date() if first else None,
        latest_day=latest.astimezone(dt.UTC).date() if latest else None,
        last_promoted=last_promoted,
    )
