"""Fault injection for the crash tests: a process SIGKILLs itself at a named step.

``DEFI_KILL_AT=<step>`` in the environment makes :func:`maybe_kill` at that step end the process with SIGKILL,
as an out-of-memory kill or a preempted VM would: no ``finally``, no rollback from the client, no cleanup. The
steps are placed where a real crash does the most damage (after a write, before its commit or its summary):

``spark_write`` (staging table written, job not done), ``legacy`` (shadow rows written, not committed),
``parity`` (gate evaluated, no verdict recorded), ``upsert:<target table>`` (rows upserted, not committed),
``forecast`` (model saved and forecast staging written, job not done), ``legacy_forecast`` (legacy backtest
rows written, not committed), ``promote_forecasts`` (forecasts, history and quarantine upserted and the staging
tables dropped, not committed).

Unset (always, outside the tests) it does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_AT_VARIABLE = "DEFI_KILL_AT"
# In the order the pipeline reaches them.
STEPS = (
    "spark_write",
    "legacy",
    "parity",
    "upsert:pool_daily_metrics",
    "forecast",
    "legacy_forecast",
    "promote_forecasts",
)


def maybe_kill(step: str) -> None:
    """SIGKILLs this process when ``DEFI_KILL_AT`` names ``step``."""
    if os.environ.get(KILL_AT_VARIABLE) == step:
        os.kill(os.getpid(), signal.SIGKILL)
