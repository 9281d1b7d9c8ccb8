"""Finding a local run's outputs by what they are (output name, metadata), not by KFP's numbered task names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.local_run import LocalRun, LocalRunFailed


def _artifact(name: str, uri: str, metadata: dict) -> dict:
    return {name: {"artifacts": [{"name": name, "uri": uri, "metadata": metadata}]}}


def _run(tmp_path: Path, outputs: dict[str, dict]) -> LocalRun:
    for task, output in outputs.items():
        (tmp_path / task).mkdir()
        (tmp_path / task / "executor_output.json").write_text(json.dumps(output))
    return LocalRun(tmp_path)


def _promoted(staging: str, table: str, inserted: int) -> dict:
    metadata = {"table": table, "staging_table": staging, "inserted": inserted}
    return {"artifacts": _artifact("promoted", f"postgresql://h:1/db/{table}", metadata)}


@pytest.fixture
def run(tmp_path) -> LocalRun:
    # Task names deliberately unlike the compiled ones: nothing may depend on them.
    return _run(
        tmp_path,
        {
            "a": {
                "parameterValues": {"run_id": "42", "metrics_staging_table": "stg_m", "forecast_staging_table": "stg_f"}
            },
            "b": _promoted("stg_f", "pool_daily_metrics", 6),
            "c": _promoted("stg_m", "pool_daily_metrics", 300),
            "d": _promoted("stg_f", "pool_forecast_history", 6),
            "e": {
                "artifacts": {
                    **_artifact("forecasts", "postgresql://h:1/db/stg_f", {"pools_forecast": 6}),
                    **_artifact("model", "/models/42", {"training_rows": 500}),
                }
            },
            "f": {"artifacts": _artifact("model", "/models/42", {"training_rows": 500, "model_card": "/m/card"})},
            "g": {
                "artifacts": _artifact(
                    "dataset", "postgresql://h:1/db/public.pools", {"table": "pools", "role": "source"}
                )
            },
        },
    )


def test_promotions_are_told_apart_by_their_staging_table_and_target(run):
    assert run.context() == {"run_id": "42", "metrics_staging_table": "stg_m", "forecast_staging_table": "stg_f"}
    assert run.promotion("metrics_staging_table", "pool_daily_metrics").metadata["inserted"] == 300
    assert run.promotion("forecast_staging_table", "pool_daily_metrics").metadata["inserted"] == 6
    assert run.promotion("forecast_staging_table", "pool_forecast_history").task == "d"
    assert run.promotion("backtest_staging_table", "pool_forecast_history") is None  # not in the context


def test_find_refuses_an_ambiguous_question_and_returns_none_for_a_missing_output(run):
    with pytest.raises(LookupError, match="3 outputs promoted"):
        run.find("promoted")
    assert run.find("parity") is None
    with pytest.raises(KeyError, match="no output parity"):
        run.metadata("parity")


def test_the_forecast_model_is_the_one_beside_the_forecasts_and_lineage_lists_records_only(run):
    model = run.sibling(run.find("forecasts"), "model")
    assert (model.task, model.uri, model.metadata) == ("e", "/models/42", {"training_rows": 500})
    assert [(item["task"], item["artifact"]) for item in run.lineage()] == [("f", "model"), ("g", "dataset")]


def test_a_failed_run_names_the_task_kfp_local_reports(tmp_path):
    cause = RuntimeError(
        "Pipeline \x1b[95m'defi-pool-metrics'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. "
        "Inner task failed: \x1b[96m'evaluate-metrics-parity'\x1b[0m."
    )
    assert LocalRunFailed(LocalRun(tmp_path), cause).failed_task == "evaluate-metrics-parity"
    assert LocalRunFailed(LocalRun(tmp_path), RuntimeError("no task named")).failed_task is None


def test_the_summary_prints_what_the_cleanup_of_abandoned_runs_removed(tmp_path, capsys):
    from pipelines.cli import _print_cleanup

    counts = {
        "runs_cleaned": 2.0,  # KFP may store counts as floats
        "tables_dropped": 7,
        "history_rows_deleted": 0,
        "model_dirs_removed": 1,
        "unregistered_staging_tables": 1,
        "run_id": "42",
    }
    _print_cleanup(_run(tmp_path, {"start": {"artifacts": _artifact("cleanup", "", counts)}}))
    assert capsys.readouterr().out == (
        "cleanup of abandoned runs: 2 runs, 7 tables dropped, 0 forecast history rows deleted, 1 model "
        "directories removed; 1 unregistered stg_* tables left alone\n"
    )
