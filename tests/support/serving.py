"""`python deployments/serve.py` against a test server: the `served` fixture and `start_serve` for tests that
need a serving process of their own (one they kill, or one on another server)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.prefect_server import ROOT, PrefectServer, stop_process

SHARED = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared")).resolve()


@dataclass
class Served:
    """`python deployments/serve.py` running against a test server."""

    server: PrefectServer
    process: subprocess.Popen
    log_path: Path
    cwd: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


def start_serve(server: PrefectServer, cwd: Path, env_extra: dict[str, str], timeout: float = 90,
                args: tuple[str, ...] = (), allow: tuple[Path, ...] | None = None) -> Served:
    """Start deployments/serve.py from `cwd` (not the project root: the script must find its packages).

    Served runs may use paths under `cwd` and `allow` (default: the temporary folder, where tests keep their
    configs and outputs, and ../shared, which they read); see curriculum/allowed_paths.py.
    """
    if allow is None:
        allow = (Path(tempfile.gettempdir()), SHARED)
    args = (*[arg for folder in allow for arg in ("--allow-path", str(folder))], *args)
    log_path = cwd / "serve.log"
    env = server.env(
        # Runs start within a second of being scheduled (the default poll is every 10 s).
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        PYTHONUNBUFFERED="1",
        **env_extra,
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "deployments" / "serve.py"), *args], env=env, cwd=cwd, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    served = Served(server, process, log_path, cwd)
    deadline = time.monotonic() + timeout
    while "being served" not in served.log():
        if process.poll() is not None or time.monotonic() > deadline:
            served.stop()
            raise RuntimeError(f"deployments/serve.py did not start serving:\n{served.log()[-4000:]}")
        time.sleep(0.25)
    return served


@pytest.fixture(scope="session")
def served(prefect_server: PrefectServer, hub_mirror: Path) -> Iterator[Served]:
    """Both deployments served against the session's server, with the hub mirror set, once per session."""
    cwd = Path(tempfile.mkdtemp(prefix="serve-cwd-"))
    started = time.monotonic()
    serving = start_serve(prefect_server, cwd, {"CURRICULUM_HUB_MIRROR": str(hub_mirror)})
    print(f"deployments/serve.py serving after {time.monotonic() - started:.1f}s", flush=True)
    try:
        yield serving
    finally:
        serving.stop()
