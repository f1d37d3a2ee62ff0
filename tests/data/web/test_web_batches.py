"""A web stage read in batches (data/web/batches.py, as the Dask runner's fetch-<stage>-<i>/<n> tasks do) and replayed
in input order gives the one reader's documents file byte for byte, its skips and its crawl report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from curriculum.prepare import DocumentsRecord, fetch_stage
from curriculum.stages import CurriculumStage
from data.config import DataConfig
from data.web.batches import BatchReplay, plan_batches, read_batch
from data.web.config import ScrapeConfig
from data.web.report import read_crawl_report
from data.web.source import WebReader
from tests.data.web.server import WebTestServer

Inputs = tuple[list[str], list[str]]


def test_a_plan_never_splits_a_host_and_covers_every_input_once():
    urls = [f"https://{host}.example/{i}" for i, host in enumerate("aabacbbdaae")]  # a:5, b:3, c:1, d:1, e:1
    plan = plan_batches(urls, n_files=7, batch_inputs=3)
    inputs = [index for batch in plan for index in batch.inputs]
    assert sorted(inputs) == list(range(len(urls) + 7))
    hosts = [{urls[i].split("/")[2] for i in batch.inputs if i < len(urls)} for batch in plan]
    for host in "abcde":
        assert sum(f"{host}.example" in batch for batch in hosts) == 1  # every URL of a host in one batch
    # Host a (5 URLs) is one batch, over the size; b fills one; c, d, e share one; files in runs of 3, 3, 1.
    assert [len(batch.inputs) for batch in plan] == [5, 3, 3, 3, 3, 1]
    assert [batch.inputs for batch in plan[-3:]] == [[11, 12, 13], [14, 15, 16], [17]]
    assert [(batch.index, batch.of) for batch in plan] == [(i, 6) for i in range(1, 7)]
    assert all(batch.inputs == sorted(batch.inputs) for batch in plan)
    assert plan_batches([], 0, 3) == []
    assert len(plan_batches(urls, 7, batch_inputs=100)) == 2  # URLs and files never share a batch


@pytest.fixture(scope="module")
def stage_inputs(web_server: WebTestServer, shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """URLs on two host names of the local server (a page, a copy of a saved page, a 404, a too-short page) and
    saved pages and PDFs (one encrypted), one of them a copy of another under a later name: a duplicate."""
    web_server.reset()
    server = web_server
    web = shared / "corpora" / "web"
    pages = sorted((web / "html" / "trafilatura").iterdir())[:6] + sorted((web / "pdf").glob("*.pdf"))[:2]
    copy = tmp_path_factory.mktemp("pages") / "zz-copy.html"
    shutil.copy(pages[1], copy)
    urls = [
        server.file_url("html/readability/bbc-1.html"),
        server.file_url(f"html/trafilatura/{pages[0].name}", host="localhost"),  # same text as a saved page after it
        server.url("/status?code=404"),
        server.file_url("html/readability/ars-1.html", host="localhost"),
        server.file_url("html/edge/readability-ol.html"),
        server.file_url("html/readability/bbc-1.html", host="localhost"),  # same text as the first URL
    ]
    return urls, [*map(str, pages), str(copy)]


@pytest.fixture(scope="module")
def one_reader(stage_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> tuple[DocumentsRecord, list]:
    """The stage read by one WebReader, as the threads runner's fetch task reads it."""
    folder = tmp_path_factory.mktemp("one")
    stage, data, reader = stage_data(folder, *stage_inputs)
    return fetch_stage(stage, reader, data), report_rows(folder / "crawl.json")


def stage_data(folder: Path, urls: list[str], paths: list[str], n_items: int | None = None) -> tuple:
    stage = CurriculumStage(name="web", dataset_key="custom-scrape", block_size=64, n_epochs=1, urls=urls,
                            paths=paths, n_items=n_items)
    data = DataConfig(data_dir=folder / "data")
    config = ScrapeConfig(per_host_delay=0.0, allow_private=["127.0.0.1", "localhost"], extract_workers=2)
    reader = WebReader(urls=urls, paths=paths, config=config, cache_dir=folder / "cache",
                       report_path=folder / "crawl.json")
    return stage, data, reader


def report_rows(path: Path) -> list[tuple]:
    return [(r.item, r.origin, r.status, r.reason, r.detail, r.chars, r.kind, r.http_status)
            for r in read_crawl_report(path).rows]


def replayed(stage_inputs: Inputs, folder: Path, batch_inputs: int, n_items: int | None = None) -> DocumentsRecord:
    stage, data, reader = stage_data(folder, *stage_inputs, n_items=n_items)
    plan = plan_batches(reader.url_list.urls, len(reader.files), batch_inputs)
    # Run in reverse, as workers may finish them: the replay restores the input order.
    files = [read_batch(reader, batch, folder / "batches")[0] for batch in reversed(plan)]
    return fetch_stage(stage, BatchReplay(reader, files), data)


def check_same(one_reader: tuple[DocumentsRecord, list], batched: DocumentsRecord, folder: Path) -> None:
    one, rows = one_reader
    assert batched.sha256 == one.sha256 and batched.path.read_bytes() == one.path.read_bytes()
    assert batched.skipped == one.skipped
    assert {"duplicate", "http-404"} <= set(one.skipped) and one.n_documents >= 6
    assert report_rows(folder / "crawl.json") == rows


def test_batches_replayed_in_input_order_write_the_one_readers_documents(stage_inputs, one_reader, tmp_path):
    check_same(one_reader, replayed(stage_inputs, tmp_path, batch_inputs=4), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("batch_inputs", [1, 256])
def test_any_batch_size_gives_the_one_readers_documents(stage_inputs, one_reader, tmp_path, batch_inputs):
    check_same(one_reader, replayed(stage_inputs, tmp_path, batch_inputs), tmp_path)


@pytest.mark.slow
def test_a_replay_stopped_at_n_items_keeps_the_same_documents_and_reports_the_rest_not_read(stage_inputs, tmp_path):
    stage, data, reader = stage_data(tmp_path / "one", *stage_inputs, n_items=4)
    one = fetch_stage(stage, reader, data)
    batched = replayed(stage_inputs, tmp_path / "batched", batch_inputs=2, n_items=4)
    assert batched.sha256 == one.sha256 and batched.n_documents == 4
    rows = [row[:4] for row in report_rows(tmp_path / "batched" / "crawl.json")]
    assert rows == [row[:4] for row in report_rows(tmp_path / "one" / "crawl.json")]
    assert rows[-1][3] == "not-read"


def test_a_missing_batch_is_an_error_that_says_to_prepare_again(shared, tmp_path):
    pages = [str(p) for p in sorted((shared / "corpora" / "web" / "html" / "trafilatura").iterdir())[:3]]
    stage, data, reader = stage_data(tmp_path, [], pages)
    plan = plan_batches([], len(reader.files), 1)
    files = [read_batch(reader, batch, tmp_path / "batches")[0] for batch in plan[1:]]
    with pytest.raises(ValueError, match="hold input 1 where input 0 was due.*prepare the stage again"):
        fetch_stage(stage, BatchReplay(reader, files), data)
