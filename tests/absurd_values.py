"""Absurd but finite values planted in the raw history, and the check that no metric cell is NaN or Infinity:
shared by the tests that push such values through the jobs and the pipeline."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, text

from spark_src.common.columns import METRIC_COLUMNS
from spark_src.common.sql import check_identifier


def plant_apy(conn: Connection, day: dt.date, apy_text: str) -> str:
    """Sets the apy of one active, kept pool's latest observation of UTC ``day`` (the one the jobs keep) to
    ``apy_text``; returns that pool's id."""
    return conn.execute(
        text(
            """UPDATE raw_defillama_pool_history
               SET raw_json_data = jsonb_set(raw_json_data, '{apy}', to_jsonb(CAST(:apy AS text)))
               WHERE id = (SELECT DISTINCT ON (h.pool_id) h.id FROM raw_defillama_pool_history h
                           JOIN pools p ON p.pool_id = h.pool_id
                           WHERE p.is_active AND NOT p.is_filtered_out
                             AND h."timestamp" >= :day AND h."timestamp" < :day + 1
                           ORDER BY h.pool_id, h."timestamp" DESC, h.id DESC LIMIT 1)
               RETURNING pool_id"""
        ),
        {"apy": apy_text, "day": day},
    ).scalar_one()


def non_finite_metric_cells(conn: Connection, table: str) -> int:
    """How many metric cells of ``table`` hold NaN or +-Infinity (the metric semantics allow neither)."""
    cells = " + ".join(f"count(*) FILTER (WHERE {c} IN ('NaN', 'Infinity', '-Infinity'))" for c in METRIC_COLUMNS)
    return conn.execute(text(f'SELECT {cells} FROM "{check_identifier(table)}"')).scalar_one()
