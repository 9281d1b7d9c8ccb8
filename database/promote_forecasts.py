"""Promotion of a run's gated forecasts, in one transaction, after the forecast evaluation has chosen the model.

- ``pool_daily_metrics``: the chosen model's forecasts of as_of + 1 (the Spark model's, or ``naive`` when the
  model lost to persistence on the holdout) go into ``forecasted_apy``/``forecasted_tvl``, with the model's
  name in ``forecast_model``. A forecast outside the plausibility bounds, or not finite, is not promoted and
  is counted (``rejected_implausible``): the Spark job clips its forecasts, so this is a last guard;
- ``pool_forecast_history``: every staged forecast of the run (both models for as_of + 1, the backtests of
  Spark, naive and legacy);
- ``pool_observation_quarantine``: the observations the run's forecast job quarantined.

Nothing is written before the evaluation passed (the pipeline runs this step after it), and an error rolls
everything back: the targets are untouched and the staging tables are kept for inspection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from database.promote import upsert_sql
from spark_src.common import faults
from spark_src.common.config import DbConfig
from spark_src.common.pg import lock_for_promotion
from spark_src.common.sql import check_identifiers, table_exists, transaction

log = logging.getLogger(__name__)

METRICS_TABLE = "pool_daily_metrics"
HISTORY_TABLE = "pool_forecast_history"
QUARANTINE_TABLE = "pool_observation_quarantine"
HISTORY_KEY = ["pool_id", "forecast_date", "model", "run_id"]
QUARANTINE_KEY = ["pool_id", "date", "column_name", "run_id"]


@dataclass(frozen=True)
class ForecastPromotion:
    model: str
    staged: int  # the chosen model's staged forecasts of as_of + 1
    inserted: int
    updated: int
    rejected_implausible: int
    history_rows: int
    quarantine_rows: int

    @property
    def unchanged(self) -> int:
        return self.staged - self.rejected_implausible - self.inserted - self.updated

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "staged": self.staged,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected_implausible": self.rejected_implausible,
            "history_rows": self.history_rows,
            "quarantine_rows": self.quarantine_rows,
        }


def promote_forecasts(
    db: DbConfig,
    *,
    run_id: str,
    model: str,
    forecast_table: str,
    backtest_tables: list[str],
    quarantine_table: str = "",
    apy_bounds: tuple[float, float] = (-100.0, 10_000.0),
    drop_staging: bool = True,
) -> ForecastPromotion:
    """Promotes ``model``'s forecasts into ``pool_daily_metrics`` and every staged row into the history tables.

    Args:
        db: The database.
        run_id: The run whose staged rows are promoted.
        model: ``model`` of the forecasts of as_of + 1 to show (the evaluation's choice).
        forecast_table: Staging table of the forecasts of as_of + 1 (pool_id, date, forecast_date, as_of, model,
            run_id, forecasted_apy, forecasted_tvl).
        backtest_tables: Staging tables of backtests (the Spark job's, the legacy forecaster's); may be empty.
        quarantine_table: Staging table of the run's quarantined observations; empty for none.
        apy_bounds: [min, max] of a promotable APY forecast (the quarantine rule's bounds).
        drop_staging: Drop the staging tables in the same transaction.

    Raises:
        ValueError: a name is not a plain identifier; RuntimeError: a staging table is missing, or the chosen
        model has no staged forecast (nothing is written then).
    """
    tables = [forecast_table, *backtest_tables, *([quarantine_table] if quarantine_table else [])]
    check_identifiers(*tables)
    with transaction(db) as conn:
        # The same per-table locks as every other promotion (database.promote), always in this order: a metrics
        # upsert or another run's forecast promotion into these tables queues, it does not interleave.
        for target in (METRICS_TABLE, HISTORY_TABLE, QUARANTINE_TABLE):
            lock_for_promotion(conn, target)
        for table in tables:
            if not table_exists(conn, table):
                raise RuntimeError(f"staging table {table} does not exist; nothing promoted")
        staged, rejected, inserted, updated = _promote_chosen(conn, run_id, model, forecast_table, apy_bounds)
        history_rows = sum(
            _upsert(conn, table, HISTORY_TABLE, HISTORY_KEY, ["as_of", "forecasted_apy", "forecasted_tvl"])
            for table in [forecast_table, *backtest_tables]
        )
        quarantine_rows = (
            _upsert(conn, quarantine_table, QUARANTINE_TABLE, QUARANTINE_KEY, ["value", "reference", "reason"])
            if quarantine_table
            else 0
        )
        if drop_staging:
            for table in tables:
                conn.exec_driver_sql(f'DROP TABLE "{table}"')
        faults.maybe_kill("promote_forecasts")
    promotion = ForecastPromotion(model, staged, inserted, updated, rejected, history_rows, quarantine_rows)
    log.info("forecasts of run %s promoted: %s", run_id, promotion.as_dict())
    return promotion


def _upsert(conn, staging_table: str, target_table: str, key_columns: list[str], update_columns: list[str]) -> int:
    """Upserts ``staging_table`` into ``target_table``; returns the staging table's rows."""
    from sqlalchemy import text

    conn.execute(text(upsert_sql(staging_table, target_table, key_columns, update_columns)))
    return conn.execute(text(f'SELECT count(*) FROM "{staging_table}"')).scalar()


def _promote_chosen(
    conn, run_id: str, model: str, forecast_table: str, apy_bounds: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(staged, rejected, inserted, updated) of ``model``'s forecasts upserted into ``pool_daily_metrics``."""
    from sqlalchemy import text

    params = {"model": model, "run_id": run_id, "low": apy_bounds[0], "high": apy_bounds[1]}
    # NaN sorts above every number in PostgreSQL, so BETWEEN also refuses NaN; a NULL tvl stays promotable.
    plausible = (
        "forecasted_apy BETWEEN :low AND :high AND coalesce(abs(forecasted_tvl) < CAST('Infinity' AS float8), true)"
    )
    chosen = f'FROM "{forecast_table}" WHERE model = :model AND run_id = :run_id'
    staged, rejected = conn.execute(
        text(f"SELECT count(*), count(*) FILTER (WHERE NOT coalesce({plausible}, false)) {chosen}"), params
    ).one()
    if staged == 0:
        raise RuntimeError(f"{forecast_table} holds no forecast of model {model!r} for run {run_id}; nothing promoted")
    conn.execute(
        text(
            "CREATE TEMPORARY TABLE promoted_forecast ON COMMIT DROP AS SELECT pool_id, date, forecasted_apy, "
            f"forecasted_tvl, model AS forecast_model {chosen} AND {plausible}"
        ),
        params,
    )
    update = ["forecasted_apy", "forecasted_tvl", "forecast_model"]
    inserted, updated = conn.execute(
        text(upsert_sql("promoted_forecast", METRICS_TABLE, ["pool_id", "date"], update))
    ).one()
    return staged, rejected, inserted, updated
