"""The temporary Prefect server of a command-line run (flows/temporary_server.py): started only when no server is
configured, used by the run, gone when the run ends, also when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

from flows.temporary_server import use_temporary_server
from tests.support.processes import still_running

ROOT = Path(__file__).resolve().parents[2]

# A process that starts the server as the command lines do, says where its runs report, then waits or exits.
STARTER = """
import sys, time
from prefect.settings import PREFECT_API_URL
from flows.temporary_server import use_temporary_server
url = use_temporary_server()
print(url, PREFECT_API_URL.value(), flush=True)
time.sleep(600) if sys.argv[1] == "wait" else sys.stdin.readline()  # "exit": once told to
"""


def test_a_configured_server_is_used_and_none_is_started():
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert use_temporary_server() is None
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_ENABLED: False}):
        assert use_temporary_server() is None


def start(mode: str) -> tuple[subprocess.Popen, str]:
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    process = subprocess.Popen([sys.executable, "-c", STARTER, mode], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url, used = process.stdout.readline().split()
    assert url == used and url.startswith("http://127.0.0.1:"), (url, used)  # the runs report to it
    return process, url


@pytest.mark.slow  # a Prefect server starts
def test_the_server_dies_with_a_process_killed_by_sigkill():
    process, url = start("wait")
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            assert response.status == 200
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) == 1  # uvicorn, no workers of its own
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not still_running(children, grace_s=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow  # a Prefect server starts
def test_the_server_is_stopped_at_a_normal_exit():
    process, _ = start("exit")
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) == 1
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    assert not still_running(children, grace_s=0)  # stopped before the process ended


@pytest.mark.slow
def test_a_server_too_slow_to_answer_ends_the_command_with_a_message_naming_the_setting(tmp_path):
    """The CLI's own default wait is 120 s (Prefect's 20 s was too short on a loaded machine); a wait set in the
    environment wins, and a server that does not answer in it ends the command with a message, exit 1."""
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1", "PREFECT_HOME": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [sys.executable, "flows/curriculum.py", "--type", "simple", "--set", "model.preset=tiny"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "did not answer within 1s" in result.stderr
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300" in result.stderr
    assert "Traceback" not in result.stderr
