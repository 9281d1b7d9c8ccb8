"""log_run_to_experiment: no default TensorBoard, and a retried task resumes its experiment run.

The Vertex AI SDK calls (aiplatform.init, ExperimentRun.get, start_run, log_params, log_metrics) are mocked:
there is no GCP here. What is checked is what the component asks of them.
"""

from __future__ import annotations

import contextlib

import pytest
from google.cloud import aiplatform
from kfp import dsl

from components.log_experiment import log_run_to_experiment


@pytest.fixture
def vertex(monkeypatch):
    calls: list[tuple] = []
    existing_runs: set[str] = set()

    @contextlib.contextmanager
    def start_run(run, resume=False):
        if run in existing_runs and not resume:  # what Vertex answers: the run's context already exists
            raise RuntimeError(f"409 Context {run} already exists")
        existing_runs.add(run)
        calls.append(("start_run", run, resume))
        yield

    monkeypatch.setattr(aiplatform, "init", lambda **kwargs: calls.append(("init", kwargs)))
    monkeypatch.setattr(
        aiplatform.ExperimentRun, "get", staticmethod(lambda name, **kw: object() if name in existing_runs else None)
    )
    monkeypatch.setattr(aiplatform, "start_run", start_run)
    monkeypatch.setattr(aiplatform, "log_params", lambda params: calls.append(("log_params", params)))
    monkeypatch.setattr(aiplatform, "log_metrics", lambda metrics: calls.append(("log_metrics", metrics)))
    return calls


def _log(run_id="r1"):
    parity = dsl.Metrics(name="parity", uri="", metadata={"parity_rows": 10, "parity_passed": True})
    forecast = dsl.Metrics(name="forecast", uri="", metadata={"forecast_spark_apy_mae": 0.7})
    return log_run_to_experiment.python_func(
        experiment="defi", project="p", location="europe-west1", run_id=run_id, params={"train_days": 60},
        parity=parity, forecast=forecast,
    )  # fmt: skip


def test_init_asks_for_no_backing_tensorboard(vertex):
    assert _log() == "run-r1"
    (init,) = [c for c in vertex if c[0] == "init"]
    assert init[1] == {
        "project": "p", "location": "europe-west1", "experiment": "defi", "experiment_tensorboard": False
    }  # fmt: skip
    assert ("log_metrics", {"parity_rows": 10.0, "forecast_spark_apy_mae": 0.7}) in vertex


def test_a_retried_task_resumes_the_run_its_first_attempt_created(vertex):
    _log()
    assert _log() == "run-r1"  # before: 409, the run already exists
    assert [c for c in vertex if c[0] == "start_run"] == [("start_run", "run-r1", False), ("start_run", "run-r1", True)]
