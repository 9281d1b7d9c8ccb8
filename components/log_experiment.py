"""Logs a run's parameters and metrics to a Vertex AI Experiment (the last step of the pipeline).

A run submitted with ``PipelineJob.submit(experiment=…)`` is linked to the experiment by Vertex itself; a
scheduled run cannot be (schedules take no experiment), so the pipeline logs it here when one is named.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects of components.

from kfp import dsl

from components.base_image import component_base_image


@dsl.component(base_image=component_base_image())
def log_run_to_experiment(
    experiment: str,
    project: str,
    location: str,
    run_id: str,
    params: dict,
    parity: dsl.Input[dsl.Metrics],
    forecast: dsl.Input[dsl.Metrics],
) -> str:
    """Creates (or, on a retry, resumes) experiment run ``run-<run_id>`` with the run's parameters and metrics.

    Args:
        experiment: Vertex AI Experiment name; empty: nothing is logged (local runs, submitted runs).
        project: GCP project of the experiment.
        location: Region of the experiment.
        run_id: The pipeline run.
        params: Parameters to log (strings and numbers).
        parity: The parity gate's metrics (``parity_*``).
        forecast: The forecast evaluation's metrics (``forecast_*``).

    Returns:
        The experiment run name, or an empty string when nothing was logged.
    """
    import logging

    log = logging.getLogger("log_run_to_experiment")
    metrics = {}
    for source in (parity, forecast):
        for key, value in source.metadata.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if key in metrics:  # Experiments keeps one value per key: a repeat would overwrite silently
                    raise ValueError(f"metric {key} is reported twice; metric names must be unique per run")
                metrics[key] = float(value)
    if not experiment:
        log.info("no experiment named; %d metrics not logged", len(metrics))
        return ""
    from google.cloud import aiplatform

    # experiment_tensorboard=False: otherwise init creates (and bills) a default backing TensorBoard.
    aiplatform.init(project=project, location=location, experiment=experiment, experiment_tensorboard=False)
    run_name = f"run-{run_id}"
    # Vertex retries a failed task: the run may exist from the first attempt, and start_run without resume
    # would then fail on the existing name. Logging the same values again is harmless.
    existing = aiplatform.ExperimentRun.get(run_name, experiment=experiment, project=project, location=location)
    with aiplatform.start_run(run=run_name, resume=existing is not None):
        aiplatform.log_params({k: v if isinstance(v, (int, float)) else str(v) for k, v in params.items()})
        aiplatform.log_metrics(metrics)
    return run_name
