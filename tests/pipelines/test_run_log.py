"""What a local run shows: one line per finished task on the terminal, everything else in run.log, and the
failed task's own last error line."""

# No `from __future__ import annotations`: KFP reads the real annotation objects of the components below.

import io

import pytest
from kfp import dsl, local

from pipelines import run_log

KFP_STREAM = """\
\x1b[96m'make-run-context'\x1b[0m
12:00:00.001 - INFO - Executing task \x1b[96m'make-run-context'\x1b[0m
12:00:00.002 - INFO - Streamed logs:

    {"executor_input": "... a long JSON ..."}
    WARNING: No Partition Defined for Window operation!
12:00:01.000 - INFO - Task \x1b[96m'make-run-context'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
12:00:01.001 - INFO - Executing task \x1b[96m'evaluate-metrics-parity'\x1b[0m
    2026-11-28 12:00:01,500 ERROR evaluate: 3 cells beyond tolerance
    Traceback (most recent call last):
      File "executor_main.py", line 1, in <module>
    RuntimeError: metrics parity failed: 3 cells; see the report artifact

    more output after the traceback
"""


def test_one_line_per_task_and_the_failed_tasks_own_error():
    log, out = io.StringIO(), io.StringIO()
    progress = run_log.RunProgress(
        log=log,
        display_names={"make-run-context": "run context", "evaluate-metrics-parity": "parity gate: Spark vs legacy"},
        out=out,
    )
    for chunk in (KFP_STREAM[:70], KFP_STREAM[70:300], KFP_STREAM[300:]):  # arbitrary chunk boundaries
        progress.write(chunk)
    progress.abort()  # kfp.local raises for a failed task instead of logging its status line

    assert log.getvalue() == KFP_STREAM  # the raw stream, unchanged
    lines = out.getvalue().splitlines()
    assert [line.split() for line in lines] == [
        ["ok", lines[0].split()[1], "s", "run", "context"],
        ["FAILURE", lines[1].split()[1], "s", "parity", "gate:", "Spark", "vs", "legacy"],
    ]
    failed = progress.failed()
    assert failed.display_name == "parity gate: Spark vs legacy"
    assert failed.error_line == "RuntimeError: metrics parity failed: 3 cells; see the report artifact"


def test_an_error_log_line_names_the_failure_when_there_is_no_traceback():
    progress = run_log.RunProgress(log=io.StringIO(), display_names={}, out=io.StringIO())
    progress.write("Executing task 'x'\n  INFO starting\n  2026 ERROR x: the database refused\n  exiting\n")
    progress.abort()
    assert progress.failed().error_line == "2026 ERROR x: the database refused"


@dsl.component(base_image="python:3.11")
def _double(number: int) -> int:
    return 2 * number


@dsl.component(base_image="python:3.11")
def _refuse(number: int) -> int:
    raise ValueError(f"refused {number}: a planted failure")


@dsl.pipeline
def _two_steps(number: int = 3) -> None:
    doubled = _double(number=number).set_display_name("double it")
    _refuse(number=doubled.output).set_display_name("refuse it")


def test_a_real_kfp_local_run_is_captured(tmp_path, monkeypatch):
    """Two lightweight components under kfp.local (SubprocessRunner): the second raises."""
    monkeypatch.chdir(tmp_path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    out = io.StringIO()
    from google.protobuf import json_format

    names = run_log.display_names(json_format.MessageToDict(_two_steps.pipeline_spec))
    with run_log.capture(tmp_path / "run.log", names, out=out) as progress:
        with pytest.raises(RuntimeError):
            _two_steps()
        progress.abort()

    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "FAILURE"]
    assert [line.split("s  ", 1)[1] for line in lines] == ["double it", "refuse it"]
    assert progress.failed().error_line == "ValueError: refused 6: a planted failure"
    log = (tmp_path / "run.log").read_text()
    assert "executor_input" in log or "Executing task" in log
    assert "refused 6: a planted failure" in log
    assert "no effect in the current local runner" not in log  # the known-noise warning is filtered


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dsl.component(base_image="python:3.11")
def _slow(seconds: float) -> None:
    import time

    time.sleep(seconds)


@dsl.pipeline
def _one_slow_step() -> None:
    _slow(seconds=2.5).set_display_name("wait a little")


def test_a_terminal_gets_a_live_line_for_the_running_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"), raise_on_error=True)
    out = _Terminal()
    from google.protobuf import json_format

    names = run_log.display_names(json_format.MessageToDict(_one_slow_step.pipeline_spec))
    with run_log.capture(tmp_path / "run.log", names, out=out):
        _one_slow_step()

    text = out.getvalue()
    assert "\r\x1b[K  running " in text and "s  wait a little" in text  # redrawn while the task ran
    last = text.split("\r\x1b[K")[-1]  # the live line is cleared before the task's own line
    assert last.split() == ["ok", last.split()[1], "s", "wait", "a", "little"]
