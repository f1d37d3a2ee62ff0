"""Preparation on Prefect's task runners, as a user runs it (`--task-runner`, `--workers`): a real local Dask cluster
of worker processes on 127.0.0.1, the threads runner, real data from ../shared, task runs read back from the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort

from data.shards import read_header
from data.tokenize import tokenize_documents
from tests.data.web.server import WebTestServer
from tests.support.configs import TRAIN_CONFIG, WEB_PAGES
from tests.support.pause import kill_group, pause_env, wait_until_paused
from tests.support.prefect_server import ROOT, api_client

# Each test runs flows/curriculum.py as a process, most with a Dask cluster.
pytestmark = pytest.mark.slow

SCRIPT = ROOT / "flows" / "curriculum.py"
STAGES = ("warmup", "books", "web")
TIMEOUT_S = 420


def write_config(folder: Path, shared: Path, web: list[str] | None = None) -> Path:
    """The served-run tests' three tiny stages (TinyStories, a book, saved web pages); `web` replaces the pages."""
    corpora = shared / "corpora"
    config = TRAIN_CONFIG.format(
        book=corpora / "books" / "paine_common-sense_pg147.txt", data_dir=folder / "data",
        web=", ".join(str(corpora / "web" / page) for page in WEB_PAGES),
    )
    if web is not None:
        config = config.replace("    paths: [", f"    urls: {json.dumps(web)}\n    paths: [")
        config += "scrape:\n  allow_private: true\n  per_host_delay: 0\n"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(config)
    return folder / "tiny.yaml"


def cli(config: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), "--config", str(config), "--out-dir", str(config.parent / "run"), *args]
    log = open(config.parent / "run.log", "ab")  # noqa: SIM115 -- the process writes it; closed by the caller's wait
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                            env={**os.environ, "CURRICULUM_HUB_MIRROR": str(SHARED_HUB), **(env or {})})


SHARED_HUB = Path(os.environ.get("CURRICULUM_SHARED", ROOT.parent / "shared")) / "hub"


def finish(process: subprocess.Popen, config: Path) -> str:
    try:
        process.wait(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    output = (config.parent / "run.log").read_text(errors="replace")
    assert process.returncode == 0, output[-5000:]
    return output


def prepared(folder: Path) -> dict[str, object]:
    """What a preparation leaves that must not depend on the runner: shard bytes, the records of the shards
    (paths relative to the data folder) and the names of the cached records (their cache keys)."""
    data = folder / "data"
    shards = {p.name: p.read_bytes() for p in sorted(data.glob("*.bin"))}
    reports = {}
    for path in sorted((data / "reports").glob("shards_*.json")):
        record = json.loads(path.read_text())
        reports[path.name] = {k: v.replace(str(data), "<data>") if isinstance(v, str) else v for k, v in record.items()}
    keys = sorted(p.name for p in (data / ".prefect-results").iterdir())
    return {"shards": shards, "records": reports, "cache keys": keys}


def cache_lines(output: str) -> list[str]:
    return [line.split("Cache:")[1].strip() for line in output.splitlines() if "Cache:" in line]


def newest_flow_run(server) -> str:
    with api_client(server) as client:
        [run] = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    return str(run.id)


def task_runs_of(server, flow_run_id: str) -> dict:
    with api_client(server) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in runs}


# 5,000 stories make three row groups in the documents file, each tokenized as a chunk of its own.
CHUNKED = ("--set", "stages.warmup.n_items=5000", "--set", "data.chunk_row_groups=1")
CHUNKS = {"warmup": 3, "books": 1, "web": 1}


def test_a_two_worker_dask_cluster_prepares_the_same_bytes_as_threads(tmp_path, shared, prefect_server):
    env = prefect_server.env()
    threads = write_config(tmp_path / "threads", shared)
    finish(cli(threads, "--prepare-only", "--task-runner", "threads", *CHUNKED, env=env), threads)
    threads_run = newest_flow_run(prefect_server)
    dask = write_config(tmp_path / "dask", shared)
    output = finish(cli(dask, "--prepare-only", "--task-runner", "dask", "--workers", "2", *CHUNKED, env=env), dask)
    assert "distributed.scheduler" in output  # a Dask cluster was started, not the threads runner
    assert prepared(tmp_path / "dask") == prepared(tmp_path / "threads")
    assert len(prepared(tmp_path / "dask")["shards"]) == 2 * len(STAGES)

    # The Dask workers report to the run's Prefect server: every step, and every chunk of a stage's tokenization
    # (a task run called by the stage's tokenize task), is a named, completed task run there.
    for flow_run in (threads_run, newest_flow_run(prefect_server)):
        task_runs = task_runs_of(prefect_server, flow_run)
        for stage in STAGES:
            chunks = [f"tokenize-{stage}-{i}/{CHUNKS[stage]}" for i in range(1, CHUNKS[stage] + 1)]
            for name in (f"fetch-{stage}", f"tokenize-{stage}", f"shard-{stage}", *chunks):
                assert task_runs[name].state.is_completed(), sorted(task_runs)
        assert len([name for name in task_runs if name.startswith("tokenize-warmup-")]) == 3, sorted(task_runs)


def completed(server, names: list[str]) -> bool:
    task_runs = task_runs_of(server, newest_flow_run(server))
    return all(name in task_runs and task_runs[name].state.is_completed() for name in names)


def test_a_run_killed_before_merging_takes_every_chunk_from_the_cache(tmp_path, shared, prefect_server):
    config = write_config(tmp_path / "run", shared)
    paused = tmp_path / "paused"
    env = {**prefect_server.env(), **pause_env(paused, "tokenize-merge")}
    process = cli(config, "--prepare-only", "--task-runner", "threads", *CHUNKED, env=env)
    chunks = [f"tokenize-warmup-{i}/3" for i in (1, 2, 3)]
    try:
        wait_until_paused(process, paused, log=lambda: (config.parent / "run.log").read_text(errors="replace"))
        # Every stage stops before its merge; the kill lands once the warmup stage's three chunks are recorded.
        deadline = time.monotonic() + TIMEOUT_S
        while not completed(prefect_server, chunks):
            assert time.monotonic() < deadline, "the warmup chunks did not complete"
            time.sleep(0.5)
    finally:
        kill_group(process)
    work = config.parent / "data" / "work" / "warmup"
    assert len(list(work.glob("tokens-*-rg*.bin"))) == 3 and not list(work.glob("tokens-*_base.bin"))

    output = finish(cli(config, "--prepare-only", "--task-runner", "threads", *CHUNKED, env=prefect_server.env()),
                    config)
    task_runs = task_runs_of(prefect_server, newest_flow_run(prefect_server))
    assert [task_runs[name].state.name for name in chunks] == ["Cached"] * 3, output[-3000:]
    assert task_runs["tokenize-warmup"].state.name == "Completed"  # the merge ran, from the cached chunks
    # The merged tokens are those of one pass over the whole documents file; the chunk files are gone.
    [documents] = work.glob("documents-*.parquet")
    [merged] = work.glob("tokens-*_base.bin")
    whole = tmp_path / "whole.bin"
    tokenize_documents(documents, whole, tmp_path / "whole.index.npz", threads=2,
                       meta={"stage": "warmup", "documents_sha256": read_header(merged)["documents_sha256"]})
    assert merged.read_bytes() == whole.read_bytes()
    assert not list(work.glob("tokens-*-rg*"))


def dask_workers(process: subprocess.Popen) -> list[psutil.Process]:
    """The Dask worker processes of a local cluster: children that multiprocessing spawned."""
    children = psutil.Process(process.pid).children(recursive=True)
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def test_a_killed_dask_worker_costs_only_its_tasks_and_a_rerun_is_all_cached(tmp_path, shared):
    config = write_config(tmp_path / "run", shared)
    paused = tmp_path / "paused"
    # Every stage's fetch stops at its start on a worker; one worker is then killed while it holds a fetch.
    process = cli(config, "--prepare-only", "--task-runner", "dask", "--workers", "2",
                  env=pause_env(paused, "fetch"))
    try:
        wait_until_paused(process, paused, log=lambda: (config.parent / "run.log").read_text(errors="replace"))
        workers = dask_workers(process)
        assert len(workers) == 2, [w.cmdline() for w in workers]
        workers[0].kill()
        # Let every fetch go on, also the ones the cluster starts again on the replacement worker.
        done = threading.Event()

        def release() -> None:
            while not done.is_set():
                paused.unlink(missing_ok=True)
                time.sleep(0.1)

        releaser = threading.Thread(target=release, daemon=True)
        releaser.start()
        output = finish(process, config)
    finally:
        done = locals().get("done") or threading.Event()
        done.set()
    assert "was killed by signal 9" in output and "Restarting worker" in output  # the cluster lost a worker
    assert (config.parent / "data" / "train_web_pretrain.bin").is_file()

    rerun = finish(cli(config, "--prepare-only", "--task-runner", "dask", "--workers", "2"), config)
    # A web stage's fetch always runs (only fetching tells whether the web changed); its documents are the same.
    assert cache_lines(rerun)[-3:] == [
        "fetch cached, tokenize cached, shard cached", "fetch cached, tokenize cached, shard cached",
        "fetch ran, tokenize cached, shard cached",
    ]


def test_the_first_stage_trains_while_a_slow_last_stage_is_still_preparing(tmp_path, shared, prefect_server):
    with WebTestServer(shared) as web:
        # The last stage's pages come slowly: its fetch, so its shards, end well after the first stage is ready.
        slow = [web.url(f"/sleep?s=10&path=/files/html/{page.removeprefix('html/')}") for page in WEB_PAGES[:2]]
        config = write_config(tmp_path / "run", shared, web=slow)
        output = finish(cli(config, "--set", "train.max_iters=6", "--task-runner", "threads",
                            env=prefect_server.env()), config)
    assert "Curriculum 'tiny' trained" in output
    task_runs = task_runs_of(prefect_server, newest_flow_run(prefect_server))
    first_train, last_shard = task_runs["train-warmup"], task_runs["shard-web"]
    assert first_train.state.is_completed() and last_shard.state.is_completed(), sorted(task_runs)
    assert first_train.start_time < last_shard.end_time, (first_train.start_time, last_shard.end_time)
    # Each stage still trains after the one before it.
    assert task_runs["train-books"].start_time >= task_runs["train-warmup"].end_time
    assert task_runs["train-web"].start_time >= task_runs["train-books"].end_time


def test_a_global_lr_schedule_waits_for_every_stage_and_says_why(tmp_path, shared):
    config = write_config(tmp_path / "run", shared)
    output = finish(cli(config, "--set", "train.max_iters=4", "--set", "train.lr_schedule=global"), config)
    assert "lr_schedule=global: training waits until every stage is prepared" in output
