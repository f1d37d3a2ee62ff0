"""A stage's tokenize chunks spread over the task runner's workers: submitted by the flow once the stage's documents
are fetched, each a task of its own on a real two-process Dask cluster (127.0.0.1), merged in order into the bytes
one pass over the whole documents file writes."""

from __future__ import annotations

import hashlib

import distributed
import pyarrow.parquet as pq
import pytest
from prefect import flow

from curriculum.prepare import ChunkFailed, DocumentsRecord
from curriculum.prepare_config import PrepareConfig
from data.config import DataConfig
from data.documents import Document, write_documents
from data.tokenize import tokenize_documents
from flows.stage_prep import tokenize_on_runner
from tasks.caching import trusted_records
from tasks.runners import prepare_task_runner
from tests.support.documents import documents_file

pytestmark = pytest.mark.slow  # an in-process flow (Prefect's temporary server) and a Dask cluster


@pytest.fixture(scope="module")
def documents(tmp_path_factory, hub_mirror) -> DocumentsRecord:
    """The mirror's first file of TinyStories (5,314 stories) in eight row groups: eight chunks of one each."""
    [parquet] = sorted((hub_mirror / "roneneldan" / "TinyStories" / "data").glob("train-*.parquet"))[:1]
    texts = pq.read_table(parquet, columns=["text"]).column("text").to_pylist()
    path = tmp_path_factory.mktemp("data") / "work" / "warmup" / "documents.parquet"
    path.parent.mkdir(parents=True)
    stories = (Document(id=str(i), text=t) for i, t in enumerate(texts))
    write_documents(stories, path, rows_per_group=-(-len(texts) // 8))
    return DocumentsRecord(stage="warmup", path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                           n_documents=len(texts), n_chars=sum(map(len, texts)), skipped={}, notes=[])


@flow(name="tokenize-on-dask")
def tokenize_on_dask(documents: DocumentsRecord, data: DataConfig) -> tuple[dict, set[str], int]:
    records = trusted_records(data.resolved_data_dir)
    with prepare_task_runner(PrepareConfig(task_runner="dask", workers=2)) as runner:
        with distributed.get_task_stream(client=runner.client) as stream:
            tokenized = tokenize_on_runner(runner, records, documents, data, run="spread")
    return tokenized.record.model_dump(mode="json"), {task["worker"] for task in stream.data}, len(stream.data)


def test_a_stages_chunks_run_on_every_dask_worker_and_merge_into_one_passes_bytes(documents, tmp_path):
    data = DataConfig(data_dir=documents.path.parents[2], chunk_row_groups=1, threads=1)
    assert pq.ParquetFile(documents.path).num_row_groups == 8
    record, workers, n_tasks = tokenize_on_dask(documents, data)
    assert n_tasks == 8 + 1  # every chunk, then the merge
    assert len(workers) == 2, workers  # the chunks were tasks of the cluster, not nested runs on one worker

    whole = tokenize_documents(documents.path, tmp_path / "whole.bin", tmp_path / "whole.index.npz", threads=1,
                               meta={"stage": "warmup", "documents_sha256": documents.sha256})
    assert record["sha256"] == whole.sha256 and record["n_tokens"] == whole.n_tokens
    assert open(record["path"], "rb").read() == (tmp_path / "whole.bin").read_bytes()
    assert not list(documents.path.parent.glob("tokens-*-rg*"))  # the chunks' files are gone once merged

    # Run again: the stage's record is whole, so it comes from the cache and no chunk runs on the cluster.
    again, _, n_tasks = tokenize_on_dask(documents, data)
    assert again == record and n_tasks == 1


@flow(name="tokenize-on-threads")
def tokenize_on_threads(documents: DocumentsRecord, data: DataConfig) -> dict:
    records = trusted_records(data.resolved_data_dir)
    with prepare_task_runner(PrepareConfig(task_runner="threads", workers=2)) as runner:
        return tokenize_on_runner(runner, records, documents, data, run="failing").record.model_dump(mode="json")


def test_a_failing_chunk_fails_the_stage_by_name_and_the_finished_chunks_are_kept(tmp_path):
    data = DataConfig(data_dir=tmp_path / "data", chunk_row_groups=1)
    work = tmp_path / "data" / "work" / "web"
    bad = documents_file(work / "bad.parquet", [["one", "two"], ["three", None], ["five"]])
    with pytest.raises(ChunkFailed, match=r"^tokenize-web-2/3 failed: TypeError"):
        tokenize_on_threads(bad, data)
    assert sorted(p.name.split("-rg")[1] for p in work.glob("tokens-*-rg*.bin")) == ["0-1.bin", "2-3.bin"]
    inodes = {p.name: p.stat().st_ino for p in work.glob("tokens-*-rg*")}  # a chunk run again would replace them
    with pytest.raises(ChunkFailed, match=r"tokenize-web-2/3"):
        tokenize_on_threads(bad, data)
    assert {p.name: p.stat().st_ino for p in work.glob("tokens-*-rg*")} == inodes
