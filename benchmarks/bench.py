"""``make bench``: Spark against legacy, side by side, in one run, printed and written to docs/benchmarks.md.

    .venv/bin/python -m benchmarks.bench            # 2,740 pools x 365 days and 5,480 x 365 (about an hour)
    .venv/bin/python -m benchmarks.bench --quick    # 300 x 120, for development

For each size: a fresh embedded PostgreSQL with the synthetic data (its last day is yesterday, UTC), then

- metrics DB->DB: the Spark job into its staging table plus the promotion (``upsert_staging``) into an empty
  ``pool_daily_metrics``, against the legacy pandas job writing an empty table of the same schema.
  *warm*: in this process, after the JVM start and one warm-up run (both reported apart); *cold*: the job
  in a new process (``python -m spark_src.pool_metrics.main``: JVM start, class loading, JIT included), the
  full run and the one-day run (a scheduled daily run starts that way);
- incremental one-day run (the latest day, recomputed after deleting it from the table) against the full
  run, both DB->DB, after one warm-up one-day run (reported apart, like the full run's: its plan differs, one
  partition and no shuffle); the table after it must be identical (fingerprint) to the one the full run left;
- the daily run's other metrics steps, full and one day: the legacy shadow (``replace_range`` for the day, as
  ``run_legacy_metrics`` runs it) and the parity gate's comparison; with the Spark job and the promotion they
  give the metrics path of a pipeline run, composed from the steps' medians (the job and the shadow run side
  by side, then the gate, then the promotion);
- staging write: the Spark write of the metrics rows (already computed, cached, one partition per core as in
  the job) into a staging table, against
  PostgreSQL's ``COPY FROM STDIN`` of the same rows (CSV in memory) into an UNLOGGED table;
- forecast fit + predict (first size only): the SynapseML job's :func:`forecast_as_of` against the legacy
  :func:`fit_and_forecast` with one Optuna trial (the pipeline runs 20), on the same panel (reads and writes
  excluded);
- peak memory: this process (the Python driver) and the Spark JVM (VmHWM).

Each figure is the median of ``--repeat`` (>= 3) repetitions, the warm one-day steps' (seconds each) of twice that
plus one. Figures, not assertions: they depend on the machine and on what else runs on it (the load average is
recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
SIZES = [(2740, 365), (5480, 365)]
QUICK_SIZES = [(300, 120)]
TARGET = "pool_daily_metrics"
LEGACY_TARGET = "pool_daily_metrics_legacy"


@dataclass
class Figure:
    name: str
    seconds: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class SizeResult:
    pools: int
    days: int
    history_rows: int = 0
    metric_rows: int = 0
    figures: dict[str, Figure] = field(default_factory=dict)
    once: dict[str, float] = field(default_factory=dict)  # JVM start, warm-up run: measured once, apart
    memory_mib: dict[str, float] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    def add(self, name: str, seconds: list[float], note: str = "") -> Figure:
        figure = Figure(name, seconds, note)
        self.figures[name] = figure
        return figure


def one_day_reps(reps: int) -> int:
    """Repetitions of a warm one-day step: they take seconds, and their spread (a few tenths of a second) is
    larger against them than against the full run's, so they get more for the same steadiness of the median."""
    return 2 * reps + 1


def repeat(times: int, run: Callable[[], float]) -> list[float]:
    return [run() for _ in range(times)]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM (peak resident set) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> dict[str, str]:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{total_kib / 1024 / 1024:.1f} GiB",
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?"),
        "python": platform.python_version(),
    }


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def truncate(engine: Engine, *tables: str) -> None:
    with engine.begin() as conn:
        for table in tables:
            conn.execute(text(f'TRUNCATE "{table}"'))


def promote(db, staging: str) -> dict:
    from kfp import dsl

    from components.upsert_staging import upsert_staging
    from spark_src.common.columns import METRIC_COLUMNS

    promoted = dsl.Dataset(name="promoted", uri="", metadata={})
    upsert_staging.python_func(
        database_url=db.url,
        staging_table=staging,
        target_table=TARGET,
        update_columns=list(METRIC_COLUMNS),
        promoted=promoted,
        run_id="bench",
    )
    return promoted.metadata


def compare_metrics(db, spark_table: str, legacy_table: str, day: dt.date | None) -> str:
    """The parity gate's comparison (``evaluation.parity``, as ``evaluate_metrics_parity`` runs it): its verdict."""
    from evaluation import parity
    from spark_src.common.columns import METRIC_COLUMNS

    bound = day.isoformat() if day else ""
    request = parity.Request(spark_table, legacy_table, list(METRIC_COLUMNS), start=bound, end=bound)
    return parity.compare(db, request).verdict


def spark_job(argv: list[str]) -> dict:
    from pyspark.sql import SparkSession

    from spark_src.common.config import DbConfig
    from spark_src.pool_metrics.main import parse_args
    from spark_src.pool_metrics.main import run as run_job

    return run_job(SparkSession.getActiveSession(), DbConfig.from_env(), parse_args(argv))


def bench_size(
    pools: int, days: int, reps: int, with_forecast: bool, checkpoint: Callable[[SizeResult], None]
) -> SizeResult:
    from database.embedded import embedded_postgres
    from spark_src.common import sql

    result = SizeResult(pools, days)
    with embedded_postgres() as pg:
        os.environ["DB_PASSWORD"] = pg.password  # what the engine and the jobs' env:DB_PASSWORD read
        os.environ.update(pg.config.env())
        with sql.engine(pg.config) as engine:
            return _bench_database(result, pg.config, engine, reps, with_forecast, checkpoint)


def _bench_database(
    result: SizeResult, db, engine: Engine, reps: int, with_forecast: bool, checkpoint: Callable[[SizeResult], None]
) -> SizeResult:
    from database.schema import init_schema
    from database.synthetic import SyntheticSpec, generate, load
    from legacy.calculate_pool_metrics import run as run_legacy
    from pipelines.local_run import table_fingerprint
    from spark_src.common import jars
    from spark_src.common.session import build_session

    pools, days = result.pools, result.days
    last_day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    spec = SyntheticSpec(pools=pools, days=days, start=last_day - dt.timedelta(days=days - 1))
    init_schema(engine)
    print(f"[{pools} x {days}] loading synthetic data ...", flush=True)
    result.history_rows = load(engine, generate(spec))["raw_defillama_pool_history"]
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
        conn.execute(text(f'CREATE TABLE IF NOT EXISTS "{LEGACY_TARGET}" (LIKE "{TARGET}" INCLUDING ALL)'))

    # --- warm: this process, after the JVM start and a warm-up run -----------------------------------
    result.once["JVM start (SparkSession)"] = timed(
        lambda: build_session("bench", jars=jars.resolve_all([jars.JDBC_DRIVER, *jars.SYNAPSEML_LIGHTGBM]))
    )
    full_args = ["--run-id", "bench", "--staging-table", "stg_bench"]
    result.once["warm-up run (first job in the JVM)"] = timed(lambda: spark_job(full_args))
    job_s, promote_s = [], []

    def warm_spark() -> float:
        truncate(engine, TARGET)
        started = time.perf_counter()
        result.metric_rows = spark_job(full_args)["rows_written"]
        job_s.append(time.perf_counter() - started)
        promote_s.append(timed(lambda: promote(db, "stg_bench")))
        return job_s[-1] + promote_s[-1]

    print(f"[{pools} x {days}] Spark warm ...", flush=True)
    result.add("spark_warm", repeat(reps, warm_spark))
    result.add("spark_warm_job", job_s)
    result.add("spark_warm_promotion", promote_s)
    full_fingerprint = table_fingerprint(engine)
    checkpoint(result)

    # --- incremental one-day run against the full run ------------------------------------------------
    with engine.connect() as conn:
        latest = conn.execute(text(f"SELECT max(date) FROM {TARGET}")).scalar()
    day_range = ["--start", latest.isoformat(), "--end", latest.isoformat()]
    one_day_args = [*full_args, *day_range]
    one_day_job_s, one_day_promote_s = [], []

    def one_day() -> float:
        with engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {TARGET} WHERE date = :d"), {"d": latest})
        started = time.perf_counter()
        one_day_job_s.append(timed(lambda: spark_job(one_day_args)))
        one_day_promote_s.append(timed(lambda: promote(db, "stg_bench")))
        return time.perf_counter() - started

    print(f"[{pools} x {days}] Spark incremental one day ...", flush=True)
    result.once["warm-up one-day run (its plan's first run)"] = one_day()
    one_day_job_s.clear()
    one_day_promote_s.clear()
    result.add("spark_one_day", repeat(one_day_reps(reps), one_day), note=f"day {latest}")
    result.add("spark_one_day_job", one_day_job_s)
    result.add("spark_one_day_promotion", one_day_promote_s)
    result.checks["one-day run leaves the table the full run left (fingerprint)"] = (
        table_fingerprint(engine) == full_fingerprint
    )
    checkpoint(result)

    # --- staging write against COPY into an unlogged table -------------------------------------------
    from pyspark.sql import SparkSession

    from spark_src.common.jdbc import read_query, session_read_partitions, write_table

    spark = SparkSession.getActiveSession()
    staged = read_query(spark, db, f"SELECT * FROM {TARGET}").drop("forecasted_apy", "forecasted_tvl", "updated_at")
    # Split as the job's own write is (one partition per core writing at once), not the single partition of
    # this plain read.
    staged = staged.repartition(session_read_partitions(spark)).cache()
    staged_rows = staged.count()
    result.add("staging_write", repeat(reps, lambda: timed(lambda: write_table(staged, db, "stg_bench_write"))))
    staged.unpersist()
    columns = ", ".join(f'"{c}"' for c in staged.columns)
    raw = engine.raw_connection()
    try:
        buffer = io.StringIO()
        with raw.cursor() as cur:
            cur.copy_expert(f"COPY (SELECT {columns} FROM stg_bench_write) TO STDOUT (FORMAT csv)", buffer)
        payload = buffer.getvalue()

        def copy_in() -> float:
            with raw.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS bench_copy")
                cur.execute("CREATE UNLOGGED TABLE bench_copy AS SELECT * FROM stg_bench_write WITH NO DATA")
                raw.commit()
                started = time.perf_counter()
                cur.copy_expert(f"COPY bench_copy ({columns}) FROM STDIN (FORMAT csv)", io.StringIO(payload))
                raw.commit()
                return time.perf_counter() - started

        result.add("copy_unlogged", repeat(reps, copy_in))
    finally:
        raw.close()
    result.once["staging rows"] = staged_rows
    result.memory_mib["Spark JVM (VmHWM)"] = peak_rss_mib(spark.sparkContext._gateway.proc.pid)
    result.memory_mib["Python driver, before the legacy job (VmHWM)"] = peak_rss_mib()
    checkpoint(result)

    # --- legacy -----------------------------------------------------------------------------------
    legacy_rows = []

    def legacy() -> float:
        truncate(engine, LEGACY_TARGET)
        started = time.perf_counter()
        legacy_rows.append(run_legacy(db, target_table=LEGACY_TARGET)["rows_written"])
        return time.perf_counter() - started

    print(f"[{pools} x {days}] legacy ...", flush=True)
    result.add("legacy", repeat(reps, legacy))
    result.memory_mib["Python process after the legacy job (VmHWM)"] = peak_rss_mib()
    result.checks["legacy wrote as many rows as Spark"] = set(legacy_rows) == {result.metric_rows}
    checkpoint(result)

    # --- the daily run's other metrics steps, full and one day: the legacy shadow and the parity gate ---------
    print(f"[{pools} x {days}] legacy shadow and parity gate, full and one day ...", flush=True)
    verdicts = []

    def parity(spark_table: str, day: dt.date | None) -> float:
        return timed(lambda: verdicts.append(compare_metrics(db, spark_table, LEGACY_TARGET, day)))

    # The Spark side of the full comparison is the promoted table: it holds the full run's rows (the fingerprint
    # check above). The promotion dropped the one-day run's staging table: the one-day side is a new one.
    result.add("parity_full", repeat(reps, lambda: parity(TARGET, None)))
    spark_job(["--run-id", "bench", "--staging-table", "stg_bench_day", *day_range])

    def legacy_one_day() -> float:
        return timed(lambda: run_legacy(db, start=latest, end=latest, target_table=LEGACY_TARGET, replace_range=True))

    result.add("legacy_one_day", repeat(one_day_reps(reps), legacy_one_day), note=f"day {latest}")
    result.add("parity_one_day", repeat(one_day_reps(reps), lambda: parity("stg_bench_day", latest)))
    result.checks["the parity gate passes, full and one day"] = set(verdicts) == {"pass"}
    checkpoint(result)

    _bench_cold(result, db, engine, reps, latest, day_range)
    checkpoint(result)

    if with_forecast:
        print(f"[{pools} x {days}] forecast fit + predict ...", flush=True)
        bench_forecast(result, spark, db, engine, reps, checkpoint)
        checkpoint(result)
    spark.stop()
    return result


def _bench_cold(result: SizeResult, db, engine: Engine, reps: int, latest: dt.date, day_range: list[str]) -> None:
    """Cold: a new process per run, as a pipeline step or a Dataproc batch starts; the full run, then the one-day
    run (what a scheduled daily run costs here: a new JVM for one day), each DB->DB."""

    def cold_spark(extra: tuple[str, ...] = ()) -> float:
        staging = "stg_bench_cold"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "spark_src.pool_metrics.main", "--run-id", "bench", "--staging-table", staging,
             *extra],
            check=True,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        promote(db, staging)
        return time.perf_counter() - started

    def cold_full() -> float:
        truncate(engine, TARGET)
        return cold_spark()

    def cold_one_day() -> float:
        with engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {TARGET} WHERE date = :d"), {"d": latest})
        return cold_spark(tuple(day_range))

    print(f"[{result.pools} x {result.days}] Spark cold ...", flush=True)
    result.add("spark_cold", repeat(reps, cold_full))
    result.add("spark_one_day_cold", repeat(reps, cold_one_day), note=f"day {latest}")


def bench_forecast(
    result: SizeResult, spark, db, engine: Engine, reps: int, checkpoint: Callable[[SizeResult], None]
) -> None:
    from legacy import forecast_pools as legacy_fc
    from spark_src.common.caching import cached, release, released
    from spark_src.forecast import quarantine as Q
    from spark_src.forecast import transforms as T
    from spark_src.forecast.main import extract, forecast_as_of, latest_actuals_date, quarantine
    from spark_src.forecast.main import parse_args as forecast_args

    # The forecast job's own reads (extract + quarantine, as its run() does), outside the timing.
    args = forecast_args(["--run-id", "bench", "--staging-table", "stg_bench_fc", "--model-dir", "unused"])
    rule = Q.QuarantineRule()
    as_of = latest_actuals_date(spark, db)
    first_day = as_of - dt.timedelta(days=args.train_days - 1)
    metrics, pools = extract(spark, db, first_day - dt.timedelta(days=T.LOOKBACK_DAYS + rule.reference_days), as_of)
    frames = []
    clean, _ = quarantine(metrics, rule, first_day - dt.timedelta(days=T.LOOKBACK_DAYS), frames)
    pools = cached(pools, frames)
    clean.count()

    def spark_fit_predict() -> float:
        with released() as fitted_frames:  # released after the clock stops, as the job releases after its run
            started = time.perf_counter()
            _, forecasts = forecast_as_of(clean, pools, as_of, args, rule, fitted_frames)
            forecasts.count()
            return time.perf_counter() - started

    result.add("forecast_spark", repeat(reps, spark_fit_predict))
    release(frames)
    checkpoint(result)
    with engine.connect() as conn:
        panel = legacy_fc.build_panel(
            legacy_fc.fetch_metrics(conn, as_of, args.train_days), legacy_fc.fetch_pools(conn), as_of, args.train_days
        )
    features = legacy_fc.feature_frame(panel)
    # One Optuna trial (one validation fit, then the refit and the forecast): the unit comparable to Spark's one
    # fit. The pipeline's default is 20 trials, each a validation fit (a random forest of up to a few hundred
    # trees on one core: minutes at this size), so the figure is a lower bound of a legacy run's cost.
    trials = 1
    result.add(
        "forecast_legacy",
        repeat(reps, lambda: timed(lambda: legacy_fc.fit_and_forecast(features, as_of, trials, 42))),
        note=f"{trials} Optuna trial",
    )
    result.once["forecast panel rows"] = len(features)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def render(results: list[SizeResult], reps: int, load_before: str, load_after: str, seconds: float) -> str:
    info = machine()
    commit = (
        os.environ.get("CODE_VERSION")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    )
    # The load before the bench started is other work's; the bench's own JVM, PostgreSQL and Python add to it.
    busy = (
        " (at the start above the number of cores: other work shared them, the seconds are noisy)"
        if max(float(v) for v in load_before.split(" / ")) > int(info["cores"])
        else ""
    )
    lines = [
        "# Benchmarks (`make bench`)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit `{commit or 'unknown'}`, in one run of "
        f"{seconds / 60:.0f} min. Machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, Python "
        f"{info['python']}, local Spark `local[{os.environ.get('SPARK_LOCAL_CORES', '2')}]`, embedded PostgreSQL 16 "
        "(fsync off). Load average (1/5/15 min) "
        f"{load_before} at the start, {load_after} at the end{busy}; the ratios come from the same run.",
        "",
        f"Each figure is the median of {reps} repetitions, the warm one-day steps' of {one_day_reps(reps)} (all of "
        "them in brackets). Synthetic data "
        "(`database.synthetic`, seed 7) whose last day is yesterday.",
        "",
    ]
    for r in results:
        lines += render_size(r)
    return "\n".join(lines)


def render_size(r: SizeResult) -> list[str]:
    """The tables of one size; a figure not measured (yet) shows as such."""
    from spark_src.pool_metrics.main import LOOKBACK_DAYS

    f = r.figures

    def ratio_of(a: str, b: str, label: str) -> str:
        return f"{f[a].median / f[b].median:.2f}x {label}" if a in f and b in f else "-"

    def rate(name: str) -> float | None:
        return r.once["staging rows"] / f[name].median if name in f else None

    write_rate, copy_rate = rate("staging_write"), rate("copy_unlogged")
    lines = [
        f"## {r.pools:,} pools x {r.days} days ({r.history_rows:,} history rows, {r.metric_rows:,} metric rows)",
        "",
        "| what | Spark | legacy | Spark / legacy speed-up | target |",
        "|---|---:|---:|---:|---|",
        _row("metrics DB->DB, warm (job + promotion)", f.get("spark_warm"), f.get("legacy"), ">= 3x"),
        _row("metrics DB->DB, cold (new process)", f.get("spark_cold"), f.get("legacy"), ">= 2x"),
    ]
    if "forecast_spark" in f or "forecast_legacy" in f:
        legacy_note = f" ({f['forecast_legacy'].note}; the pipeline runs 20)" if "forecast_legacy" in f else ""
        lines.append(
            _row(f"forecast fit + predict{legacy_note}", f.get("forecast_spark"), f.get("forecast_legacy"), "(none)")
        )
    one_day = ratio_of("spark_one_day", "spark_warm", "of the full run")
    lines += [
        "",
        "| what | seconds | ratio | target |",
        "|---|---:|---:|---|",
        f"| Spark warm: job / promotion | {_s(f.get('spark_warm_job'))} / {_s(f.get('spark_warm_promotion'))} | | |",
        f"| incremental one-day run ({f['spark_one_day'].note if 'spark_one_day' in f else '-'}), DB->DB | "
        f"{_s(f.get('spark_one_day'))} | {one_day} | <= 0.1x |",
        f"| incremental one-day run, job only | {_s(f.get('spark_one_day_job'))} | "
        f"{ratio_of('spark_one_day_job', 'spark_warm_job', 'of the full job')} | |",
        f"| incremental one-day run, cold (new process, as a scheduled run starts), DB->DB | "
        f"{_s(f.get('spark_one_day_cold'))} | "
        f"{ratio_of('spark_one_day_cold', 'spark_cold', 'of the cold full run')} | |",
    ]
    path_full, path_one_day = (
        daily_path(f, "spark_warm_job", "legacy", "parity_full", "spark_warm_promotion"),
        daily_path(f, "spark_one_day_job", "legacy_one_day", "parity_one_day", "spark_one_day_promotion"),
    )
    if path_full and path_one_day:
        lines += [
            f"| legacy shadow, one day / full | {_s(f['legacy_one_day'])} / {_s(f['legacy'])} | "
            f"{ratio_of('legacy_one_day', 'legacy', 'of the full run')} | |",
            f"| parity gate, one day / full | {_s(f['parity_one_day'])} / {_s(f['parity_full'])} | "
            f"{ratio_of('parity_one_day', 'parity_full', 'of the full run')} | |",
            f"| the daily run's metrics path, one day / full (max(Spark job, legacy shadow) + parity + promotion) | "
            f"{path_one_day:.2f} / {path_full:.2f} | {path_one_day / path_full:.2f}x of the full run | |",
        ]
    if write_rate and copy_rate:
        lines += [
            f"| staging write (Spark JDBC, {r.once['staging rows']:,.0f} rows) | {_s(f['staging_write'])} | "
            f"{write_rate:,.0f} rows/s = {write_rate / copy_rate:.2f}x of COPY | >= 0.8x |",
            f"| COPY FROM STDIN into an unlogged table | {_s(f['copy_unlogged'])} | {copy_rate:,.0f} rows/s | |",
        ]
    # What bounds the one-day ratio from below: the days its windows read, against the full run's.
    read_days = LOOKBACK_DAYS + 1
    lines += [
        "",
        f"The one-day run reads its look-back with the day: {read_days} of the {r.days} days' rows "
        f"({read_days / r.days:.1%}) go through its windows, plus the fixed cost of a Spark job (planning, job "
        "and task start, connections), which the full run pays once too.",
        "",
        "Measured once, apart from the figures above: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in r.once.items() if "rows" not in k)
        + ".",
        "",
        "Peak memory: " + ", ".join(f"{k} {v:,.0f} MiB" for k, v in r.memory_mib.items()) + ".",
        "",
        "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r.checks.items()) + ".",
        "",
    ]
    return lines


def daily_path(f: dict[str, Figure], job: str, legacy: str, parity: str, promotion: str) -> float | None:
    """A pipeline run's metrics path from the medians of its steps: the Spark job and the legacy shadow run side
    by side (each its own batch or container on Vertex AI), then the parity gate, then the promotion."""
    if not all(name in f for name in (job, legacy, parity, promotion)):
        return None
    return max(f[job].median, f[legacy].median) + f[parity].median + f[promotion].median


def _s(figure: Figure | None) -> str:
    if figure is None:
        return "not measured"
    return f"{figure.median:.2f} [{', '.join(f'{s:.1f}' for s in figure.seconds)}]"


def _row(what: str, spark: Figure | None, legacy: Figure | None, target: str) -> str:
    speed_up = ratio(legacy.median, spark.median) if spark and legacy else "-"
    return f"| {what} | {_s(spark)} | {_s(legacy)} | {speed_up} | {target} |"


def _size(text: str) -> tuple[int, int]:
    pools, _, days = text.partition("x")
    return int(pools), int(days)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"one small size {QUICK_SIZES[0]} for development")
    parser.add_argument(
        "--size", action="append", type=_size, help="POOLSxDAYS, repeatable (default: 2740x365 and 5480x365)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (>= 3)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--no-forecast", action="store_true", help="skip the forecast fit + predict (measured on the first size)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 3:
        parser.error("--repeat must be at least 3 (each figure is a median)")
    sizes = args.size or (QUICK_SIZES if args.quick else SIZES)
    load_before, started = load_average(), time.perf_counter()
    results: list[SizeResult] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def write(current: SizeResult | None = None) -> str:
        # Rewritten after every section: an interrupted run leaves what it measured, marked as such.
        sizes_so_far = [*results, current] if current else results
        report = render(sizes_so_far, args.repeat, load_before, load_average(), time.perf_counter() - started)
        args.out.write_text(report + ("\n" if not current else "\n\n(run in progress: figures so far)\n"))
        return report

    for i, (pools, days) in enumerate(sizes):
        results.append(
            bench_size(pools, days, args.repeat, with_forecast=(i == 0 and not args.no_forecast), checkpoint=write)
        )
    print(write())
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
