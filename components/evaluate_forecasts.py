"""Backtest of the next-day forecasters on holdout as-of dates: the Spark model, the legacy model and a naive
persistence forecast, scored with MAE, RMSE and WAPE on the same rows, reported as metrics and an HTML page,
optionally gating the run on the Spark model not being worse than the legacy one.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def evaluate_forecasts(
    database_url: str,
    run_id: str,
    holdout_as_of: str,
    forecast_metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.HTML],
    password_secret: str = "env:DB_PASSWORD",
    spark_model: str = "spark_lgbm_stacked",
    legacy_model: str = "legacy_rf_lgbm",
    history_table: str = "pool_forecast_history",
    metrics_table: str = "pool_daily_metrics",
    gate_enabled: bool = False,
    gate_tolerance: float = 0.05,
    sample_pools: int = 4,
) -> NamedTuple("EvalSummary", spark_apy_mae=float, legacy_apy_mae=float, naive_apy_mae=float):
    """Scores the run's Spark and legacy next-day forecasts, and a naive one, against the actuals.

    For each holdout as-of date ``d`` the forecasts of day ``d + 1`` made as of ``d`` are compared with the
    actual of ``d + 1``. The naive forecast is persistence: the pool's actual of ``d``. A (pool, forecast date)
    is scored for a target (APY or TVL) only when its actual and all three forecasts of that target exist
    (NULL, NaN and +-Infinity count as missing), so every model is scored on the same rows; the others are
    counted as dropped. Metrics per model and target: MAE, RMSE and WAPE (sum of absolute errors over the sum of
    absolute actuals).

    The gate passes when the Spark APY MAE is at most the legacy APY MAE times ``1 + gate_tolerance``. The
    outputs are written before any failure is raised: the HTML report lands in the pipeline root even when the
    task fails (Vertex AI records the metrics' values only for a task that succeeds; the report repeats them).

    Args:
        database_url: Password-less ``postgresql://user@host:port/db``.
        run_id: The pipeline run whose forecasts (``run_id`` of the history table) are evaluated.
        holdout_as_of: Comma-separated ISO as-of dates, e.g. ``2026-08-25,2026-08-26``; the forecast dates are
            the days after.
        forecast_metrics: Output; ``forecast_<model>_<target>_<mae|rmse|wape>`` for model spark, legacy and
            naive and target apy and tvl (a WAPE is left out when the actuals sum to 0), and
            ``forecast_rows_evaluated_<target>``, ``forecast_rows_dropped_<target>``, ``forecast_holdout_dates``
            and ``forecast_gate_pass`` (1.0 or 0.0, computed whether or not the gate is enabled). All names start
            with ``forecast_``: Vertex AI Experiments merges the metrics of all the run's components into one
            namespace, where a later key overwrites an earlier one.
        report: Output; self-contained HTML page: metrics, coverage per date, a bar chart by model and actual
            against forecasts for a few pools.
        password_secret: Secret reference of the password (``env:VAR`` or a Secret Manager name).
        spark_model: The ``model`` of the Spark forecaster's rows in the history table.
        legacy_model: The ``model`` of the legacy forecaster's rows in the history table.
        history_table: The forecast history (pool_id, forecast_date, model, run_id, as_of, forecasted_apy,
            forecasted_tvl).
        metrics_table: The actuals (pool_id, date, actual_apy, actual_tvl).
        gate_enabled: Raise after writing the outputs when the gate fails (fails the pipeline).
        gate_tolerance: How much worse than the legacy APY MAE the Spark one may be, as a fraction.
        sample_pools: How many pools the report plots: those with the most scored APY rows, ties by pool_id.

    Returns:
        spark_apy_mae: The Spark model's APY MAE.
        legacy_apy_mae: The legacy model's APY MAE.
        naive_apy_mae: The persistence forecast's APY MAE.
    """
    import base64
    import datetime as dt
    import html
    import io
    import logging
    import math
    import re
    from collections import namedtuple
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sqlalchemy import create_engine, text

    from spark_src.common.config import DbConfig

    log = logging.getLogger("evaluate_forecasts")
    identifier = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
    for name in (history_table, metrics_table):
        if not isinstance(name, str) or not identifier.match(name):
            raise ValueError(f"not a plain lower-case SQL identifier: {name!r}")
    if not run_id.strip():
        raise ValueError("run_id is empty: the forecasts to evaluate are those of one run")
    if not spark_model.strip() or not legacy_model.strip():
        raise ValueError("spark_model and legacy_model must be non-empty model names")
    if spark_model == legacy_model:
        raise ValueError(f"spark_model and legacy_model are both {spark_model!r}: nothing to compare")
    if not (math.isfinite(gate_tolerance) and gate_tolerance >= 0):
        raise ValueError(f"gate_tolerance must be a finite number >= 0, got {gate_tolerance!r}")
    if sample_pools < 0:
        raise ValueError(f"sample_pools must be >= 0, got {sample_pools}")
    if not holdout_as_of.strip():
        raise ValueError("holdout_as_of is empty: give comma-separated ISO as-of dates")
    as_of_dates = set()
    for value in holdout_as_of.split(","):
        try:
            as_of_dates.add(dt.date.fromisoformat(value.strip()))
        except ValueError:
            raise ValueError(f"holdout_as_of holds a non-ISO date (YYYY-MM-DD): {value.strip()!r}") from None
    as_of_dates = sorted(as_of_dates)

    models = ("spark", "legacy", "naive")
    targets = ("apy", "tvl")
    model_names = {"spark": spark_model, "legacy": legacy_model, "naive": "naive (persistence)"}

    db = DbConfig.from_url(database_url, password_secret)
    # Every (pool, as-of) with an actual on the forecast date or a forecast of the run, so that the coverage
    # table also counts forecasts that have no actual. The as-of must match too: a forecast of d + 1 made from
    # older data is not the next-day forecast the naive one is compared with. Both tables are keyed (pool, day)
    # and (pool, day, model, run), so the left joins add no rows; the duplicate check guards other tables.
    panel_sql = f"""
        WITH holdout AS (
            SELECT d AS as_of, d + 1 AS forecast_date FROM unnest(CAST(:as_of AS date[])) AS d
        ), keys AS (
            SELECT h.as_of, h.forecast_date, m.pool_id
            FROM holdout AS h JOIN "{metrics_table}" AS m ON m.date = h.forecast_date
            UNION
            SELECT h.as_of, h.forecast_date, f.pool_id
            FROM holdout AS h JOIN "{history_table}" AS f ON f.forecast_date = h.forecast_date AND f.as_of = h.as_of
            WHERE f.run_id = :run_id AND f.model IN (:spark_model, :legacy_model)
        )
        SELECT k.pool_id, k.as_of, k.forecast_date,
               CAST(a.actual_apy AS double precision) AS actual_apy,
               CAST(a.actual_tvl AS double precision) AS actual_tvl,
               CAST(s.forecasted_apy AS double precision) AS spark_apy,
               CAST(s.forecasted_tvl AS double precision) AS spark_tvl,
               CAST(l.forecasted_apy AS double precision) AS legacy_apy,
               CAST(l.forecasted_tvl AS double precision) AS legacy_tvl,
               CAST(n.actual_apy AS double precision) AS naive_apy,
               CAST(n.actual_tvl AS double precision) AS naive_tvl
        FROM keys AS k
        LEFT JOIN "{metrics_table}" AS a ON a.pool_id = k.pool_id AND a.date = k.forecast_date
        LEFT JOIN "{metrics_table}" AS n ON n.pool_id = k.pool_id AND n.date = k.as_of
        LEFT JOIN "{history_table}" AS s
            ON s.pool_id = k.pool_id AND s.forecast_date = k.forecast_date AND s.as_of = k.as_of
           AND s.run_id = :run_id AND s.model = :spark_model
        LEFT JOIN "{history_table}" AS l
            ON l.pool_id = k.pool_id AND l.forecast_date = k.forecast_date AND l.as_of = k.as_of
           AND l.run_id = :run_id AND l.model = :legacy_model
        ORDER BY k.pool_id, k.forecast_date
    """
    params = {"as_of": as_of_dates, "run_id": run_id, "spark_model": spark_model, "legacy_model": legacy_model}

    engine = create_engine(db.sqlalchemy_url())
    try:
        with engine.connect() as conn:
            for table in (history_table, metrics_table):
                if conn.execute(text("SELECT to_regclass(:t)"), {"t": f'"{table}"'}).scalar() is None:
                    raise RuntimeError(f"table {table} does not exist")
            result = conn.execute(text(panel_sql), params)
            panel = pd.DataFrame(result.all(), columns=list(result.keys()))
    finally:
        engine.dispose()

    value_columns = [f"{source}_{t}" for source in ("actual", *models) for t in targets]
    panel[value_columns] = panel[value_columns].astype("float64")
    duplicates = int(panel.duplicated(["pool_id", "forecast_date"]).sum())
    if duplicates:
        raise RuntimeError(
            f"{duplicates} duplicate (pool_id, date) keys in {metrics_table} or {history_table} over the holdout "
            "dates: the evaluation needs one actual and one forecast per model, pool and day"
        )
    present = {column: np.isfinite(panel[column].to_numpy()) for column in value_columns}
    scored = {t: present[f"actual_{t}"] & np.logical_and.reduce([present[f"{m}_{t}"] for m in models]) for t in targets}
    with_actual = {t: present[f"actual_{t}"] for t in targets}
    dropped = {t: int((with_actual[t] & ~scored[t]).sum()) for t in targets}
    missing = {(m, t): int((with_actual[t] & ~present[f"{m}_{t}"]).sum()) for m in models for t in targets}
    rows = {t: int(scored[t].sum()) for t in targets}

    # Per as-of date and target: how many rows each source has; it tells why a set is small or empty.
    coverage = []
    for as_of in as_of_dates:
        on_day = (panel["as_of"] == as_of).to_numpy()
        for t in targets:
            counts = {source: int((on_day & present[f"{source}_{t}"]).sum()) for source in ("actual", *models)}
            coverage.append({"as_of": as_of, "target": t, **counts, "scored": int((on_day & scored[t]).sum())})

    scores = {}
    for t in targets:
        if not rows[t]:
            continue
        actual = panel[f"actual_{t}"].to_numpy()[scored[t]]
        for m in models:
            error = panel[f"{m}_{t}"].to_numpy()[scored[t]] - actual
            scale = float(np.abs(actual).sum())
            scores[m, t] = {
                "mae": float(np.abs(error).mean()),
                "rmse": float(np.sqrt(np.square(error).mean())),
                # WAPE of a target whose actuals are all 0 is undefined, not 0 or infinite.
                "wape": float(np.abs(error).sum()) / scale if scale > 0 else None,
            }

    forecast_metrics.log_metric("forecast_holdout_dates", float(len(as_of_dates)))
    for t in targets:
        forecast_metrics.log_metric(f"forecast_rows_evaluated_{t}", float(rows[t]))
        forecast_metrics.log_metric(f"forecast_rows_dropped_{t}", float(dropped[t]))

    def number(value) -> str:
        return "n/a" if value is None else f"{value:.6g}"

    def png(figure) -> str:
        """An <img> of the figure, inline: the report must open from the artifact store without other files."""
        FigureCanvasAgg(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f'<img src="data:image/png;base64,{encoded}" alt="">'

    def table(header: list, body: list) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        lines = ["".join(f"<td>{html.escape(str(c))}</td>" for c in row) for row in body]
        return "<table><tr>" + head + "</tr>" + "".join(f"<tr>{line}</tr>" for line in lines) + "</table>"

    dates_text = ", ".join(d.isoformat() for d in as_of_dates)
    coverage_table = table(
        ["as-of", "forecast date", "target", "actuals", spark_model, legacy_model, "naive", "scored"],
        [
            [c["as_of"], c["as_of"] + dt.timedelta(days=1), c["target"].upper()]
            + [c[k] for k in ("actual", "spark", "legacy", "naive", "scored")]
            for c in coverage
        ],
    )
    body = [
        f"<p>Run <code>{html.escape(run_id)}</code>, holdout as-of dates {html.escape(dates_text)} (forecast dates "
        "the days after). A row is scored for a target when its actual and all three forecasts of that target "
        "exist; the naive forecast is the actual of the as-of date.</p>",
    ]

    empty = [t for t in targets if not rows[t]]
    if empty:
        # Which sources had no row on which date, per empty target: the usual causes of an empty set.
        gaps = []
        for t in empty:
            for source in ("actual", *models):
                days = [c["as_of"].isoformat() for c in coverage if c["target"] == t and not c[source]]
                if days:
                    label = "actuals" if source == "actual" else model_names[source]
                    gaps.append(f"{t.upper()} {label} on as-of {', '.join(days)}")
        if gaps:
            reason = "no rows for " + "; ".join(gaps)
        else:
            reason = "every source has rows, but never all of them for the same pool and day"
        message = (
            f"nothing to evaluate for run {run_id}: no {' or '.join(t.upper() for t in empty)} row has an actual and "
            f"forecasts from {spark_model}, {legacy_model} and naive (as-of {dates_text}); {reason}"
        )
        page_title = "Forecast evaluation: nothing to evaluate"
        body += [f"<p><strong>{html.escape(message)}</strong></p>", "<h2>Coverage</h2>", coverage_table]
    else:
        gate_limit = scores["legacy", "apy"]["mae"] * (1 + gate_tolerance)
        gate_pass = scores["spark", "apy"]["mae"] <= gate_limit
        for m in models:
            for t in targets:
                for name, value in scores[m, t].items():
                    if value is not None:
                        forecast_metrics.log_metric(f"forecast_{m}_{t}_{name}", value)
        forecast_metrics.log_metric("forecast_gate_pass", 1.0 if gate_pass else 0.0)

        apy_maes = {m: scores[m, "apy"]["mae"] for m in models}
        message = (
            f"forecast gate {'passed' if gate_pass else 'failed'}: APY MAE spark {apy_maes['spark']:.6g}, legacy "
            f"{apy_maes['legacy']:.6g}, naive {apy_maes['naive']:.6g}; spark may be at most legacy x (1 + "
            f"{gate_tolerance:g}) = {gate_limit:.6g}"
        )
        verdict = ("PASS" if gate_pass else "FAIL") + ("" if gate_enabled else " (gate disabled)")
        page_title = f"Forecast evaluation: {verdict}"

        metrics_table_html = table(
            ["model", *(f"{t.upper()} {name.upper()}" for t in targets for name in ("mae", "rmse", "wape"))],
            [
                [model_names[m], *(number(scores[m, t][name]) for t in targets for name in ("mae", "rmse", "wape"))]
                for m in models
            ],
        )
        counts_html = table(
            ["target", "rows scored", "rows dropped", *(f"missing {model_names[m]}" for m in models)],
            [[t.upper(), rows[t], dropped[t], *(missing[m, t] for m in models)] for t in targets],
        )

        colors = {"actual": "black", "spark": "tab:blue", "legacy": "tab:orange", "naive": "tab:gray"}
        bars = Figure(figsize=(9, 3.2))
        for axes, t, name in zip(bars.subplots(1, 2), targets, ("mae", "wape"), strict=True):
            values = [scores[m, t][name] for m in models]
            axes.bar(
                [model_names[m] for m in models],
                [v if v is not None else 0.0 for v in values],
                color=[colors[m] for m in models],
            )
            axes.set_title(f"{t.upper()} {name.upper()} (lower is better)")
            axes.tick_params(axis="x", labelsize=8)

        # Deterministic sample: the pools with the most scored APY rows, ties by pool_id.
        per_pool = panel.loc[scored["apy"], "pool_id"].value_counts()
        ranked = sorted(per_pool.items(), key=lambda item: (-item[1], item[0]))
        sampled = [pool_id for pool_id, _ in ranked[:sample_pools]]
        pool_plots = []
        for pool_id in sampled:
            figure = Figure(figsize=(10, 3.2))
            for axes, t in zip(figure.subplots(1, 2), targets, strict=True):
                pool_rows = panel[(panel["pool_id"] == pool_id).to_numpy() & scored[t]]
                for source in ("actual", *models):
                    axes.plot(
                        pool_rows["forecast_date"],
                        pool_rows[f"{source}_{t}"],
                        marker="o",
                        linewidth=2.5 if source == "actual" else 1.2,
                        zorder=3 if source == "actual" else 2,
                        color=colors[source],
                        label="actual" if source == "actual" else model_names[source],
                    )
                # One tick per forecast date: the automatic date locator puts hours between two days.
                axes.set_xticks(list(pool_rows["forecast_date"]), [d.isoformat() for d in pool_rows["forecast_date"]])
                axes.set_title(f"{t.upper()}")
                axes.tick_params(axis="x", labelrotation=30, labelsize=8)
                axes.legend(fontsize=7)
            pool_plots += [f"<h3>Pool <code>{html.escape(str(pool_id))}</code></h3>", png(figure)]

        body += [
            f"<p><strong>{html.escape(message)}</strong></p>",
            "<h2>Metrics</h2>",
            metrics_table_html,
            "<p>MAE and RMSE in the target's units; WAPE = sum of |error| / sum of |actual|.</p>",
            counts_html,
            png(bars),
            "<h2>Coverage</h2>",
            coverage_table,
            f"<h2>Actual against forecasts ({len(sampled)} pools with the most scored rows)</h2>",
            *pool_plots,
        ]

    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(page_title)}</title>",
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:0.8em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}</style>",
            "</head><body>",
            f"<h1>{html.escape(page_title)}</h1>",
            *body,
            "</body></html>",
        ]
    )
    Path(report.path).write_text(page, encoding="utf-8")

    log.info("%s", message)
    if empty:
        raise RuntimeError(message)
    if gate_enabled and not gate_pass:
        raise RuntimeError(message)
    summary = namedtuple("EvalSummary", ["spark_apy_mae", "legacy_apy_mae", "naive_apy_mae"])
    return summary(apy_maes["spark"], apy_maes["legacy"], apy_maes["naive"])
