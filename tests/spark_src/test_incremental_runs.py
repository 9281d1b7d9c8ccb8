"""Daily incremental runs build the same ``pool_daily_metrics`` as one full run (real PostgreSQL, local Spark).

The last days of history arrive one day at a time, as the daily ingestion delivers them, with an upstream
correction of an already-promoted day inside the late-data window. After each arrival an incremental run
resolves its range, runs the Spark job on it and promotes it. The table it ends with is compared, by
fingerprint, with the table one full run builds from the final data, read in four partitions where the daily
runs read one. Both on the demo's world and on the hard one (:mod:`database.synthetic`), whose 1e5-1e9 %
spikes make the rolling values large.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pytest
from kfp import dsl
from sqlalchemy import text

from components.upsert_staging import upsert_staging
from database.synthetic import SyntheticSpec, generate, load
from pipelines.local_run import table_fingerprint
from spark_src.pool_metrics import main as pool_metrics_main
from spark_src.pool_metrics import run_range
from spark_src.pool_metrics.main import main as run_spark_job
from spark_src.pool_metrics.transforms import METRIC_COLUMNS

pytestmark = pytest.mark.slow

D = dt.date
SPEC = SyntheticSpec(pools=10, days=45, seed=11)  # 2026-05-01 .. 2026-06-14
HELD_BACK_FROM = D(2026, 6, 11)  # 2026-06-11 .. 06-14 arrive one day at a time
LATE_DAYS = 2


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _promote(db, db_config, mode: str, run_no: int) -> tuple[run_range.RunRange, dict]:
    """One run as the pipeline does it: resolve the range, compute it into staging, upsert the staging table.
    Returns the range and the Spark job's summary."""
    with db.connect() as conn:
        resolved = run_range.resolve(mode, "", "", LATE_DAYS, run_range.fetch_bounds(conn))
    staging = f"stg_incremental_{run_no}"
    days = ["--start", resolved.start.isoformat(), "--end", resolved.end.isoformat()]
    summary = run_spark_job(["--run-id", f"r{run_no}", "--staging-table", staging, *days])
    upsert_staging.python_func(
        database_url=db_config.url,
        staging_table=staging,
        target_table="pool_daily_metrics",
        update_columns=METRIC_COLUMNS,
        promoted=dsl.Dataset(name="promoted", uri="", metadata={}),
        run_id=f"r{run_no}",
    )
    return resolved, summary


# The hard world with seed 7 has one-day spikes above 1e5 % on 2026-05-28, 06-02 and 06-12, the last one arriving
# in a daily run: rolling stddevs of ~1e7, whose deltas are only as exact as their operands, where any difference
# in the order of floating-point operations between incremental and full runs would show.
@pytest.mark.parametrize(("world", "seed", "giant_days"), [("default", 11, 0), ("hard", 7, 1)])
def test_daily_incremental_runs_equal_one_full_run(spark, db, db_config, monkeypatch, world, seed, giant_days):
    for key, value in db_config.env().items():
        monkeypatch.setitem(os.environ, key, value)
    load(db, generate(dataclasses.replace(SPEC, world=world, seed=seed)))
    with db.begin() as conn:
        conn.execute(
            text(
                'CREATE TABLE held_back AS SELECT * FROM raw_defillama_pool_history WHERE "timestamp" >= :d;'
                'DELETE FROM raw_defillama_pool_history WHERE "timestamp" >= :d'
            ),
            {"d": _utc_midnight(HELD_BACK_FROM)},
        )

    ranges = [_promote(db, db_config, "incremental", 0)[0]]  # nothing promoted yet: every day so far
    for k in range(4):
        day = HELD_BACK_FROM + dt.timedelta(days=k)
        with db.begin() as conn:
            conn.execute(
                text(
                    'INSERT INTO raw_defillama_pool_history SELECT * FROM held_back WHERE "timestamp" >= :lo '
                    'AND "timestamp" < :hi'
                ),
                {"lo": _utc_midnight(day), "hi": _utc_midnight(day + dt.timedelta(days=1))},
            )
            if k == 2:
                # Upstream corrects the apy of every pool's latest observation of two days ago, a day promoted
                # before the last promoted day: inside the 2-day late-data window, so this run must pick it up.
                corrected = conn.execute(
                    text(
                        """UPDATE raw_defillama_pool_history h
                           SET raw_json_data = jsonb_set(h.raw_json_data, '{apy}', to_jsonb(123.25))
                           WHERE h.id IN (SELECT DISTINCT ON (pool_id) id FROM raw_defillama_pool_history
                                          WHERE "timestamp" >= :lo AND "timestamp" < :hi
                                          ORDER BY pool_id, "timestamp" DESC, id DESC)"""
                    ),
                    {"lo": _utc_midnight(day - dt.timedelta(days=2)), "hi": _utc_midnight(day - dt.timedelta(days=1))},
                ).rowcount
                assert corrected > 0
        ranges.append(_promote(db, db_config, "incremental", k + 1)[0])

    assert [(r.start, r.end) for r in ranges] == [
        (D(2026, 5, 1), D(2026, 6, 10)),
        (D(2026, 6, 8), D(2026, 6, 11)),
        (D(2026, 6, 9), D(2026, 6, 12)),
        (D(2026, 6, 10), D(2026, 6, 13)),
        (D(2026, 6, 11), D(2026, 6, 14)),
    ]
    incremental = table_fingerprint(db)
    with db.connect() as conn:
        corrected_rows = conn.execute(
            text("SELECT count(*) FROM pool_daily_metrics WHERE date = '2026-06-11' AND actual_apy = 123.25")
        ).scalar()
    assert corrected_rows > 0  # the correction reached the table
    with db.connect() as conn:
        spikes = conn.execute(
            text("SELECT count(*) FROM pool_daily_metrics WHERE date >= :d AND actual_apy > 1e5"), {"d": HELD_BACK_FROM}
        ).scalar()
    assert spikes == giant_days  # a spike the daily runs brought in

    with db.begin() as conn:
        conn.execute(text("TRUNCATE pool_daily_metrics"))
    # The daily runs read their few rows in one partition. The full run reads in one partition per 100 rows, at
    # most the local session's parallelism (4): the layout of a large history (repartitioned by pool, the as-of
    # lookup broadcast).
    monkeypatch.setattr(pool_metrics_main, "HISTORY_ROWS_PER_PARTITION", 100)
    full, summary = _promote(db, db_config, "full", 9)
    assert (full.start, full.end) == (D(2026, 5, 1), D(2026, 6, 14))
    assert summary["read_partitions"] == 4
    assert table_fingerprint(db) == incremental
