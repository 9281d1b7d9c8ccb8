"""Benchmark: next-day APY accuracy of the Spark forecaster, the legacy forecaster and naive persistence.

    .venv/bin/python -m benchmarks.forecast_accuracy --world hard:7 --world default:7 --holdout-dates 7

For each world (``name:seed[:pools:days]``, a :data:`database.synthetic.WORLDS` name) it starts from an empty
embedded PostgreSQL, loads the synthetic data, computes ``pool_daily_metrics`` with the legacy metrics job
(parity-equal to the Spark one), and on each of the last ``--holdout-dates`` as-of dates d before the latest
day fits both forecasters on the ``--train-days`` window ending d and forecasts d + 1:

- Spark: ``spark_src.forecast`` (quarantine, robust features, SynapseML LightGBM), one fit per objective of
  ``--apy-objective``;
- legacy: ``legacy.forecast_pools`` (its own features, no quarantine: the reference as it is);
- naive: the pool's clean APY of d (as the pipeline's fallback forecast).

A pool-day is scored when its actual of d + 1 exists and is not quarantined and every model has a forecast.
Prints, per world: APY MAE per date and pooled, TVL WAPE pooled, the share of dates Spark and legacy beat
naive, a paired bootstrap (resampling the scored pool-days) 95 % interval of MAE(model) / MAE(naive), and the
reversion weight and correction shrink each Spark fit chose. ``--json`` writes the figures.
Figures, not assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from database.embedded import embedded_postgres
from database.schema import init_schema
from database.synthetic import SyntheticSpec, generate, load
from legacy import forecast_pools as legacy
from legacy.calculate_pool_metrics import run as run_legacy_metrics
from spark_src.common import jars, sql
from spark_src.common.jdbc import read_query
from spark_src.common.session import build_session
from spark_src.forecast import model as M
from spark_src.forecast import quarantine as Q
from spark_src.forecast import transforms as T


def world_spec(text: str) -> SyntheticSpec:
    parts = text.split(":")
    spec = {"world": parts[0], "seed": int(parts[1]) if len(parts) > 1 else 7}
    if len(parts) > 3:
        spec |= {"pools": int(parts[2]), "days": int(parts[3])}
    return SyntheticSpec(**spec)


def bootstrap_ratio(model_err: np.ndarray, naive_err: np.ndarray, n: int, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of sum(model_err) / sum(naive_err) over paired resamples of the rows."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(model_err), (n, len(model_err)))
    ratios = model_err[idx].sum(axis=1) / np.maximum(naive_err[idx].sum(axis=1), 1e-300)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def measure_world(spark, pg, spec: SyntheticSpec, args: argparse.Namespace) -> dict:
    with sql.engine(pg.config) as engine:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        init_schema(engine)
        load(engine, generate(spec))
        run_legacy_metrics(pg.config, target_table="pool_daily_metrics")
        with engine.connect() as conn:
            metrics_pd = pd.read_sql("SELECT * FROM pool_daily_metrics", conn)
            pools_pd = pd.read_sql("SELECT * FROM pools", conn)

    metrics = read_query(spark, pg.config, "SELECT * FROM pool_daily_metrics WHERE actual_apy IS NOT NULL").cache()
    pools = read_query(spark, pg.config, "SELECT pool_id, pool_group, is_active, is_filtered_out FROM pools").cache()
    rule = Q.QuarantineRule()
    flagged = Q.flag_observations(metrics, rule).cache()
    clean = Q.clean_metrics(flagged).cache()
    quarantined = {
        (r.pool_id, r.date) for r in flagged.where(F.col("apy_reason").isNotNull()).select("pool_id", "date").collect()
    }
    latest = max(metrics_pd.loc[metrics_pd["actual_apy"].notna(), "date"])
    as_of_dates = [latest - dt.timedelta(days=k) for k in range(args.holdout_dates, 0, -1)]
    actual = metrics_pd.set_index(["pool_id", "date"])["actual_apy"]
    actual_tvl = metrics_pd.set_index(["pool_id", "date"])["actual_tvl"]
    # A feature of day d depends only on days <= d (tests/spark_src/test_forecast_features.py), so one frame
    # over all days serves every as-of date: the job's per-date frame is this frame's slice.
    first_train_day = as_of_dates[0] - dt.timedelta(days=args.train_days - 1)
    all_days = T.model_frame(clean, pools, latest, (latest - first_train_day).days + 1).cache()

    rows = []
    for as_of in as_of_dates:
        started = time.monotonic()
        window_start = as_of - dt.timedelta(days=args.train_days - 1)
        features = all_days.where(F.col("date").between(F.lit(window_start), F.lit(as_of)))
        training = features.where((F.col("date") < F.lit(as_of)) & F.col("target_apy").isNotNull())
        today = features.where(F.col("date") == F.lit(as_of))
        frame = (
            today.select("pool_id", F.col("actual_apy").alias("naive"), F.col("actual_tvl").alias("naive_tvl"))
            .toPandas()
            .set_index("pool_id")
        )
        choices = []
        for objective in args.apy_objective:
            fitted = M.fit(training, rule=rule, seed=42, apy_objective=objective)
            spark_fc = M.forecast(fitted.model, today).toPandas().set_index("pool_id")
            frame[f"spark_{objective}"] = spark_fc["forecasted_apy"]
            frame[f"spark_{objective}_tvl"] = spark_fc["forecasted_tvl"]
            choices.append(f"{objective}: reversion {fitted.reversion_weight}, shrink {fitted.correction_shrink}")
        spark_s = time.monotonic() - started
        started = time.monotonic()
        legacy_features = legacy.feature_frame(legacy.build_panel(metrics_pd, pools_pd, as_of, args.train_days))
        legacy_fc, _ = legacy.fit_and_forecast(legacy_features, as_of, args.legacy_trials, 42)
        frame["legacy"] = legacy_fc.set_index("pool_id")["forecasted_apy"]
        frame["legacy_tvl"] = legacy_fc.set_index("pool_id")["forecasted_tvl"]
        legacy_s = time.monotonic() - started
        forecast_date = as_of + dt.timedelta(days=1)
        frame["actual"] = [actual.get((p, forecast_date), np.nan) for p in frame.index]
        frame["actual_tvl"] = [actual_tvl.get((p, forecast_date), np.nan) for p in frame.index]
        frame["quarantined"] = [(p, forecast_date) in quarantined for p in frame.index]
        frame["as_of"] = as_of
        rows.append(frame.reset_index())
        print(
            f"  {spec.world}:{spec.seed} as-of {as_of}: spark {spark_s:.0f} s ({'; '.join(choices)}), "
            f"legacy {legacy_s:.0f} s",
            flush=True,
        )
    scored_all = pd.concat(rows, ignore_index=True)
    models = [*(f"spark_{o}" for o in args.apy_objective), "legacy", "naive"]
    usable = scored_all["actual"].notna() & ~scored_all["quarantined"] & scored_all[models].notna().all(axis=1)
    scored = scored_all[usable]
    errors = {m: (scored[m] - scored["actual"]).abs() for m in models}
    per_date = {m: {str(d): float(errors[m][scored["as_of"] == d].mean()) for d in as_of_dates} for m in models}
    pooled = {m: float(errors[m].mean()) for m in models}
    # TVL WAPE on the scored pool-days whose tvl of d + 1 and every model's tvl forecast exist.
    tvl_columns = [f"{m}_tvl" for m in models]
    tvl_scored = scored[scored["actual_tvl"].notna() & scored[tvl_columns].notna().all(axis=1)]
    tvl_wape = {
        m: float((tvl_scored[f"{m}_tvl"] - tvl_scored["actual_tvl"]).abs().sum() / tvl_scored["actual_tvl"].abs().sum())
        for m in models
    }
    result = {
        "world": f"{spec.world}:{spec.seed}",
        "pools": spec.pools,
        "days": spec.days,
        "as_of_dates": [str(d) for d in as_of_dates],
        "pool_days_scored": len(scored),
        "pool_days_dropped": int((~usable).sum()),
        "dropped_quarantined_actual": int(scored_all["quarantined"].sum()),
        "pooled_mae": pooled,
        "per_date_mae": per_date,
        "tvl_pool_days_scored": len(tvl_scored),
        "tvl_wape": tvl_wape,
    }
    for m in models:
        if m != "naive":
            wins = sum(per_date[m][str(d)] < per_date["naive"][str(d)] for d in as_of_dates)
            result[f"{m}_dates_won_vs_naive"] = f"{wins}/{len(as_of_dates)}"
            result[f"{m}_ratio_vs_naive"] = pooled[m] / pooled["naive"]
            result[f"{m}_ratio_vs_naive_ci95"] = bootstrap_ratio(
                errors[m].to_numpy(), errors["naive"].to_numpy(), args.bootstrap
            )
        if m.startswith("spark_"):
            result[f"{m}_ratio_vs_legacy"] = pooled[m] / pooled["legacy"]
    return result


def print_result(result: dict) -> None:
    models = list(result["pooled_mae"])
    print(f"\n== {result['world']} ({result['pools']} pools x {result['days']} days), "
          f"{result['pool_days_scored']} pool-days scored, {result['pool_days_dropped']} dropped "
          f"({result['dropped_quarantined_actual']} with a quarantined actual)")  # fmt: skip
    print("as_of        " + " ".join(f"{m:>12}" for m in models))
    for d in result["as_of_dates"]:
        print(f"{d}   " + " ".join(f"{result['per_date_mae'][m][d]:12.4f}" for m in models))
    print("pooled       " + " ".join(f"{result['pooled_mae'][m]:12.4f}" for m in models))
    print("TVL WAPE     " + " ".join(f"{result['tvl_wape'][m]:12.5f}" for m in models)
          + f"   ({result['tvl_pool_days_scored']} pool-days)")  # fmt: skip
    for m in models:
        if m != "naive":
            low, high = result[f"{m}_ratio_vs_naive_ci95"]
            versus_legacy = f", / legacy {result[f'{m}_ratio_vs_legacy']:.3f}" if m.startswith("spark_") else ""
            print(
                f"{m}: MAE / naive {result[f'{m}_ratio_vs_naive']:.3f} (95 % bootstrap {low:.3f}-{high:.3f})"
                f"{versus_legacy}, dates won vs naive {result[f'{m}_dates_won_vs_naive']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", action="append", type=world_spec, help="name:seed[:pools:days], repeatable")
    parser.add_argument("--holdout-dates", type=int, default=7)
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--legacy-trials", type=int, default=20)
    parser.add_argument("--apy-objective", type=lambda s: s.split(","), default=[M.APY_OBJECTIVE])
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    worlds = args.world or [world_spec("hard:7"), world_spec("default:7")]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spark = build_session(
        "forecast-accuracy",
        jars=jars.resolve_all([jars.JDBC_DRIVER, *jars.SYNAPSEML_LIGHTGBM]),
        extra_conf={"spark.sql.shuffle.partitions": "2"},
    )
    results = []
    try:
        with embedded_postgres() as pg:
            os.environ["DB_PASSWORD"] = pg.password
            for spec in worlds:
                started = time.monotonic()
                result = measure_world(spark, pg, spec, args)
                result["seconds"] = round(time.monotonic() - started)
                results.append(result)
                print_result(result)
                if args.json:
                    with open(args.json, "w") as out:
                        json.dump(results, out, indent=2)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
