"""One stage's data preparation on the run's task runner: fetch -> tokenize -> shard, each step cached by a hash of
its input content, the tokenize step's chunks spread over the runner's workers.

A stage's chunks are only known once its documents are fetched, so a thread of the flow follows each stage: it
waits for the fetch, then submits the chunks (tokenize-<stage>-<i>/<n>) to the runner side by side, then the merge
(the `tokenize` task, whose cache key is the stage's documents and tokenizer whatever the chunking), then the shard
step. Submitted from the flow rather than from the tokenize task, the chunks reach every Dask worker; from a task
they would be nested runs on the one worker running it. In the same way, on Dask a web stage's inputs are fetched
in batches (fetch-<stage>-<i>/<n>) on every worker before its `fetch` task replays them into its documents.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from prefect import get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from curriculum.config import RunConfig
from curriculum.prepare import (
    CHUNK_RETRY,
    ChunkFailed,
    DocumentsRecord,
    ShardsRecord,
    TokensChunkRecord,
    chunk_name,
    pin_hub_commit,
    tokenize_plan,
)
from curriculum.prepare_config import threads_per_task
from curriculum.sources import CUSTOM_SCRAPE
from curriculum.stages import CurriculumStage
from curriculum.summary import stage_data_summary, stage_header
from curriculum.web_batches import WebBatchRecord, web_batch_plan
from data.config import DataConfig
from data.errors import UserError
from data.web.batches import batch_name
from tasks.caching import Settled, settle_cached, stored, submit_cached
from tasks.prepare import fetch, fetch_batch, shard, tokenize, tokenize_chunk
from tasks.ui_publish import data_summary_row, prepare_progress, publish_crawl_report


class StageSteps(NamedTuple):
    """A stage's settled steps: each record, and whether it came from the cache."""

    fetched: Settled
    tokenized: Settled
    sharded: Settled


class StageChain(NamedTuple):
    stage: CurriculumStage
    steps: Future[StageSteps]  # the stage's thread


def submit_stage(
    threads: ThreadPoolExecutor, runner: TaskRunner, records: Path, stage: CurriculumStage, config: RunConfig
) -> StageChain:
    """Start a stage's preparation: its fetch is submitted at once, the rest by a thread of `threads` (in a copy of
    the flow's context, so its task runs belong to the flow run)."""
    fetch_parameters: dict[str, Any] = {
        "stage": pin_hub_commit(stage, config.data, config.scrape), "data": config.data, "scrape": config.scrape,
        "run": config.name,
    }
    # On Dask, a web stage's inputs are fetched in batches on every worker first (fetch_batches, in the thread).
    batched = config.prepare.task_runner != "threads" and stage.data_key == CUSTOM_SCRAPE
    documents = None if batched else submit_cached(fetch, records, runner, **fetch_parameters)
    steps = threads.submit(contextvars.copy_context().run, _after_fetch, runner, records, stage, config,
                           documents, fetch_parameters)
    return StageChain(stage, steps)


def _after_fetch(
    runner: TaskRunner, records: Path, stage: CurriculumStage, config: RunConfig,
    documents: PrefectFuture[DocumentsRecord] | None, fetch_parameters: dict[str, Any],
) -> StageSteps:
    if documents is None:
        # Like tokenize chunks, the batches of a local cluster share this machine's cores (0 on a scheduler's: each
        # batch extracts on every core of its worker's machine).
        batches = fetch_batches(runner, records, fetch_parameters, threads_per_task(0, config.prepare))
        fetch_parameters = {**fetch_parameters, "batches": batches}
        documents = submit_cached(fetch, records, runner, **fetch_parameters)
    fetched = settle_cached(documents, fetch, records, **fetch_parameters)  # a cached fetch whose files are gone runs
    threads = threads_per_task(config.data.threads, config.prepare)
    tokenized = tokenize_on_runner(runner, records, fetched.record, config.data, config.name, threads)
    shard_parameters = {"tokens": tokenized.record, "stage": stage, "data": config.data}
    sharded = settle_cached(submit_cached(shard, records, runner, **shard_parameters), shard, records,
                            **shard_parameters)
    return StageSteps(fetched, tokenized, sharded)


def fetch_batches(
    runner: TaskRunner, records: Path, fetch_parameters: dict[str, Any], extract_workers: int = 0
) -> list[WebBatchRecord]:
    """A custom-scrape stage's inputs fetched and extracted in batches (scrape.batch_inputs inputs, a host's URLs
    together), each a task of its own on `runner` (fetch-<stage>-<i>/<n>). A failed batch fails the stage by name
    (BatchFailed) once the others are done. `extract_workers`: what each batch extracts on when
    scrape.extract_workers is not set (0: the cores of the machine that runs it)."""
    stage, data, scrape = fetch_parameters["stage"], fetch_parameters["data"], fetch_parameters["scrape"]
    plan = web_batch_plan(stage, data, scrape)
    if extract_workers and scrape.extract_workers is None:
        scrape = scrape.model_copy(update={"extract_workers": extract_workers})
    futures = {submit_cached(fetch_batch, records, runner, stage=stage, data=data, scrape=scrape, batch=batch):
               batch.index for batch in plan}
    done: dict[int, WebBatchRecord] = {}
    failed: dict[int, BaseException] = {}
    for finished in as_completed(list(futures)):
        index = futures[finished]
        try:
            done[index] = finished.result()
        except Exception as error:
            failed[index] = error
    if failed:
        first = min(failed)
        cause = failed[first]
        raise BatchFailed(f"{batch_name(stage.name, first, len(plan))} failed: {type(cause).__name__}: {cause}; "
                          "fix that (the batch's log above shows where it failed) and run the same command again") \
            from cause
    return [done[batch.index] for batch in plan]


class BatchFailed(UserError, RuntimeError):
    """A batch of a web stage's inputs failed (after its task's retries); the message names it."""


def tokenize_on_runner(
    runner: TaskRunner, records: Path, documents: DocumentsRecord, data: DataConfig, run: str,
    threads: int | None = None,
) -> Settled:
    """The stage's tokens: from the cache when its record is there and its files whole (no chunk runs), else its
    chunks as tasks of their own on `runner`, then the merge. A failed chunk fails the stage by name
    (ChunkFailed), once the other chunks are done: they are recorded, and a re-run takes them from the cache.
    `threads`: what each chunk encodes on, instead of data.threads (no cache key holds it; 0: every core)."""
    parameters: dict[str, Any] = {"documents": documents, "data": data, "run": run}
    whole = stored(tokenize, records, **parameters)
    if whole.record is not None:
        hit = submit_cached(tokenize, records, runner, **parameters)  # a cache hit: shown in the UI, no work
        hit.wait()
        if hit.state.name == "Cached":
            return Settled(whole.record, cached=True, ran_again=False)  # its files were checked a moment ago
        return Settled(hit.result(), cached=False, ran_again=False)
    plan = tokenize_plan(documents, data)
    progress = prepare_progress(run, documents.stage, total=documents.n_documents)
    futures: dict[PrefectFuture[TokensChunkRecord], int] = {}
    known: dict[int, TokensChunkRecord] = {}
    for chunk in plan:
        chunk_data = data if threads is None else data.model_copy(update={"threads": threads})
        chunk_parameters = {"documents": documents, "data": chunk_data, "chunk": chunk}
        have = stored(tokenize_chunk, records, **chunk_parameters)
        if have.record is not None:
            known[chunk.index] = have.record  # whole already: the cache hit below only shows it in the UI
        futures[submit_cached(tokenize_chunk, records, runner, refresh=have.stale, **chunk_parameters)] = chunk.index
    done: dict[int, TokensChunkRecord] = {}
    failed: dict[int, BaseException] = {}
    for finished in as_completed(list(futures)):
        index = futures[finished]
        try:
            result = finished.result()
        except Exception as error:
            failed[index] = error
            continue
        done[index] = known[index] if finished.state.name == "Cached" and index in known else result
        progress.update(sum(record.n_documents for record in done.values()))
    if failed:
        first = min(failed)
        cause = failed[first]
        raise ChunkFailed(f"{chunk_name(documents.stage, first, len(plan))} failed: {type(cause).__name__}: "
                          f"{cause}; {CHUNK_RETRY}") from cause
    merge = {**parameters, "chunks": [done[chunk.index] for chunk in plan]}
    return settle_cached(submit_cached(tokenize, records, runner, refresh=whole.stale, **merge), tokenize, records,
                         **merge)


def settle_stage(index: int, chain: StageChain, config: RunConfig) -> tuple[ShardsRecord, dict]:
    """The stage's records once its steps are done, reported (terminal, log, crawl report artifact)."""
    stage = chain.stage
    print(stage_header(index, len(config.components()), stage), flush=True)
    fetched, tokenized, sharded = chain.steps.result()
    documents, record = fetched.record, sharded.record
    cached = {"fetch": fetched.cached, "tokenize": tokenized.cached, "shard": sharded.cached}
    print(stage_data_summary(documents, record, cached, stage.n_items), flush=True)
    get_run_logger().info(
        "stage %r data: %s documents, %s train / %s val tokens, skipped %s",
        stage.name, documents.n_documents, record.train_tokens, record.val_tokens, documents.skipped or "none",
    )
    if documents.crawl_report:
        publish_crawl_report(config.name, stage.name, documents.crawl_report)
    return record, data_summary_row(documents, record, cached)
