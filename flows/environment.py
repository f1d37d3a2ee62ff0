"""The environment our flow runs want from Prefect, in one place.

Prefect reads these when it loads its settings, so each way of starting a run sets them for the process the run
executes in: `python flows/curriculum.py` at the top of the script, deployments/serve.py for the child process
of each run it serves, and prefect.yaml's job_variables for a worker's runs (YAML cannot import this module:
tests/flows/test_environment.py checks that it says the same). Importing this module sets nothing.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# Our packages log with the standard library; Prefect forwards these loggers to the run's logs in the UI.
EXTRA_LOGGERS = ("curriculum", "data", "model", "tasks")
# Seconds between a running flow's heartbeats (Prefect's minimum), by which deployments/crash_detection.py tells
# a dead run from a live one.
HEARTBEAT_S = 30
# OpenMP threads waiting for work spin by default. Where the cores are shared (other jobs, or several training
# processes) the spinning takes the cores the working threads need: bench/bench_threads.py, 2 threads on a busy
# 2-core machine, 235 tokens/s spinning against 522 passive. OpenMP reads this once, when torch loads it, so it
# is set here, before the run's process imports torch (also by the DDP launcher for its workers).
OMP_WAIT_POLICY = "PASSIVE"


def run_environment(*, heartbeat: bool = True) -> dict[str, str]:
    """The variables, as strings; `heartbeat=False` leaves the heartbeat out (Prefect sends none by default)."""
    env = {"PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(EXTRA_LOGGERS), "OMP_WAIT_POLICY": OMP_WAIT_POLICY}
    if heartbeat:
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_S)
    return env


def set_run_environment(environ: MutableMapping[str, str] | None = None, *, heartbeat: bool = True) -> None:
    """Add run_environment() to `environ` (default: this process's); a variable already set keeps its value."""
    environ = os.environ if environ is None else environ
    for key, value in run_environment(heartbeat=heartbeat).items():
        environ.setdefault(key, value)


def set_script_environment() -> None:
    """What `python flows/<flow>.py` sets before Prefect loads its settings: the run environment, and analytics
    off in the temporary server a local run starts when the user set DO_NOT_TRACK."""
    set_run_environment()
    if os.environ.get("DO_NOT_TRACK"):
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
