"""Comparing runs: one row per run with its parameters and ``parity_*``/``forecast_*`` metrics, from a Vertex AI
Experiment or from the kfp.local run folders."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.local_run import RUNS_DIR, LocalRun
from pipelines.settings import GcpSettings

if TYPE_CHECKING:
    import pandas as pd

# Experiments keeps one value per metric name and run; the pipeline's metric names carry these prefixes.
METRIC_PREFIXES = ("parity_", "forecast_")
# The metrics outputs of a run (the parity gate's and the forecast evaluation's) that the comparison reads.
_METRIC_OUTPUTS = ("parity", "forecast_metrics")


def experiment_table(settings: GcpSettings, experiment: str) -> pd.DataFrame:
    """One row per run of a Vertex AI Experiment: run, state, ``param.*`` and the pipeline's ``metric.*``."""
    from google.cloud import aiplatform

    aiplatform.init(project=settings.gcp_project, location=settings.gcp_region)
    table = aiplatform.get_experiment_df(experiment, include_time_series=False)
    keep = [
        c for c in table.columns if not c.startswith("metric.") or c.removeprefix("metric.").startswith(METRIC_PREFIXES)
    ]
    return table[keep]


def local_runs_table(runs_dir: Path = RUNS_DIR) -> pd.DataFrame:
    """The same kind of table from the kfp.local run folders (``<runs_dir>/<stamp>/<pipeline run>/<task>/``).

    Columns: ``run_id``, ``date`` (UTC start of the run), ``param.*`` (the resolved forecast dates) and every
    ``metric.parity_*``/``metric.forecast_*``. Runs that produced no metric (failed early) are left out.
    """
    import pandas as pd

    rows = []
    run_dirs = sorted({output.parent.parent for output in runs_dir.glob("*/*/*/executor_output.json")})
    for run_dir in run_dirs:
        run = LocalRun(run_dir)
        metrics = {}
        for name in _METRIC_OUTPUTS:
            output = run.find(name)
            metadata = output.metadata if output else {}
            metrics.update(
                {
                    f"metric.{key}": value
                    for key, value in metadata.items()
                    if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float))
                }
            )
        if not metrics:
            continue
        params = run.parameters("as_of", "forecast_date")
        rows.append(
            {
                "run_id": run.context().get("run_id", run_dir.name),
                "date": _run_started(run_dir),
                **{f"param.{key}": value for key, value in sorted(params.items())},
                **metrics,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    leading = ["run_id", "date"]
    params = sorted(c for c in table.columns if c.startswith("param."))
    metric_columns = [c for c in table.columns if c.startswith("metric.")]
    return table[leading + params + metric_columns].sort_values("date", ignore_index=True)


def _run_started(run_dir: Path) -> dt.datetime:
    """``run_local`` names a run's root ``<UTC %Y%m%dT%H%M%S>-<hex>``; other folders fall back to their mtime."""
    match = re.match(r"(\d{8}T\d{6})", run_dir.parent.name)
    if match:
        return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(run_dir.stat().st_mtime, dt.UTC)
