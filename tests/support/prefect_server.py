"""A real Prefect server for tests, and the client calls the tests make to it.

- `prefect_server` (fixture): `prefect server start` on 127.0.0.1, a free port, its own PREFECT_HOME and SQLite
  file, analytics off; ready once /api/health answers; stopped with SIGINT at the end (also after failures).
  One per test session; tests that must disturb a server start their own with `start_prefect_server`.
- `api_client`, `prefect_cli`, `trigger`, `wait_for_run`: talk to a server as a user or the UI would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 180.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def stop_process(process: subprocess.Popen) -> None:
    """SIGINT, as Ctrl-C sends (uvicorn and the runner shut down cleanly); its whole group killed if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass
class PrefectServer:
    url: str  # http://127.0.0.1:<port>
    home: Path
    process: subprocess.Popen
    log_path: Path
    start_seconds: float
    _log_handle: object = field(repr=False, default=None)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that talks to this server (the CLI, serve.py, a worker)."""
        return {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home / "client"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        stop_process(self.process)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prefect_server(home: Path, timeout: float = START_TIMEOUT_S) -> PrefectServer:
    """Start `prefect server start` on 127.0.0.1 and wait until /api/health answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A fresh SQLite database under this home, never the user's.
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = home / "server.log"
    log_handle = open(log_path, "wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-scheduler", "--analytics-off"],
        env=env, stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True,
    )
    server = PrefectServer(url=f"http://127.0.0.1:{port}", home=home, process=process, log_path=log_path,
                           start_seconds=0.0, _log_handle=log_handle)
    try:
        wait_for_health(server, timeout)
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.monotonic() - started
    return server


def wait_for_health(server: PrefectServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise TimeoutError(f"prefect server did not answer /api/health within {timeout:.0f}s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """One real Prefect server per test session (see the module docstring)."""
    server = start_prefect_server(Path(tempfile.mkdtemp(prefix="prefect-server-")))
    print(f"\nprefect server at {server.url} started in {server.start_seconds:.1f}s", flush=True)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)


@pytest.fixture()
def own_server() -> Iterator[PrefectServer]:
    """A Prefect server of the test's own, for a test that kills, re-points or crowds the shared one's serving."""
    server = start_prefect_server(Path(tempfile.mkdtemp(prefix="prefect-own-server-")))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)


def wait_for(condition, what: str, timeout: float = 120, interval: float = 0.05) -> None:
    """Return once `condition()` is true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def api_client(server: PrefectServer):
    """A sync Prefect client of `server` (this process's settings point nowhere else)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        with get_client(sync_client=True) as client:
            yield client


def prefect_cli(server: PrefectServer, *args: str, cwd: Path | None = None, env: dict | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args], capture_output=True, text=True,
        env=env or server.env(), cwd=cwd or ROOT, timeout=timeout,
    )


def trigger(server: PrefectServer, deployment: str, **parameters: Any) -> tuple[str, subprocess.CompletedProcess]:
    """`prefect deployment run <deployment> --param k=v ...` (JSON values); returns (flow run id, result)."""
    args = []
    for name, value in parameters.items():
        args += ["--param", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]
    result = prefect_cli(server, "deployment", "run", deployment, *args)
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    return (match.group(1) if match else ""), result


def wait_for_run(server: PrefectServer, flow_run_id: str, timeout: float = RUN_TIMEOUT_S, log: Path | None = None):
    """The flow run once it reaches a terminal state; a timeout says where it got stuck."""
    deadline = time.monotonic() + timeout
    with api_client(server) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.type.value in TERMINAL:
                return run
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-4000:] if log and log.is_file() else ""
                raise TimeoutError(f"flow run {flow_run_id} still {run.state_name} after {timeout:.0f}s\n{tail}")
            time.sleep(0.5)
