"""Names every per-run resource (staging tables) from the pipeline job id, so two runs never share one."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from typing import NamedTuple

from kfp import dsl

from pipelines.settings import COMPONENT_BASE_IMAGE


@dsl.component(base_image=COMPONENT_BASE_IMAGE)
def make_run_context(pipeline_job_id: str) -> NamedTuple("RunContext", run_id=str, metrics_staging_table=str):
    """Derives the run id and the run's staging table names.

    Args:
        pipeline_job_id: The pipeline job's unique id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).

    Returns:
        run_id: Lower-case alphanumerics of the job id (at most 40), usable in table names and batch ids.
        metrics_staging_table: Staging table of the pool-metrics job for this run.
    """
    import re
    from collections import namedtuple

    run_id = re.sub(r"[^a-z0-9]", "", pipeline_job_id.lower())[-40:]
    if not run_id:
        raise ValueError(f"pipeline job id {pipeline_job_id!r} has no letters or digits to name a run with")
    context = namedtuple("RunContext", ["run_id", "metrics_staging_table"])
    return context(run_id, f"stg_pool_metrics_{run_id}")
