"""Test environment: real data from ../shared, an isolated Prefect home, no telemetry."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import leftover_children, stop_prefect_temporary_server

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared")).resolve()

# Before anything imports Prefect: it creates its home folder on import.
_prefect_home = tempfile.mkdtemp(prefix="prefect-home-")
atexit.register(shutil.rmtree, _prefect_home, ignore_errors=True)
os.environ["PREFECT_HOME"] = _prefect_home
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Flows run without a server start a temporary one (CLI runs, in-process flows); its default 20 s to come up
# is not enough on a loaded 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("CURRICULUM_HUB_MIRROR", None)  # tests that want the mirror say so
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Fixtures every folder may use, registered once (a fixture imported into several modules is defined once per
# import). They start real servers, so each is created only when a test asks for it.
pytest_plugins = [
    "tests.support.prefect_server",  # prefect_server
    "tests.support.serving",  # served
    "tests.support.runs",  # prepared_run, trained_run (served ones)
    "tests.support.monitor_demo",  # monitored_run
    "tests.support.mlflow_server",  # mlflow_server, hanging_server
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the shared Prefect server (directly or through `served`, a run, ...) is slow, wherever
    it lives; modules that start processes of their own say so with `pytestmark`."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


# Seconds a process still ending at the end of the session (a server stopping) gets before it counts as left behind.
LEFTOVER_GRACE_S = 10.0


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """At the end of the session, no process the tests started is still running: any that is left is killed and
    named in an error. Autouse and session-scoped, it is set up before the session's other fixtures, so it tears
    down after them (the shared Prefect server, served runs, ... have stopped theirs)."""
    yield
    stop_prefect_temporary_server()
    left = leftover_children(LEFTOVER_GRACE_S)
    if left:
        pytest.fail(f"{len(left)} process(es) the tests started were still running at the end of the session "
                    "(now killed):\n" + "\n".join(left), pytrace=False)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED}; set CURRICULUM_SHARED to its path")
    return SHARED


@pytest.fixture(scope="session")
def hub_mirror(shared: Path) -> Path:
    return shared / "hub"


@pytest.fixture(scope="session")
def books(shared: Path) -> Path:
    return shared / "corpora" / "books"
