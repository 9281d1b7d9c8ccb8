"""Time bounds shared by the Spark and the legacy pool-metrics jobs: which observations are believable, which
day a run ends on, how old an exogenous value may be.

Pure Python (no pyspark import): the legacy job and the components import it too. Both jobs read the history
with the SQL text of :func:`history_query`, so they classify timestamps identically, in the database, before any
engine has to hold a timestamp: ``'infinity'``, year 3000 (beyond pandas' nanosecond range) or year 294276 never
reach pandas or the JVM as values.

- An observation later than ``now`` + :data:`FUTURE_SKEW` is rejected as ``timestamp_in_future``;
- one before :data:`EARLIEST_OBSERVATION` as ``timestamp_out_of_range``.
  Both are counted per observation (not per day), over the whole table: they are never accepted by any run.
- ``end`` defaults to today (UTC) of ``now``.
- ``eth_open``/``btc_open``/``gas_price_gwei`` come from a source date at most :data:`EXOGENOUS_MAX_AGE_DAYS`
  days before the metric's day; older values are NULL, not carried forward.
"""

from __future__ import annotations

import datetime as dt

# Clocks of the ingestion hosts and of this job may differ by this much: an observation stamped up to 10 minutes
# ahead of the job's clock is accepted.
FUTURE_SKEW = dt.timedelta(minutes=10)
# Bitcoin's genesis block: no on-chain pool can have been observed earlier.
EARLIEST_OBSERVATION = dt.datetime(2009, 1, 3, tzinfo=dt.UTC)
# An ETH/BTC close or gas price older than this (in days before the metric's day) is stale and becomes NULL.
EXOGENOUS_MAX_AGE_DAYS = 7

TIMESTAMP_REJECTION_REASONS = ("timestamp_in_future", "timestamp_out_of_range")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_now(text: str | None) -> dt.datetime:
    """``--now`` of a job: an ISO timestamp (naive = UTC) or empty for the current time."""
    if not text or not text.strip():
        return utc_now()
    moment = dt.datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def default_end(end: dt.date | None, now: dt.datetime) -> dt.date:
    """The last day of a run: ``end`` if given, else today (UTC) of ``now``."""
    return end if end is not None else now.astimezone(dt.UTC).date()


def latest_believable(now: dt.datetime) -> dt.datetime:
    return now + FUTURE_SKEW


def _timestamp(moment: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(dt.UTC).isoformat()}'"


def _midnight(day: dt.date) -> str:
    return f"TIMESTAMPTZ '{day.isoformat()} 00:00:00+00'"


def history_query(since: dt.date | None, end: dt.date, now: dt.datetime) -> str:
    """The active pools' history rows of UTC days [since, end], plus every row with an unbelievable timestamp.

    Columns: ``history_id``, ``pool_id``, ``observed_at`` (NULL when the timestamp is rejected),
    ``timestamp_problem`` (NULL or a :data:`TIMESTAMP_REJECTION_REASONS` value), ``apy_text``, ``tvl_text``.
    The SQL holds only literals built here from dates (no caller text), so both engines can run it as is.
    """
    latest, earliest = _timestamp(latest_believable(now)), _timestamp(EARLIEST_OBSERVATION)
    in_range = [f'h."timestamp" < {_midnight(end + dt.timedelta(days=1))}']
    if since is not None:
        in_range.append(f'h."timestamp" >= {_midnight(since)}')
    return f"""SELECT h.id AS history_id, h.pool_id,
               CASE WHEN h."timestamp" BETWEEN {earliest} AND {latest} THEN h."timestamp" END AS observed_at,
               CASE WHEN h."timestamp" > {latest} THEN 'timestamp_in_future'
                    WHEN h."timestamp" < {earliest} THEN 'timestamp_out_of_range' END AS timestamp_problem,
               h.raw_json_data->>'apy' AS apy_text, h.raw_json_data->>'tvlUsd' AS tvl_text
        FROM raw_defillama_pool_history h JOIN pools p ON p.pool_id = h.pool_id
        WHERE p.is_active
          AND (({" AND ".join(in_range)}) OR h."timestamp" > {latest} OR h."timestamp" < {earliest})"""


def timestamp_rejections_query(now: dt.datetime) -> str:
    """How many of the active pools' observations :func:`history_query` rejects, by reason: one row with a
    column per :data:`TIMESTAMP_REJECTION_REASONS` value (an index range scan on ``timestamp``, not a table scan).
    """
    latest, earliest = _timestamp(latest_believable(now)), _timestamp(EARLIEST_OBSERVATION)
    return f"""SELECT count(*) FILTER (WHERE h."timestamp" > {latest}) AS timestamp_in_future,
               count(*) FILTER (WHERE h."timestamp" < {earliest}) AS timestamp_out_of_range
        FROM raw_defillama_pool_history h JOIN pools p ON p.pool_id = h.pool_id
        WHERE p.is_active AND (h."timestamp" > {latest} OR h."timestamp" < {earliest})"""


def cmc_query(end: dt.date, now: dt.datetime) -> str:
    """ETH/BTC closes up to day ``end`` (no lower bound: the as-of lookup reaches back), believable times only.

    Columns: ``id``, ``symbol``, ``data_timestamp``, ``close_text``.
    """
    upper = min(latest_believable(now), dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC))
    return (
        "SELECT id, symbol, data_timestamp, raw_json_data->'USD'->>'close' AS close_text "
        "FROM raw_coinmarketcap_ohlcv WHERE symbol IN ('ETH', 'BTC') "
        f"AND data_timestamp >= {_timestamp(EARLIEST_OBSERVATION)} AND data_timestamp < {_timestamp(upper)}"
    )


def gas_query(end: dt.date, now: dt.datetime) -> str:
    """Daily gas prices of dates up to ``end`` and today (no lower bound). Columns: ``date``, ``gas_gwei``."""
    last = min(end, latest_believable(now).date())
    return (
        "SELECT date, actual_avg_gas_gwei::double precision AS gas_gwei FROM gas_fees_daily "
        f"WHERE date BETWEEN DATE '{EARLIEST_OBSERVATION.date().isoformat()}' AND DATE '{last.isoformat()}'"
    )


def active_pools_query() -> str:
    return "SELECT count(*) AS active_pools FROM pools WHERE is_active"


def latest_actuals_query(now: dt.datetime) -> str:
    """The default forecast ``as_of``: the latest day up to today (UTC of ``now``) with an actual APY. A row
    dated later is never a day with actuals, whatever upstream wrote. Column: ``as_of``."""
    today = now.astimezone(dt.UTC).date()
    return (
        "SELECT max(date) AS as_of FROM pool_daily_metrics "
        f"WHERE actual_apy IS NOT NULL AND date <= DATE '{today.isoformat()}'"
    )
