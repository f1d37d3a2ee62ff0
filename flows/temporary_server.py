"""The temporary Prefect server of a command-line run, started by the run itself so that it dies with the run.

Without PREFECT_API_URL, Prefect starts a temporary API server on first use (SubprocessASGIServer in
prefect/server/api/server.py: one `python -m uvicorn ... prefect.server.api.server:create_app` process, no uvicorn
workers) and stops it with atexit. A run killed with SIGKILL never gets there: the server, re-parented to init,
ran on for good (~230 MB each). Prefect has no hook into that Popen, so `python flows/curriculum.py` and
`python flows/compare.py` start the same server themselves, as a child that the kernel kills when the run dies
however it dies (PR_SET_PDEATHSIG), point the run at it with PREFECT_API_URL, and stop it at a normal exit.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import prefect
from prefect.context import refresh_global_settings_context
from prefect.settings import get_current_settings

from curriculum.training.distributed_worker import die_with_parent
from data.errors import UserError

STOP_TIMEOUT_S = 5.0  # then SIGKILL, as Prefect stops its own
START_ATTEMPTS = 3  # another process may take the free port before the server binds it
# Seconds the server gets to answer unless PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS says otherwise: Prefect's
# own 20 s is too short on a loaded 2-core machine (its migrations and imports took longer beside a training run).
STARTUP_TIMEOUT_S = 120.0
TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


class ServerStartError(UserError, RuntimeError):
    """The temporary Prefect server did not come up; the message says how to give it longer or use another."""


@dataclass
class TemporaryServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down cleanly), SIGKILL if it is still there after STOP_TIMEOUT_S."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def use_temporary_server() -> str | None:
    """Point this process's flow runs (and the processes it starts) at a temporary server that dies with it, unless
    the settings name a server (PREFECT_API_URL in the environment or the profile) or turn the temporary one off
    (PREFECT_SERVER_EPHEMERAL_ENABLED=false); returns its API URL, or None when none was started.

    Call it from the main thread: the kernel kills the server when the thread that started it ends."""
    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    timeout = (settings.server.ephemeral.startup_timeout_seconds if os.environ.get(TIMEOUT_VARIABLE)
               else STARTUP_TIMEOUT_S)
    server = start_temporary_server(timeout=timeout)
    # Prefect's log and event workers drain when the interpreter shuts its threads down, before atexit handlers run:
    # the run's last logs reach the server before it stops.
    atexit.register(server.stop)
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # Prefect read its settings at import, without this URL
    return server.api_url


def start_temporary_server(timeout: float) -> TemporaryServer:
    """The server Prefect would start (its own command and environment), on a free port of 127.0.0.1, ready once
    /api/health answers."""
    for attempt in range(1, START_ATTEMPTS + 1):
        server = TemporaryServer(_popen_server(port := free_port()), port)
        try:
            if _wait_for_health(server, timeout):
                return server
        except BaseException:
            server.stop()
            raise
        code = server.process.returncode
        if code is None:
            server.stop()
            raise ServerStartError(
                f"the temporary Prefect server on 127.0.0.1:{port} did not answer within {timeout:.0f}s (a loaded "
                f"machine?); give it longer ({TIMEOUT_VARIABLE}=300), or start one (`prefect server start`) and set "
                "PREFECT_API_URL=http://127.0.0.1:4200/api"
            )
        if attempt == START_ATTEMPTS:
            raise ServerStartError(
                f"the temporary Prefect server exited with status {code} before answering ({START_ATTEMPTS} tries, "
                "its errors are above); start one (`prefect server start`) and set "
                "PREFECT_API_URL=http://127.0.0.1:4200/api"
            )
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _popen_server(port: int) -> subprocess.Popen[bytes]:
    # As SubprocessASGIServer._run_uvicorn_command: no UI, no background services (an ephemeral app), this
    # process's settings. Its output is the terminal's, as Prefect's is (it logs errors only).
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    parent = os.getpid()

    def die_with_this_process() -> None:
        die_with_parent()
        if os.getppid() != parent:  # the run died before the line above: no signal will come
            os._exit(1)

    command = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
        "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "error",
        "--lifespan", "on",
    ]
    # A session of its own: Ctrl-C reaches the run, which then reports how it ended to a server still up.
    return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_this_process)


def _wait_for_health(server: TemporaryServer, timeout: float) -> bool:
    """True once the server answers; False if it exited first or `timeout` passed."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through the user's HTTP proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with opener.open(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return False

