"""Per-stage data preparation tasks: fetch -> tokenize -> shard, each cached by a hash of its input content."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.transactions import CommitMode, transaction

from curriculum.prepare import (
    DocumentsRecord,
    ShardsRecord,
    TokenizeChunk,
    TokensChunkRecord,
    TokensRecord,
    fetch_stage,
    make_reader,
    merge_chunks,
    shard_identity,
    shard_stage,
    tokenize_stage,
)
from curriculum.prepare import (
    tokenize_chunk as tokenize_chunk_step,
)
from curriculum.sources import READER_CODE, kind_named
from curriculum.stages import CurriculumStage
from curriculum.web_batches import WebBatchRecord, fetch_batched_stage, fetch_web_batch
from data.config import DataConfig
from data.hf_reader import HubUnreachable
from data.web.batches import WebBatch
from data.web.config import ScrapeConfig
from tasks.caching import keyed_by, results_dir, run_cached_in
from tasks.ui_publish import prepare_progress

# The code each step runs (tasks/caching.py code_identity): this module, curriculum/prepare.py (all three steps'
# functions) and the data modules they call. Not what only reports (tasks.ui_publish), names an error (UserError)
# or is a test's pause point (curriculum.training.faults). A custom-scrape stage's fetch is never cached (its
# identity is None: only fetching tells whether the web changed), so the crawler (data.web, data.extract,
# curriculum.web_batches) is in no key.
FETCH_CODE = ("tasks.prepare", "curriculum.prepare", "curriculum.stages", "curriculum.sources", "data.documents",
              "data.atomic", *READER_CODE)
TOKENIZE_CODE = ("tasks.prepare", "curriculum.prepare", "data.tokenize", "data.shards", "data.atomic")
SHARD_CODE = ("tasks.prepare", "curriculum.prepare", "curriculum.stages", "data.split", "data.tokenize", "data.shards",
              "data.documents", "data.atomic", "data.checksums")

# `run` (the run name) only names the progress artifacts: it is not part of any cache key.


def _worth_retrying(error: BaseException) -> bool:
    """Only I/O is retried. A configuration error, or a hub that is unreachable with no mirror set (the
    message says how to fix it), would fail the same way again."""
    return isinstance(error, (ConnectionError, TimeoutError)) and not isinstance(error, HubUnreachable)


def _fetch_identity(parameters: dict[str, Any]) -> Any:
    stage: CurriculumStage = parameters["stage"]
    fingerprint = make_reader(stage, parameters["data"], parameters["scrape"]).fingerprint()
    if fingerprint is None:
        return None  # a crawl: fetch always runs; tokenize caches on the fetched content instead
    # The settings that change which documents the stage reads (its kind's `content`). Where the input lives (a
    # folder given as the dataset_key, files, paths) is not among them: the fingerprint hashes what it holds.
    content = set(kind_named(stage.data_key).content)
    return [stage.source_kind, stage.model_dump(mode="json", include=content), fingerprint]


@task(
    name="fetch",
    task_run_name="fetch-{stage.name}",
    cache_key_fn=keyed_by(_fetch_identity, *FETCH_CODE),
    persist_result=True,
    result_serializer="json",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=lambda task, run, state: _worth_retrying(state.result(raise_on_failure=False)),
)
def fetch(
    stage: CurriculumStage, data: DataConfig, scrape: ScrapeConfig, run: str = "run",
    batches: list[WebBatchRecord] | None = None,
) -> DocumentsRecord:
    """The stage's documents; for a custom-scrape stage whose inputs were fetched and extracted in `batches`
    (fetch_batch, one task each), their results replayed in input order: the same documents as reading it here."""
    progress = prepare_progress(run, stage.name, total=stage.n_items)
    if batches is not None:
        documents = fetch_batched_stage(stage, data, scrape, batches, on_progress=progress.update)
    else:
        documents = fetch_stage(stage, make_reader(stage, data, scrape), data, on_progress=progress.update)
    progress.update(documents.n_documents, total=documents.n_documents)  # n_items is a cap, not a promise
    progress.finish(f"fetched {documents.n_documents:,} documents")
    return documents


@task(
    name="fetch-batch",
    task_run_name="fetch-{stage.name}-{batch.index}/{batch.of}",
    cache_key_fn=keyed_by(lambda p: None),  # a crawl always runs: only fetching tells whether the web changed
    persist_result=True,
    result_serializer="json",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=lambda task, run, state: _worth_retrying(state.result(raise_on_failure=False)),
)
def fetch_batch(stage: CurriculumStage, data: DataConfig, scrape: ScrapeConfig, batch: WebBatch) -> WebBatchRecord:
    """One batch of a custom-scrape stage's inputs, fetched and extracted (no dedup, no n_items: the stage's
    `fetch` does both as it replays the batches in input order)."""
    return fetch_web_batch(stage, data, scrape, batch)


@task(
    name="tokenize-chunk",
    task_run_name="tokenize-{documents.stage}-{chunk.index}/{chunk.of}",
    cache_key_fn=keyed_by(
        lambda p: [p["documents"].sha256, p["data"].tokenizer, p["chunk"].first, p["chunk"].stop], *TOKENIZE_CODE
    ),
    persist_result=True,
    result_serializer="json",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=lambda task, run, state: _worth_retrying(state.result(raise_on_failure=False)),
)
def tokenize_chunk(documents: DocumentsRecord, data: DataConfig, chunk: TokenizeChunk) -> TokensChunkRecord:
    return tokenize_chunk_step(documents, data, chunk)


@task(
    name="tokenize",
    task_run_name="tokenize-{documents.stage}",
    cache_key_fn=keyed_by(lambda p: [p["documents"].sha256, p["data"].tokenizer], *TOKENIZE_CODE),
    persist_result=True,
    result_serializer="json",
)
def tokenize(
    documents: DocumentsRecord, data: DataConfig, run: str = "run", chunks: list[TokensChunkRecord] | None = None
) -> TokensRecord:
    """The stage's tokens: its `chunks` merged in order, as the flow gives them once it has run each as a task of
    its own on the run's task runner (tokenize_chunk); without `chunks`, the chunks run here, each a task run of
    its own (tokenize-<stage>-<i>/<n>, cached by its row groups, retried on I/O errors). The cache key is the
    documents' checksum and the tokenizer, whoever ran the chunks: a cached stage record means no chunk runs."""
    progress = prepare_progress(run, documents.stage, total=documents.n_documents)
    if chunks is not None:
        tokens = merge_chunks(documents, data, chunks)
        progress.update(tokens.n_documents)
        progress.finish(f"tokenized {tokens.n_documents:,} documents in {len(chunks)} chunks, {tokens.n_tokens:,} "
                        "tokens")
        return tokens
    # The flow's records folder (trusted_records of the data folder): the chunks' records sit beside this task's.
    records = results_dir(data.resolved_data_dir)

    def run_chunk(chunk: TokenizeChunk, on_progress: Callable[[int], None]) -> TokensChunkRecord:
        # Progress moves a chunk at a time here (a task run's parameters cannot carry a callback).
        # A task called by a task writes its record only when the outer one commits (Prefect's default): here each
        # chunk's record is written as soon as it is done, so a run killed or failed before the merge keeps them all.
        with transaction(commit_mode=CommitMode.EAGER):
            return run_cached_in(tokenize_chunk, records, documents=documents, data=data, chunk=chunk)[0]

    tokens = tokenize_stage(documents, data, on_progress=progress.update, run_chunk=run_chunk)
    progress.update(tokens.n_documents)
    progress.finish(f"tokenized {tokens.n_documents:,} documents, {tokens.n_tokens:,} tokens")
    return tokens


@task(
    name="shard",
    task_run_name="shard-{stage.name}",
    cache_key_fn=keyed_by(lambda p: shard_identity(p["tokens"], p["stage"], p["data"]), *SHARD_CODE),
    persist_result=True,
    result_serializer="json",
)
def shard(tokens: TokensRecord, stage: CurriculumStage, data: DataConfig) -> ShardsRecord:
    return shard_stage(tokens, stage, data)
