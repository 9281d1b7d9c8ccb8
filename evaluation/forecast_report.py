"""The forecast evaluation as a self-contained HTML page: verdict, metrics, coverage per date, a bar chart by
model and actual against forecasts for a few pools (plots inline as PNG, so the page opens from the artifact
store without other files)."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io

from evaluation.forecasts import MODELS, SOURCES, TARGETS, Evaluation

COLORS = {"actual": "black", "spark": "tab:blue", "legacy": "tab:orange", "naive": "tab:gray"}
# Colour, marker and dash all differ: two forecasts that coincide (or a reader who does not tell the colours
# apart) still show as two lines.
LINES = {
    "actual": {"marker": "o", "linestyle": "-", "linewidth": 2.5, "zorder": 3},
    "spark": {"marker": "s", "linestyle": "--", "linewidth": 1.4, "zorder": 2, "markerfacecolor": "none"},
    "legacy": {"marker": "^", "linestyle": "-.", "linewidth": 1.4, "zorder": 2, "markerfacecolor": "none"},
    "naive": {"marker": "x", "linestyle": ":", "linewidth": 1.4, "zorder": 2},
}
UNITS = {"apy": "percentage points", "tvl": "USD"}
AXIS_LABELS = {"apy": "APY (%)", "tvl": "TVL (USD)"}
STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:0.8em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
)


def _metric(value: float | None, target: str, name: str) -> str:
    """A metric in its unit: WAPE as a percentage, TVL errors in whole USD and APY errors in percentage points,
    with thousands separators."""
    if value is None:
        return "n/a"
    if not abs(value) < 1e12:  # a forecaster that blew up (1e300-scale errors), or Infinity: 4 digits, not 300
        return f"{value:.4g}"
    if name == "wape":
        return f"{value:.2%}"
    return f"{value:,.0f}" if target == "tvl" else f"{value:,.3f}"


def pool_label(evaluation: Evaluation, pool_id: str) -> str:
    """``project symbol (chain)`` of a pool when the panel has its name, else its id."""
    panel = evaluation.panel
    if "pool_name" in panel.columns:
        names = panel.loc[(panel["pool_id"] == pool_id).to_numpy(), "pool_name"].dropna()
        if len(names):
            return str(names.iloc[0])
    return str(pool_id)


def _png(figure) -> str:
    """An inline <img> of a matplotlib figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="">'


def _table(header: list, body: list) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    lines = ["".join(f"<td>{html.escape(str(c))}</td>" for c in row) for row in body]
    return "<table><tr>" + head + "</tr>" + "".join(f"<tr>{line}</tr>" for line in lines) + "</table>"


def title(evaluation: Evaluation, gate_enabled: bool) -> str:
    if evaluation.empty_targets:
        return "Forecast evaluation: nothing to evaluate"
    promoted = evaluation.promoted_model(gate_enabled)
    verdict = f"promoted {promoted}" + ("" if gate_enabled else " (gate disabled)")
    if evaluation.promoted(gate_enabled) == "naive":
        verdict += ": the model lost, tomorrow's forecast is persistence"
    return f"Forecast evaluation: {verdict}"


def coverage_table(evaluation: Evaluation) -> str:
    request = evaluation.request
    return _table(
        ["as-of", "forecast date", "target", "actuals", request.spark_model, request.legacy_model, "naive", "scored"],
        [
            [c["as_of"], c["as_of"] + dt.timedelta(days=1), c["target"].upper()]
            + [c[k] for k in ("actual", "spark", "legacy", "naive", "scored")]
            for c in evaluation.coverage
        ],
    )


def score_tables(evaluation: Evaluation) -> list[str]:
    """The metrics by model and target, and the scored, dropped and missing rows by target."""
    names, scores = evaluation.request.model_names, evaluation.scores
    metrics = _table(
        [
            "model",
            *(
                f"{t.upper()} {name.upper()}" + ("" if name == "wape" else f" ({UNITS[t]})")
                for t in TARGETS
                for name in ("mae", "rmse", "wape")
            ),
        ],
        [
            [names[m], *(_metric(scores[m, t][name], t, name) for t in TARGETS for name in ("mae", "rmse", "wape"))]
            for m in MODELS
        ],
    )
    counts = _table(
        ["target", "rows scored", "rows dropped", "actual quarantined", *(f"missing {names[m]}" for m in MODELS)],
        [
            [
                t.upper(),
                evaluation.rows[t],
                evaluation.dropped[t],
                evaluation.quarantined[t],
                *(evaluation.missing[m, t] for m in MODELS),
            ]
            for t in TARGETS
        ],
    )
    return [
        metrics,
        "<p>MAE and RMSE in the target's units (APY in percentage points, TVL in USD); WAPE = sum of |error| / "
        "sum of |actual|.</p>",
        counts,
    ]


# Values at or beyond this magnitude are not drawn (the score tables show them): matplotlib cannot place ticks on a
# range near float64's limit, nor scale an axis to Infinity.
PLOT_LIMIT = 1e300


def bar_chart(evaluation: Evaluation) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    names = evaluation.request.model_names
    bars = Figure(figsize=(9, 3.2), layout="constrained")
    for axes, t, name in zip(bars.subplots(1, 2), TARGETS, ("mae", "wape"), strict=True):
        values = [evaluation.scores[m, t][name] for m in MODELS]
        # An undefined score, or one at or beyond PLOT_LIMIT, has no bar; the table has it.
        heights = [v if v is not None and abs(v) < PLOT_LIMIT else 0.0 for v in values]
        axes.bar([names[m] for m in MODELS], heights, color=[COLORS[m] for m in MODELS])
        unit = "" if name == "wape" else f", {UNITS[t]}"
        axes.set_title(f"{t.upper()} {name.upper()} (lower is better{unit})")
        axes.yaxis.set_major_formatter(StrMethodFormatter("{x:.1%}" if name == "wape" else "{x:,.2f}"))
        axes.tick_params(axis="x", labelsize=8)
    return _png(bars)


def sample_pools(evaluation: Evaluation) -> list[str]:
    """Deterministic sample: the pools with the most scored APY rows, ties by pool_id."""
    per_pool = evaluation.panel.loc[evaluation.scored["apy"], "pool_id"].value_counts()
    ranked = sorted(per_pool.items(), key=lambda item: (-item[1], item[0]))
    return [pool_id for pool_id, _ in ranked[: evaluation.request.sample_pools]]


def pool_plot(evaluation: Evaluation, pool_id: str) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    panel, names = evaluation.panel, evaluation.request.model_names
    figure = Figure(figsize=(11, 3.4), layout="constrained")  # room for the TVL axis labels
    for axes, t in zip(figure.subplots(1, 2), TARGETS, strict=True):
        pool_rows = panel[(panel["pool_id"] == pool_id).to_numpy() & evaluation.scored[t]]
        for source in SOURCES:
            values = pool_rows[f"{source}_{t}"]
            axes.plot(
                pool_rows["forecast_date"],
                values.where(values.abs() < PLOT_LIMIT),
                color=COLORS[source],
                label="actual" if source == "actual" else names[source],
                **LINES[source],
            )
        # One tick per forecast date: the automatic date locator puts hours between two days.
        axes.set_xticks(list(pool_rows["forecast_date"]), [d.isoformat() for d in pool_rows["forecast_date"]])
        axes.set_title(f"{t.upper()}")
        axes.set_ylabel(AXIS_LABELS[t])
        axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}" if t == "tvl" else "{x:,.2f}"))
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
        axes.legend(fontsize=7)
    return _png(figure)


def render_html(evaluation: Evaluation, gate_enabled: bool) -> str:
    """The whole page."""
    request = evaluation.request
    dates = ", ".join(d.isoformat() for d in request.as_of_dates)
    page_title = title(evaluation, gate_enabled)
    body = [
        f"<p>Run <code>{html.escape(request.run_id)}</code>, holdout as-of dates {html.escape(dates)} (forecast "
        "dates the days after). A row is scored for a target when its actual and all three forecasts of that "
        "target exist and the actual is not quarantined; the naive forecast is the pool's clean value of the as-of "
        "date.</p>",
        f"<p><strong>{html.escape(evaluation.message(gate_enabled))}</strong></p>",
    ]
    if evaluation.empty_targets:
        body += ["<h2>Coverage</h2>", coverage_table(evaluation)]
    else:
        sampled = sample_pools(evaluation)
        body += [
            "<h2>Metrics</h2>",
            *score_tables(evaluation),
            bar_chart(evaluation),
            "<h2>Coverage</h2>",
            coverage_table(evaluation),
            f"<h2>Actual against forecasts ({len(sampled)} pools with the most scored rows)</h2>",
        ]
        for pool_id in sampled:
            body += [
                f"<h3>{html.escape(pool_label(evaluation, pool_id))} <code>{html.escape(str(pool_id))}</code></h3>",
                pool_plot(evaluation, pool_id),
            ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{html.escape(page_title)}</title>",
            f"<style>{STYLE}</style>",
            "</head><body>",
            f"<h1>{html.escape(page_title)}</h1>",
            *body,
            "</body></html>",
        ]
    )
