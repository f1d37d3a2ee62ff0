"""A web stage prepared on a local Dask cluster, as a user runs it: its inputs fetched and extracted in batches, a
task run each (fetch-<stage>-<i>/<n>) on the workers, then replayed into the documents the threads runner writes;
a batch that fails fails the stage by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from prefect import flow

from curriculum.prepare_config import PrepareConfig
from curriculum.stages import CurriculumStage
from curriculum.web_batches import WebBatchRecord
from data.config import DataConfig
from data.web.config import ScrapeConfig
from data.web.report import read_crawl_report
from flows.stage_prep import BatchFailed, fetch_batches
from tasks.caching import trusted_records
from tasks.runners import prepare_task_runner
from tests.data.web.server import WebTestServer
from tests.flows.test_prepare_runners import cli, finish, newest_flow_run, task_runs_of, write_config

pytestmark = pytest.mark.slow


def outputs(folder: Path) -> dict[str, object]:
    """What the web stage's preparation leaves that must not depend on the runner."""
    data = folder / "data"
    documents = {p.name: p.read_bytes() for p in sorted((data / "work" / "web").glob("*.parquet"))}
    shards = {p.name: p.read_bytes() for p in sorted(data.glob("*web*.bin"))}
    record = json.loads((data / "reports" / "shards_web.json").read_text())
    crawl = [(r.item.replace(str(folder), ""), r.status, r.reason, r.chars)
             for r in read_crawl_report(data / "reports" / "crawl_web.json").rows]
    return {"documents": documents, "shards": shards, "tokens": (record["train_tokens"], record["val_tokens"]),
            "crawl": crawl}


def test_a_web_stage_is_fetched_in_batches_on_the_workers_into_the_threads_runners_bytes(
    tmp_path, shared, prefect_server
):
    env = prefect_server.env()
    with WebTestServer(shared) as web:
        pages = ["readability/bbc-1.html", "readability/ars-1.html", "trafilatura/blog.python.org.html",
                 "gumbo/bbc.html"]
        # Two host names: 127.0.0.1's four URLs are one batch (a host is never split), localhost's two another.
        urls = [web.file_url(f"html/{page}") for page in pages] + [
            web.file_url("html/readability/ars-1.html", host="localhost"),  # a duplicate of a URL before it
            web.url("/status?code=404", host="localhost"),
        ]
        threads = write_config(tmp_path / "threads", shared, web=urls)
        finish(cli(threads, "--prepare-only", "--task-runner", "threads", env=env), threads)
        dask = write_config(tmp_path / "dask", shared, web=urls)
        finish(cli(dask, "--prepare-only", "--task-runner", "dask", "--workers", "2",
                   "--set", "scrape.batch_inputs=2", env=env), dask)

    batched, one = outputs(tmp_path / "dask"), outputs(tmp_path / "threads")
    assert batched["documents"] and batched["shards"]
    assert batched == one
    reasons = {reason for _, _, reason, _ in one["crawl"]}  # type: ignore[attr-defined]
    assert {"duplicate", "http-404"} <= reasons
    # The results files of the batches are gone once the stage's documents hold what they gave.
    assert not list((tmp_path / "dask" / "data" / "work" / "web" / "web-batches").iterdir())

    # 6 URLs on two hosts and 5 saved files, 2 inputs a batch: [127.0.0.1 x4], [localhost x2], files 2 + 2 + 1.
    task_runs = task_runs_of(prefect_server, newest_flow_run(prefect_server))
    names = [f"fetch-web-{i}/5" for i in range(1, 6)]
    for name in (*names, "fetch-web", "tokenize-web", "shard-web"):
        assert task_runs[name].state.is_completed(), sorted(task_runs)
    assert not [name for name in task_runs if name.startswith("fetch-web-") and name not in names]


@flow(name="web-batches")
def fetch_in_batches(stage: CurriculumStage, data: DataConfig, scrape: ScrapeConfig) -> list[WebBatchRecord]:
    records = trusted_records(data.resolved_data_dir)
    with prepare_task_runner(PrepareConfig(task_runner="threads", workers=2)) as runner:
        return fetch_batches(runner, records, {"stage": stage, "data": data, "scrape": scrape})


def test_a_failing_batch_fails_the_stage_by_name(shared, tmp_path):
    pages = [str(p) for p in sorted((shared / "corpora" / "web" / "html" / "trafilatura").iterdir())[:4]]
    stage = CurriculumStage(name="web", dataset_key="custom-scrape", block_size=64, n_epochs=1, paths=pages)
    data = DataConfig(data_dir=tmp_path / "data")
    scrape = ScrapeConfig(batch_inputs=2, extract_workers=1)
    [first, second] = fetch_in_batches(stage, data, scrape)
    assert (first.name, second.name, first.n_inputs) == ("fetch-web-1/2", "fetch-web-2/2", 2)
    assert first.is_intact() and second.is_intact() and first.path.parent.name == "web-batches"

    # Where the batches write their results is taken by a file: each batch fails, and the stage with the first.
    shutil.rmtree(first.path.parent)
    first.path.parent.write_text("not a folder")
    with pytest.raises(BatchFailed, match=r"^fetch-web-1/2 failed: FileExistsError"):
        fetch_in_batches(stage, data, scrape)
