"""Servers for the experiment-tracker tests: a real MLflow tracking server, and one that never answers.

- `mlflow_server` (fixture): `mlflow server` on 127.0.0.1, a free port, a SQLite store and an artifacts folder in
  a temporary folder, its job runner off (tracking needs none, and it starts a dozen worker processes); ready once
  /health answers; its whole process group stopped at the end (SIGTERM, then SIGKILL), nothing left running.
- `hanging_server` (fixture): a TCP port that accepts connections and never replies, as a hung server does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.prefect_server import free_port

START_TIMEOUT_S = 120.0  # mlflow server takes ~20 s to answer on a loaded 2-core machine


@dataclass
class MlflowServer:
    url: str  # http://127.0.0.1:<port>, the tracking URI
    folder: Path
    process: subprocess.Popen
    log_path: Path

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url)

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        """SIGTERM to the whole group (the CLI, uvicorn), SIGKILL to whatever is left of it after 20 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # uvicorn may outlive the CLI that started it
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_mlflow_server(folder: Path, timeout: float = START_TIMEOUT_S) -> MlflowServer:
    port = free_port()
    log_path = folder / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts")],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", folder, process, log_path)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server did not answer /health within {timeout:.0f}s:\n{server.log_tail()}")
            time.sleep(0.25)
    except BaseException:
        server.stop()
        raise


@pytest.fixture(scope="session")
def mlflow_server() -> Iterator[MlflowServer]:
    folder = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
    started = time.monotonic()
    server = start_mlflow_server(folder)
    print(f"\nmlflow server at {server.url} started in {time.monotonic() - started:.1f}s", flush=True)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """http://127.0.0.1:<port> of a listener that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # accept() wakes up to see `closing` (closing the socket would not wake it)
    accepted: list[socket.socket] = []
    closing = threading.Event()

    def accept() -> None:
        while not closing.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])  # held open, never read or answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        closing.set()
        listener.close()
        for connection in accepted:
            connection.close()
        thread.join(timeout=5)
