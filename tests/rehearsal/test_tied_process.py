"""The rehearsal's spark-submit child dies with the component that started it, even one killed with SIGKILL.

Real processes, no Spark: the child is ``bash -c 'exec java Sleep.java'``, the same exec chain as spark-submit
(a shell script that execs the JVM), with a JVM that only sleeps. Liveness is read from /proc (Linux only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rehearsal.launcher import tied_process

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")

SLEEP_JAVA = "public class Sleep { public static void main(String[] a) throws Exception { Thread.sleep(120000); } }"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a container's init may never reap an orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _java_sleep_command(tmp_path: Path) -> list[str]:
    source = tmp_path / "Sleep.java"
    source.write_text(SLEEP_JAVA)
    return ["bash", "-c", f"exec java {source}"]


def _launcher_parent(tmp_path: Path, tied: bool) -> tuple[subprocess.Popen, int]:
    """A Python process that starts the sleeping JVM (tied or with a plain Popen) and prints the JVM's pid."""
    starter = (
        "from rehearsal.launcher import tied_process\n"
        "with tied_process(command, os.environ) as child:\n"
        "    print(child.pid, flush=True)\n"
        "    child.stdout.read()\n"
        if tied
        else "child = subprocess.Popen(command)\nprint(child.pid, flush=True)\nchild.wait()\n"
    )
    script = f"import os, subprocess, sys\ncommand = {_java_sleep_command(tmp_path)!r}\n{starter}"
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    java_pid = int(parent.stdout.readline())
    assert _wait_for(lambda: _comm(java_pid) == "java", 30), f"the child never became java ({_comm(java_pid)!r})"
    return parent, java_pid


def test_a_sigkilled_launcher_leaves_no_java_child(tmp_path):
    parent, java_pid = _launcher_parent(tmp_path, tied=True)

    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    assert _wait_for(lambda: not _alive(java_pid), 10), "the JVM outlived its SIGKILLed launcher"


def test_without_the_tie_the_java_child_outlives_its_launcher(tmp_path):
    """The control: a plain Popen's JVM survives the same kill, so the test above can fail."""
    parent, java_pid = _launcher_parent(tmp_path, tied=False)
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        time.sleep(2)
        assert _alive(java_pid)
    finally:
        os.kill(java_pid, signal.SIGKILL)


def test_an_exception_in_the_reader_kills_the_child_before_it_propagates(tmp_path):
    with (
        pytest.raises(RuntimeError, match="reader failed"),
        tied_process(_java_sleep_command(tmp_path), os.environ) as child,
    ):
        java_pid = child.pid
        assert _wait_for(lambda: _comm(java_pid) == "java", 30)
        raise RuntimeError("reader failed")

    assert child.returncode == -signal.SIGKILL
    assert not _alive(java_pid)
