"""Killing a process at an exact moment: it pauses at a named point (curriculum/training/faults.py), the test
waits for the file that says so, then SIGKILLs it. No timing decides where the kill lands."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from curriculum.training.faults import PAUSE_AT_ENV, PAUSED_FILE_ENV

# Only bounds a hang: reaching the point is what the wait is for, however loaded the machine.
PAUSE_TIMEOUT_S = 300.0


def pause_env(paused_file: Path, point: str, stage_index: int = 0, stage_iter: int = 0) -> dict[str, str]:
    """The environment that makes a process pause at `point:stage_index:stage_iter` and say so in `paused_file`."""
    return {PAUSE_AT_ENV: f"{point}:{stage_index}:{stage_iter}", PAUSED_FILE_ENV: str(paused_file)}


def wait_until_paused(process: subprocess.Popen, paused_file: Path, timeout: float = PAUSE_TIMEOUT_S,
                      log: Callable[[], str] = lambda: "") -> None:
    """Return once `process` (or a child of it) sits at its pause point; fail if it ended or never got there."""
    deadline = time.monotonic() + timeout
    while not paused_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before its pause point:\n"
                                 f"{log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the process did not reach its pause point within {timeout:.0f}s:\n{log()[-3000:]}")
        time.sleep(0.05)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process and everything in its group (started with start_new_session=True)."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
