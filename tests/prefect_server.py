"""A real Prefect server for tests, the served deployments, and one served prepare-only run.

- `prefect_server`: `prefect server start` on 127.0.0.1, a free port, its own PREFECT_HOME and SQLite file,
  analytics off; ready once /api/health answers; stopped with SIGINT at the end (also after failures).
- `served`: `python deployments/serve.py` against that server (hub mirror set), once its two deployments exist.
- `prepared_run`: `prefect deployment run curriculum/simple` of a tiny prepare-only YAML, waited for.

Import the fixtures into a test module (`from prefect_server import prefect_server, served`). Each lives in
this module once per session, so test modules that each import them still share one server: the first
session teardown stops it and later ones find it stopped.
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
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
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


_server: PrefectServer | None = None


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """One real Prefect server per test session (see the module docstring)."""
    global _server
    if _server is None or _server.process.poll() is not None:
        home = Path(tempfile.mkdtemp(prefix="prefect-server-"))
        _server = start_prefect_server(home)
        print(f"\nprefect server at {_server.url} started in {_server.start_seconds:.1f}s", flush=True)
    yield _server
    _server.stop()
    shutil.rmtree(_server.home, ignore_errors=True)


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
                args: tuple[str, ...] = ()) -> Served:
    """Start deployments/serve.py from `cwd` (not the project root: the script must find its packages)."""
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


_served: Served | None = None


@pytest.fixture(scope="session")
def served(prefect_server: PrefectServer, hub_mirror: Path) -> Iterator[Served]:
    global _served
    if _served is None or _served.process.poll() is not None:
        cwd = Path(tempfile.mkdtemp(prefix="serve-cwd-"))
        started = time.monotonic()
        _served = start_serve(prefect_server, cwd, {"CURRICULUM_HUB_MIRROR": str(hub_mirror)})
        print(f"deployments/serve.py serving after {time.monotonic() - started:.1f}s", flush=True)
    yield _served
    _served.stop()


TINY_CONFIG = """\
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 64
    n_epochs: 1
    n_items: 300
data:
  data_dir: {data_dir}
"""


@dataclass
class PreparedRun:
    flow_run: Any  # prefect.client.schemas.objects.FlowRun, in its terminal state
    config_path: Path
    data_dir: Path
    seconds: float  # from `prefect deployment run` to the terminal state


_prepared: PreparedRun | None = None


@pytest.fixture(scope="session")
def prepared_run(served: Served) -> PreparedRun:
    """curriculum/simple with prepare_only and a one-stage, 300-story YAML, run to its end once per session."""
    global _prepared
    if _prepared is None:
        folder = Path(tempfile.mkdtemp(prefix="prepared-run-"))
        config_path = folder / "tiny.yaml"
        config_path.write_text(TINY_CONFIG.format(data_dir=folder / "data"))
        started = time.monotonic()
        flow_run_id, result = trigger(served.server, "curriculum/simple", prepare_only=True,
                                      config_path=str(config_path))
        assert result.returncode == 0 and flow_run_id, result.stdout + result.stderr
        run = wait_for_run(served.server, flow_run_id, log=served.log_path)
        _prepared = PreparedRun(run, config_path, folder / "data", time.monotonic() - started)
        print(f"served prepare-only run {run.name} {run.state_name} in {_prepared.seconds:.1f}s", flush=True)
    return _prepared


# A three-stage curriculum small enough to train in seconds on a CPU: the training runs of the served flow.
TRAIN_CONFIG = """\
stages:
  - name: warmup
    dataset_key: roneneldan/TinyStories
    block_size: 32
    n_epochs: 1
    n_items: 200
  - name: books
    dataset_key: local-files
    files: [{book}]
    block_size: 64
    n_epochs: 1
  - name: web
    dataset_key: custom-scrape
    paths: [{web}]
    block_size: 64
    n_epochs: 1
data:
  data_dir: {data_dir}
model:
  preset: tiny
  n_embd: 32
train:
  batch_size: 2
  warmup_iters: 2
  eval_interval: 4
  eval_iters: 2
  checkpoint_interval: 2
  dtype: float32
"""
# Passed as the `overrides` parameter, as a user would in the UI's form.
TRAIN_OVERRIDES = {"train.max_iters": 12}


@dataclass
class TrainedRun:
    flow_run: Any
    config_path: Path
    data_dir: Path
    out_dir: Path
    seconds: float


# Saved pages for the web stage (read through the same extraction as fetched ones): real articles, plus one
# PDF with a password, which the crawl report must list as skipped.
WEB_PAGES = ("html/trafilatura/en.wikipedia.org.tsne.html", "html/trafilatura/blog.python.org.html",
             "html/readability/ars-1.html", "html/readability/bbc-1.html", "pdf/pypdf-encrypted-file.pdf")


def write_train_config(folder: Path) -> Path:
    corpora = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared")) / "corpora"
    config_path = folder / "tiny.yaml"
    config_path.write_text(TRAIN_CONFIG.format(
        book=corpora / "books" / "paine_common-sense_pg147.txt", data_dir=folder / "data",
        web=", ".join(str(corpora / "web" / page) for page in WEB_PAGES),
    ))
    return config_path


_trained: TrainedRun | None = None


@pytest.fixture(scope="session")
def trained_run(served: Served) -> TrainedRun:
    """curriculum/simple with a three-stage YAML and overrides through parameters: prepared and trained once."""
    global _trained
    if _trained is None:
        folder = Path(tempfile.mkdtemp(prefix="trained-run-"))
        config_path = write_train_config(folder)
        out_dir = folder / "run"
        started = time.monotonic()
        flow_run_id, result = trigger(served.server, "curriculum/simple", config_path=str(config_path),
                                      overrides={**TRAIN_OVERRIDES, "train.out_dir": str(out_dir)})
        assert result.returncode == 0 and flow_run_id, result.stdout + result.stderr
        run = wait_for_run(served.server, flow_run_id, log=served.log_path, timeout=300)
        _trained = TrainedRun(run, config_path, folder / "data", out_dir, time.monotonic() - started)
        print(f"served training run {run.name} {run.state_name} in {_trained.seconds:.1f}s", flush=True)
    return _trained


# --- A run that publishes every tasks/monitor artifact, for the API and UI tests ---------------------------


def eval_rows(stages: dict[str, int], evals_per_stage: int = 4) -> list[dict[str, Any]]:
    """metrics.jsonl rows as the trainer writes them: evaluations, then a stage-end row with forgetting."""
    rows, iter_num = [], 0
    for index, (stage, iters) in enumerate(stages.items()):
        for k in range(1, evals_per_stage + 1):
            stage_iter = iters * k // evals_per_stage
            end = k == evals_per_stage
            loss = 6.0 / (1 + (iter_num + stage_iter) / 50) + 0.4 * index
            row = {"stage": stage, "stage_index": index, "iter_num": iter_num + stage_iter, "stage_iter": stage_iter,
                   "train_loss": round(loss - 0.05, 4), "val_loss": round(loss, 4), "lr": 6e-4 * (1 - k / 10),
                   "tokens_per_s": 25_000.0 + k, "time": "2026-01-01T00:00:00"}
            if end:
                row["stage_end"] = True
                row["forgetting"] = {earlier: round(loss + 0.3 * (index - i), 4)
                                     for i, earlier in enumerate(list(stages)[:index])}
            rows.append(row)
        iter_num += iters
    return rows


@dataclass
class MonitoredRun:
    flow_run_id: str
    name: str
    run_dir: Path
    rows: list[dict[str, Any]]


_monitored: MonitoredRun | None = None
MONITOR_STAGES = {"warmup": 40, "books": 60}


def run_monitor_demo(server: PrefectServer, run_dir: Path) -> MonitoredRun:
    from prefect import flow, task
    from prefect.context import get_run_context
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from curriculum.plots import LOSS_CURVE_FILE, save_loss_curve
    from curriculum.prepare import DocumentsRecord, ShardsRecord
    from curriculum.presets import simple
    from data.web.report import CrawlReport, CrawlRow
    from tasks import ui_publish as monitor

    rows = eval_rows(MONITOR_STAGES)
    crawl = run_dir / "crawl_report.json"
    CrawlReport([CrawlRow(item="https://example.org/a", origin="url", status="ok", http_status=200, kind="html",
                          bytes=5000, chars=3000, attempts=1),
                 CrawlRow(item="https://example.org/b", origin="url", status="skipped", reason="robots-disallowed",
                          attempts=1)]).write(crawl)

    @task(task_run_name="train-{stage}")
    def train(stage: str, earlier: list[dict[str, Any]]) -> None:
        # The trainer's hook calls for one stage, with stand-ins for StageStart, StepInfo and StageResult.
        ui = monitor.TrainMonitor("demo", list(MONITOR_STAGES), earlier)
        index, iters = list(MONITOR_STAGES).index(stage), MONITOR_STAGES[stage]
        ui.on_stage_start(SimpleNamespace(plan=SimpleNamespace(stage=stage, stage_index=index, total_iters=iters),
                                          start_iter=0))
        stage_rows = {row["stage_iter"]: row for row in rows if row["stage"] == stage}
        for it in range(1, iters + 1):
            ui.on_step(SimpleNamespace(stage=stage, stage_iter=it, total_iters=iters))
            if it in stage_rows:
                ui.on_eval(stage_rows[it])
        ui.on_stage_end(SimpleNamespace(stage=stage, val_loss=stage_rows[iters]["val_loss"]))

    @flow(name="curriculum-monitor-demo", flow_run_name="monitor-demo")
    def demo() -> str:
        summary = []
        for stage in MONITOR_STAGES:
            documents = DocumentsRecord(stage=stage, path=run_dir / f"{stage}.jsonl", sha256="0" * 64, n_documents=300,
                                        n_chars=10**6, skipped={"too-short": 3}, notes=[])
            shards = ShardsRecord(stage=stage, shard_name=f"{stage}_pretrain", block_size=64, tokenizer="r50k_base",
                                  vocab_size=50257, train_path=run_dir / "t.bin", val_path=run_dir / "v.bin",
                                  train_sha256="0" * 64, val_sha256="0" * 64, train_tokens=55_704, val_tokens=2_858,
                                  train_documents=286, val_documents=14)
            summary.append(monitor.data_summary_row(documents, shards, {"fetch": False, "tokenize": True}))
        monitor.publish_data_summary("demo", summary)
        monitor.publish_crawl_report("demo", "books", crawl)
        for index, stage in enumerate(MONITOR_STAGES):
            train(stage, [row for row in rows if row["stage_index"] < index])  # metrics.jsonl so far
        png = save_loss_curve(rows, run_dir / LOSS_CURVE_FILE)
        monitor.publish_loss_curve("demo", png)
        monitor.publish_run_summary("demo", monitor.run_summary_markdown(
            simple(), code_version="0123abc", stages=summary, final_dir=run_dir / "final", loss_curve=png))
        return str(get_run_context().flow_run.id)

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        flow_run_id = demo()
        APILogWorker.drain_all(timeout=5)  # the run's logs, while the server is up
    return MonitoredRun(flow_run_id, "monitor-demo", run_dir, rows)


@pytest.fixture(scope="session")
def monitored_run(prefect_server: PrefectServer) -> MonitoredRun:
    """An in-process flow run that publishes every tasks/monitor artifact to the shared server, once."""
    global _monitored
    if _monitored is None:
        _monitored = run_monitor_demo(prefect_server, Path(tempfile.mkdtemp(prefix="monitor-demo-")))
    return _monitored
