"""Tokenize + shard throughput on real TinyStories text, next to raw single-core tiktoken in the same run.

    TIKTOKEN_CACHE_DIR=../shared/tiktoken python bench/bench_tokenize.py [--tokens 4e6] [--threads 0]
        [--chunk-row-groups 8]

Prints tokens/s of the project's path (documents file -> token file, tokenized in chunks of --chunk-row-groups
row groups and merged in order as a stage's tokenize task does -> train/val shards, all of it timed) and of
`encode_ordinary` called in a plain loop on one core over the same texts, both warm (steady state), the peak RSS
of the project's path (measured in a child process of its own), and last `ratio_vs_raw_1core=X`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from curriculum.prepare import DocumentsRecord, tokenize_plan, tokenize_stage
from data.atomic import sha256_file
from data.config import DataConfig
from data.documents import Document, write_documents
from data.split import write_split_shards
from data.tokenize import get_encoding

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken"))
MIRROR = ROOT.parent / "shared" / "hub" / "roneneldan" / "TinyStories" / "data"


def stories() -> list[str]:
    return pq.read_table(next(MIRROR.glob("train-*.parquet"))).column("text").to_pylist()


def repeated_documents(texts: list[str], target_tokens: float) -> tuple[list[str], int]:
    encoding = get_encoding("r50k_base")
    per_pass = sum(len(encoding.encode_ordinary(t)) + 1 for t in texts)
    repeats = max(1, int(-(-target_tokens // per_pass)))
    return texts * repeats, per_pass * repeats


def project_path(docs: str, out: str, threads: int, chunk_row_groups: int, queue) -> None:
    """Runs in a child process, so its peak RSS is its own."""
    documents = DocumentsRecord(stage="bench", path=Path(docs), sha256=sha256_file(docs), n_documents=0, n_chars=0,
                                skipped={}, notes=[])
    data_cfg = DataConfig(data_dir=Path(out), threads=threads, chunk_row_groups=chunk_row_groups)
    # Steady state for both paths: the raw baseline's encoder is warm from counting tokens first, and one
    # untimed pass here warms ours (the BPE ranks, each worker thread's regex caches, the page cache).
    tokenize_stage(documents, data_cfg)
    started = time.perf_counter()
    tokens = tokenize_stage(documents, data_cfg)
    write_split_shards(
        tokens.path, tokens.index_path, f"{out}/train_bench_pretrain.bin",
        f"{out}/val_bench_pretrain.bin", block_size=256, val_fraction=0.05, min_val_windows=4, seed=1,
        stage="bench", meta={},
    )
    seconds = time.perf_counter() - started
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((tokens.n_tokens, len(tokenize_plan(documents, data_cfg)), seconds, peak_rss_mb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=float, default=4e6, help="at least this many tokens (default 4e6)")
    parser.add_argument("--threads", type=int, default=0, help="tokenizer threads; 0 = every core")
    default_chunk = DataConfig.model_fields["chunk_row_groups"].default
    parser.add_argument("--chunk-row-groups", type=int, default=default_chunk,
                        help=f"row groups per tokenize chunk (data.chunk_row_groups, default {default_chunk})")
    args = parser.parse_args()

    texts, n_tokens = repeated_documents(stories(), args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        docs = f"{tmp}/docs.parquet"
        write_documents((Document(id=str(i), text=t) for i, t in enumerate(texts)), docs)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=project_path, args=(docs, tmp, args.threads, args.chunk_row_groups, queue))
        child.start()
        ours_tokens, n_chunks, ours_seconds, ours_rss = queue.get()
        child.join()

    encoding = get_encoding("r50k_base")
    started = time.perf_counter()
    raw_tokens = sum(len(encoding.encode_ordinary(t)) for t in texts) + len(texts)
    raw_seconds = time.perf_counter() - started

    assert ours_tokens == raw_tokens == n_tokens, (ours_tokens, raw_tokens, n_tokens)
    ours_rate, raw_rate = ours_tokens / ours_seconds, raw_tokens / raw_seconds
    print(f"documents: {len(texts):,}   tokens: {ours_tokens:,}   cores: {os.cpu_count()}   chunks: {n_chunks}")
    print(f"{'path':<44}{'tokens/s':>14}{'seconds':>10}")
    print(f"{'raw tiktoken encode_ordinary, 1 core':<44}{raw_rate / 1e6:>12.2f} M{raw_seconds:>10.2f}")
    print(f"{'project tokenize + shard (all cores)':<44}{ours_rate / 1e6:>12.2f} M{ours_seconds:>10.2f}")
    print(f"project peak RSS: {ours_rss:.0f} MB")
    print(f"ratio_vs_raw_1core={ours_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
