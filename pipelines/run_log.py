"""What a person sees of a local run: the raw kfp.local stream (executor inputs, Spark and legacy logs, kfp's
own lines) goes to ``run.log`` in the run's folder; the terminal gets one line per task as it finishes (display
name, seconds, status) and, on a terminal, a live line for the task that is running.

kfp.local writes everything through ``sys.stdout``/``sys.stderr`` and the root logger of this process (each task's
subprocess output is re-printed line by line), so redirecting those for the length of the run captures all of it.
The task lines are read from kfp.local's own ``Executing task '…'`` / ``Task '…' finished with status …`` lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# What names a failed task's error, best first: the last line of a Python traceback (``ValueError: …``,
# ``pkg.mod.SomeError: …``), then a log record at ERROR; else its last line.
_ERROR_SHAPES = (
    re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)\b.*$"),
    re.compile(r"\b(?:ERROR|CRITICAL)\b"),
    re.compile(r"\S"),
)


@dataclass
class TaskResult:
    """One finished task: its display name, status (``SUCCESS``/``FAILURE``), seconds and last error line."""

    task: str
    display_name: str
    status: str
    seconds: float
    error_line: str = ""


@dataclass
class RunProgress:
    """Reads the run's stream line by line: writes it to ``log``, reports tasks to ``out``.

    Args:
        log: The ``run.log`` file (text, opened by the caller).
        display_names: Compiled task name → display name (``run-forecast-local`` → ``forecast (Spark, …)``).
        out: Where the task lines go (the real terminal or stderr of the command).
        live: Redraw a line for the running task every second (only on a terminal).
    """

    log: TextIO
    display_names: Mapping[str, str]
    out: TextIO
    live: bool = False
    finished: list[TaskResult] = field(default_factory=list)
    _running: dict[str, float] = field(default_factory=dict)
    _task_lines: dict[str, list[str]] = field(default_factory=dict)
    _pending: str = ""
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _live_shown: bool = False

    # --- the file-like side kfp.local writes to ------------------------------------------------------------
    def write(self, text: str) -> int:
        with self._lock:
            self.log.write(text)
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()

    def isatty(self) -> bool:  # kfp.local asks to size its separator lines
        return False

    # --- parsing -------------------------------------------------------------------------------------------
    def _line(self, line: str) -> None:
        started = _STARTED.search(line)
        if started:
            self._running[started.group(1)] = time.monotonic()
            self._task_lines[started.group(1)] = []
            return
        finished = _FINISHED.search(line)
        if finished:
            self._finish(finished.group(1), finished.group(2))
            return
        for task in self._running:  # tasks run one at a time under kfp.local
            self._task_lines[task].append(line.strip())

    def _finish(self, task: str, status: str) -> None:
        started = self._running.pop(task, time.monotonic())
        lines = self._task_lines.pop(task, [])
        error = "" if status == "SUCCESS" else _error_line(lines)
        result = TaskResult(task, self.display_names.get(task, task), status, time.monotonic() - started, error)
        self.finished.append(result)
        self._clear_live()
        mark = "ok" if status == "SUCCESS" else status
        self.out.write(f"  {mark:<7} {result.seconds:6.1f} s  {result.display_name}\n")
        self.out.flush()

    # --- the live line ------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Redraws the live line of the running task (called every second by :func:`capture`)."""
        if not self.live:
            return
        with self._lock:
            if not self._running:
                return
            task, started = next(iter(self._running.items()))
            self.out.write(
                f"\r\x1b[K  running {time.monotonic() - started:6.0f} s  {self.display_names.get(task, task)}"
            )
            self.out.flush()
            self._live_shown = True

    def _clear_live(self) -> None:
        if self._live_shown:
            self.out.write("\r\x1b[K")
            self._live_shown = False

    def abort(self) -> None:
        """Reports the task still running as failed: with ``raise_on_error`` kfp.local raises instead of logging
        the failed task's status line."""
        with self._lock:
            for task in list(self._running):
                self._finish(task, "FAILURE")

    def failed(self) -> TaskResult | None:
        """The first task that did not succeed, if any."""
        return next((result for result in self.finished if result.status != "SUCCESS"), None)


def _error_line(lines: list[str]) -> str:
    for shape in _ERROR_SHAPES:
        found = next((line for line in reversed(lines) if shape.search(line)), None)
        if found:
            return found
    return ""


@contextlib.contextmanager
def capture(log_path: Path, display_names: Mapping[str, str], out: TextIO | None = None) -> Iterator[RunProgress]:
    """Sends this process's stdout, stderr, root logger and warnings to ``log_path`` while the block runs.

    Known noise is filtered at the source, narrowly (exact messages, with the reason), and still reaches the log
    only if its shape changes; everything else is kept in the log.
    """
    out = out or sys.__stderr__
    live = bool(getattr(out, "isatty", lambda: False)())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log_file:
        progress = RunProgress(log=log_file, display_names=display_names, out=out, live=live)
        handler = logging.StreamHandler(progress)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        saved_handlers = root.handlers[:]
        root.handlers[:] = [handler]
        stop = threading.Event()
        ticker = threading.Thread(target=_every_second(stop, progress.tick), daemon=True)
        try:
            with (
                contextlib.redirect_stdout(progress),
                contextlib.redirect_stderr(progress),
                warnings.catch_warnings(),
            ):
                _ignore_known_noise()
                if live:
                    ticker.start()
                yield progress
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()
            with progress._lock:
                progress._clear_live()
            root.handlers[:] = saved_handlers
            if progress._pending:
                log_file.write("\n")


def _every_second(stop: threading.Event, call: Callable[[], None]) -> Callable[[], None]:
    def loop() -> None:
        while not stop.wait(1.0):
            call()

    return loop


def _ignore_known_noise() -> None:
    """Warnings every local run raises, that say nothing about this run (kept narrow: exact shapes only)."""
    # kfp.local ignores display names (they name the Vertex UI's nodes); the task lines show them instead.
    warnings.filterwarnings("ignore", message=r"Task '[^']+': settings \['display_name'\] have no effect")
    # The components' base image is for Vertex; SubprocessRunner(use_venv=False) runs them in this environment,
    # which is the image's content (the project and its pinned dependencies).
    warnings.filterwarnings(
        "ignore", message=r"You may be attemping to run a task that uses custom or non-Python base image"
    )


def display_names(pipeline_spec: Mapping) -> dict[str, str]:
    """Compiled task name → display name, for the tasks of the root DAG and of nested DAGs (a spec as a dict)."""
    dags = [pipeline_spec.get("root", {}).get("dag", {})]
    dags += [component.get("dag", {}) for component in pipeline_spec.get("components", {}).values()]
    return {
        name: task.get("taskInfo", {}).get("name", name) for dag in dags for name, task in dag.get("tasks", {}).items()
    }
