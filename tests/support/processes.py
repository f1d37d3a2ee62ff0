"""Which processes are still there: the ones a killed run started, the ones a test session leaves behind."""

from __future__ import annotations

import contextlib
import sys

import psutil

# Python's own helpers of multiprocessing (Dask's local workers start them): they live as long as the process that
# started them and end when it does (they read a pipe from it), so at the end of a session they are still there.
PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def running(process: psutil.Process) -> bool:
    """Alive, and not merely a zombie waiting to be reaped."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def still_running(processes: list[psutil.Process], grace_s: float) -> list[psutil.Process]:
    """Those of `processes` that have not ended within `grace_s` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    return [p for p in alive if running(p)]


def describe(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{process.pid}: {' '.join(process.cmdline())[:200]}"
    return f"{process.pid}: (ended)"


def leftover_children(grace_s: float) -> list[str]:
    """This process's descendants still running after `grace_s` seconds (those in teardown get that long),
    killed, each described; Python's multiprocessing helpers excepted."""
    children = [c for c in psutil.Process().children(recursive=True)
                if not any(helper in describe(c) for helper in PYTHON_HELPERS)]
    left = still_running(children, grace_s)
    described = [describe(p) for p in left]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return described


def stop_prefect_temporary_server() -> None:
    """Stop the temporary server Prefect starts for in-process flows of this process (tests that run a flow without
    PREFECT_API_URL), which Prefect itself would stop only at exit."""
    module = sys.modules.get("prefect.server.api.server")
    if module is None:
        return
    # What Prefect still has to send goes first: its log and event workers would otherwise retry the closed port at
    # exit (a minute, then "Error logging to API").
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()
    EventsWorker.drain_all()
    module.SubprocessASGIServer().stop()
