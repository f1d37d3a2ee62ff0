"""Data preparation of one stage in three steps, fetch -> tokenize -> shard, as plain functions.

Each step takes the previous step's record and returns its own: a small pydantic model holding
the paths it wrote and checksums of their content. The Prefect tasks cache on those checksums
(never on paths), and `is_intact()` tells whether a cached record's files are still whole.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from curriculum.sources import kind_named
from curriculum.stages import CurriculumStage
from curriculum.training.faults import pause_point
from data.atomic import sha256_file
from data.checksums import json_sha256
from data.config import DataConfig
from data.documents import SkipReport, Source, write_documents_by_content, write_json
from data.errors import UserError
from data.hf_reader import HuggingFaceReader
from data.shards import ShardError, read_header, read_shard
from data.split import write_split_shards
from data.tokenize import merge_token_files, row_group_chunks, tokenize_documents
from data.web.config import ScrapeConfig

log = logging.getLogger(__name__)


def work_dir(data_cfg: DataConfig, stage: CurriculumStage) -> Path:
    """Intermediate files of a stage; safe to delete (the steps run again)."""
    return data_cfg.resolved_data_dir / "work" / stage.name


def make_reader(stage: CurriculumStage, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> Source:
    """The reader of the stage's kind of source (curriculum/sources.py)."""
    return kind_named(stage.data_key).reader(stage, data_cfg, scrape_cfg)


def pin_hub_commit(stage: CurriculumStage, data_cfg: DataConfig, scrape_cfg: ScrapeConfig) -> CurriculumStage:
    """A hub stage with its `revision` set to the commit that revision points to now; any other stage as it is.

    The fetch step's cache key and its download each look the commit up; given the pinned stage, both name the
    same commit even if the branch moves between the two, so a record never holds documents of another commit."""
    reader = make_reader(stage, data_cfg, scrape_cfg)
    if not isinstance(reader, HuggingFaceReader) or reader.location.kind != "hub":
        return stage
    return stage.model_copy(update={"revision": reader.hub_commit()})


def _file_ok(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


class DocumentsRecord(BaseModel):
    stage: str
    path: Path
    sha256: str
    n_documents: int
    n_chars: int
    skipped: dict[str, int]
    notes: list[str]
    crawl_report: Path | None = None

    def is_intact(self) -> bool:
        return _file_ok(self.path, self.sha256)


def _tokens_ok(path: Path, sha256: str, index_path: Path, index_sha256: str) -> bool:
    """A token file (shard format, checked against the checksum its header and the record hold) and its index."""
    try:
        return read_shard(path).sha256 == sha256 and _file_ok(index_path, index_sha256)
    except (ShardError, OSError):
        return False


class TokensRecord(BaseModel):
    stage: str
    path: Path
    index_path: Path
    sha256: str
    index_sha256: str
    n_documents: int
    n_tokens: int
    tokenizer: str

    def is_intact(self) -> bool:
        return _tokens_ok(self.path, self.sha256, self.index_path, self.index_sha256)


class ShardsRecord(BaseModel):
    stage: str
    shard_name: str
    block_size: int
    tokenizer: str
    vocab_size: int
    train_path: Path
    val_path: Path
    train_sha256: str
    val_sha256: str
    train_tokens: int
    val_tokens: int
    train_documents: int
    val_documents: int

    def is_intact(self) -> bool:
        try:
            return (
                read_shard(self.train_path).sha256 == self.train_sha256
                and read_shard(self.val_path).sha256 == self.val_sha256
            )
        except (ShardError, OSError):
            return False



def fetch_stage(
    stage: CurriculumStage, reader: Source, data_cfg: DataConfig, on_progress: Callable[[int], None] | None = None
) -> DocumentsRecord:
    """Read the stage's source into a documents file named by its content, counting what was skipped and why."""
    pause_point("fetch", 0, 0)
    report = SkipReport(source=stage.data_key)
    path, summary = write_documents_by_content(
        reader.documents(report), work_dir(data_cfg, stage), n_items=stage.n_items, on_progress=on_progress
    )
    if summary.n_documents == 0:
        raise ValueError(
            f"stage {stage.name!r} ({stage.dataset_key}) produced no documents "
            f"(skipped: {dict(report.counts) or 'none'}); check its source settings"
        )
    if stage.n_items and summary.n_documents < stage.n_items:
        report.note(
            f"stage {stage.name!r}: n_items={stage.n_items:,} asked for, the source has {summary.n_documents:,} "
            "documents after skips; all of them are used"
        )
    crawl = getattr(reader, "report_path", None)
    return DocumentsRecord(
        stage=stage.name,
        path=path,
        sha256=summary.sha256,
        n_documents=summary.n_documents,
        n_chars=summary.n_chars,
        skipped=dict(report.counts),
        notes=report.notes[:50],
        crawl_report=crawl if crawl and Path(crawl).is_file() else None,
    )


class TokensChunkRecord(BaseModel):
    """One chunk of a stage's tokenization: the tokens and index of a contiguous run of the documents file's row
    groups, `index` (1-based) of `of` chunks. Its files are removed once the stage's tokens are merged (those of a
    stage's only chunk are the stage's own)."""

    stage: str
    index: int
    of: int
    first_row_group: int
    stop_row_group: int
    path: Path
    index_path: Path
    sha256: str
    index_sha256: str
    n_documents: int
    n_tokens: int

    @property
    def name(self) -> str:
        return chunk_name(self.stage, self.index, self.of)

    def is_intact(self) -> bool:
        return _tokens_ok(self.path, self.sha256, self.index_path, self.index_sha256)


class TokenizeChunk(BaseModel):
    """What one chunk covers: row groups [first, stop) of the documents file, `index` (1-based) of `of`."""

    model_config = ConfigDict(frozen=True)

    index: int
    of: int
    first: int
    stop: int


def chunk_name(stage: str, index: int, of: int) -> str:
    """How a chunk is named in the UI, the logs and errors: tokenize-<stage>-<index>/<of>."""
    return f"tokenize-{stage}-{index}/{of}"


def tokenize_plan(documents: DocumentsRecord, data_cfg: DataConfig) -> list[TokenizeChunk]:
    """The chunks of a stage's tokenization: data.chunk_row_groups row groups each. A small stage is one chunk."""
    runs = row_group_chunks(documents.path, data_cfg.chunk_row_groups)
    return [TokenizeChunk(index=i, of=len(runs), first=run.start, stop=run.stop) for i, run in enumerate(runs, start=1)]


def _tokens_paths(
    documents: DocumentsRecord, data_cfg: DataConfig, chunk: TokenizeChunk | None = None
) -> tuple[Path, Path]:
    """(token file, index) of the stage, or of one of its chunks."""
    name = f"tokens-{documents.sha256[:16]}-{data_cfg.tokenizer}"
    if chunk is not None:
        name += f"-rg{chunk.first}-{chunk.stop}"
    return documents.path.with_name(f"{name}.bin"), documents.path.with_name(f"{name}.index.npz")


def _tokens_meta(documents: DocumentsRecord) -> dict[str, str]:
    return {"stage": documents.stage, "documents_sha256": documents.sha256}


def tokenize_chunk(
    documents: DocumentsRecord, data_cfg: DataConfig, chunk: TokenizeChunk,
    on_progress: Callable[[int], None] | None = None,
) -> TokensChunkRecord:
    """Tokenize one chunk into files of its own (named by the documents' checksum and its row groups). The only
    chunk of a stage writes the stage's files themselves: there is nothing to merge, so no second pass."""
    tokens_path, index_path = _tokens_paths(documents, data_cfg, None if chunk.of == 1 else chunk)
    summary = tokenize_documents(
        documents.path, tokens_path, index_path, tokenizer=data_cfg.tokenizer, threads=data_cfg.threads,
        meta=_tokens_meta(documents), on_progress=on_progress, row_groups=range(chunk.first, chunk.stop),
    )
    return TokensChunkRecord(
        stage=documents.stage, index=chunk.index, of=chunk.of, first_row_group=chunk.first,
        stop_row_group=chunk.stop, path=tokens_path, index_path=index_path, sha256=summary.sha256,
        index_sha256=sha256_file(index_path), n_documents=summary.n_documents, n_tokens=summary.n_tokens,
    )


def merge_chunks(documents: DocumentsRecord, data_cfg: DataConfig, chunks: list[TokensChunkRecord]) -> TokensRecord:
    """The stage's token file and index from its chunks, in order; the chunk files are removed once both are
    committed (until then a re-run takes every finished chunk from the cache)."""
    chunks = sorted(chunks, key=lambda chunk: chunk.index)
    if [chunk.index for chunk in chunks] != list(range(1, len(chunks) + 1)) or any(c.of != len(chunks) for c in chunks):
        raise ValueError(f"stage {documents.stage!r}: chunks {[c.name for c in chunks]} are not one whole plan")
    tokens_path, index_path = _tokens_paths(documents, data_cfg)
    if len(chunks) == 1:
        # The only chunk wrote a stage's files itself (tokenize_chunk): this stage's, or, from the cache, those of
        # another stage with the same documents (the key is the content). Used where they are: merging a copy and
        # deleting the chunk's files would delete that other stage's tokens under it.
        only = chunks[0]
        return TokensRecord(
            stage=documents.stage, path=only.path, index_path=only.index_path, sha256=only.sha256,
            index_sha256=only.index_sha256, n_documents=only.n_documents, n_tokens=only.n_tokens,
            tokenizer=data_cfg.tokenizer,
        )
    pause_point("tokenize-merge", 0, 0)
    summary = merge_token_files(
        [(chunk.path, chunk.index_path) for chunk in chunks], tokens_path, index_path, meta=_tokens_meta(documents)
    )
    for chunk in chunks:
        if chunk.path.parent == tokens_path.parent:  # not the chunks another stage with the same documents made
            chunk.path.unlink(missing_ok=True)
            chunk.index_path.unlink(missing_ok=True)
    return TokensRecord(
        stage=documents.stage,
        path=tokens_path,
        index_path=index_path,
        sha256=summary.sha256,
        index_sha256=sha256_file(index_path),
        n_documents=summary.n_documents,
        n_tokens=summary.n_tokens,
        tokenizer=data_cfg.tokenizer,
    )


CHUNKS_AT_ONCE = 2  # chunks read and queue row groups for the process's data.threads encoding threads (one pool
# shared by them, data/tokenize.py); two keep those threads busy across a chunk's tail


def tokenize_stage(
    documents: DocumentsRecord, data_cfg: DataConfig, on_progress: Callable[[int], None] | None = None,
    run_chunk: Callable[[TokenizeChunk, Callable[[int], None]], TokensChunkRecord] | None = None,
) -> TokensRecord:
    """Tokenize a stage in chunks (tokenize_plan), a few at a time, then merge them in order.

    `run_chunk(chunk, on_progress)` runs one chunk (default: tokenize_chunk here; the Prefect task makes each a task
    run of its own). It runs on a pool thread in a copy of the caller's context, so context-bound state (e.g. the
    run a nested task belongs to) follows it. A failure is raised as a ChunkFailed naming the chunk, after the
    chunks already running have finished (so they are kept for a re-run)."""
    plan = tokenize_plan(documents, data_cfg)
    if run_chunk is None:
        def run_chunk(chunk: TokenizeChunk, progress: Callable[[int], None]) -> TokensChunkRecord:
            return tokenize_chunk(documents, data_cfg, chunk, on_progress=progress)

    done: dict[int, int] = {}
    lock = threading.Lock()

    def chunk_progress(index: int) -> Callable[[int], None]:
        def update(n_documents: int) -> None:
            with lock:
                done[index] = n_documents
                total = sum(done.values())
            if on_progress:
                on_progress(total)
        return update

    def one(chunk: TokenizeChunk) -> TokensChunkRecord:
        try:
            record = run_chunk(chunk, chunk_progress(chunk.index))
        except Exception as error:
            raise ChunkFailed(f"{chunk_name(documents.stage, chunk.index, chunk.of)} failed: "
                              f"{type(error).__name__}: {error}; {CHUNK_RETRY}") from error
        chunk_progress(chunk.index)(record.n_documents)  # also for a chunk that came from the cache
        return record

    with ThreadPoolExecutor(min(CHUNKS_AT_ONCE, len(plan))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, chunk) for chunk in plan]
        wait(futures)
    records = [future.result() for future in futures]  # the first failure in plan order
    return merge_chunks(documents, data_cfg, records)


class ChunkFailed(UserError, RuntimeError):
    """A chunk of a stage's tokenization failed (after its task's retries); the message names it, the cause and
    what to do (CHUNK_RETRY)."""


CHUNK_RETRY = ("fix that (the chunk's log above shows where it failed) and run the same command again: the chunks "
               "that finished come from the cache")


def shard_identity(tokens: TokensRecord, stage: CurriculumStage, data_cfg: DataConfig) -> list[Any]:
    """Everything a stage's shards are made from: the tokens (by checksum) and the settings of the split. The shard
    task's cache key hashes it, and so does the `source_fingerprint` recorded in the shard headers."""
    return [
        tokens.sha256, tokens.index_sha256, stage.shard_name, stage.source_kind, stage.block_size,
        data_cfg.model_dump(mode="json", include={"val_fraction", "min_val_windows", "seed"}),
    ]


def shard_stage(tokens: TokensRecord, stage: CurriculumStage, data_cfg: DataConfig) -> ShardsRecord:
    data_dir = data_cfg.resolved_data_dir
    train_path, val_path = stage.shard_path(data_dir, "train"), stage.shard_path(data_dir, "val")
    source_fingerprint = json_sha256(shard_identity(tokens, stage, data_cfg))
    summary = write_split_shards(
        tokens.path, tokens.index_path, train_path, val_path,
        block_size=stage.block_size, val_fraction=data_cfg.val_fraction,
        min_val_windows=data_cfg.min_val_windows, seed=data_cfg.seed, stage=stage.name,
        meta={"stage": stage.name, "dataset_suffix": stage.dataset_suffix, "dataset_key": stage.dataset_key,
              "block_size": stage.block_size, "source_fingerprint": source_fingerprint},
        before_commit=lambda: pause_point("shard-write", 0, 0),
    )
    header = read_header(train_path)
    record = ShardsRecord(
        stage=stage.name,
        shard_name=stage.shard_name,
        block_size=stage.block_size,
        tokenizer=header["tokenizer"],
        vocab_size=header["vocab_size"],
        train_path=train_path,
        val_path=val_path,
        train_sha256=summary.train_sha256,
        val_sha256=summary.val_sha256,
        train_tokens=summary.train_tokens,
        val_tokens=summary.val_tokens,
        train_documents=summary.train_documents,
        val_documents=summary.val_documents,
    )
    write_json(data_cfg.resolved_data_dir / "reports" / f"shards_{stage.name}.json", record.model_dump(mode="json"))
    return record
