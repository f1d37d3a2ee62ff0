"""Split tokenized documents into the stage's train and val shards, by document, seeded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import UserError
from data.shards import ShardWriter, read_shard
from data.tokenize import load_index

COPY_TOKENS = 1 << 24  # copy at most this many tokens at once: memory stays bounded


class SplitTooSmall(UserError, ValueError):
    """A stage has too little text for a validation split and training at its block size."""


@dataclass(frozen=True)
class SplitSummary:
    train_tokens: int
    val_tokens: int
    train_documents: int
    val_documents: int
    train_sha256: str
    val_sha256: str


def _uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of (key, seed) mapped to [0, 1): a seeded, order-free coin per document."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def choose_val_documents(
    lengths: np.ndarray,
    keys: np.ndarray,
    *,
    block_size: int,
    val_fraction: float,
    min_val_windows: int,
    seed: int,
    stage: str,
) -> np.ndarray:
    """A boolean mask of validation documents.

    About `val_fraction` of the documents, chosen by a seeded hash of their ids; when that holds
    fewer than `min_val_windows` windows of `block_size` + 1 tokens, the documents with the next
    lowest hashes are added until it does, as long as training keeps at least as many tokens.
    """
    score = _uniform(keys, seed)
    is_val = score < val_fraction
    need = min_val_windows * block_size + 1
    total = int(lengths.sum())
    if int(lengths[is_val].sum()) < need:
        order = np.argsort(score, kind="stable")
        reach = np.cumsum(lengths[order])
        take = int(np.searchsorted(reach, need)) + 1
        is_val = np.zeros_like(is_val)
        is_val[order[:take]] = True
    val_tokens = int(lengths[is_val].sum())
    if val_tokens < need or total - val_tokens < max(need, val_tokens):
        raise SplitTooSmall(
            f"stage {stage!r} has {total:,} tokens in {lengths.size:,} documents: too few for a validation "
            f"split of {min_val_windows} windows of {block_size + 1} tokens (block_size={block_size}) plus at "
            f"least as many training tokens. Give the stage more data (raise n_items or add files), or lower "
            f"its block_size or data.min_val_windows"
        )
    return is_val


def write_split_shards(
    tokens_path: str | Path,
    index_path: str | Path,
    train_path: str | Path,
    val_path: str | Path,
    *,
    block_size: int,
    val_fraction: float,
    min_val_windows: int,
    seed: int,
    stage: str,
    meta: dict,
    before_commit: Callable[[], None] | None = None,
) -> SplitSummary:
    """Write `train_{stage}_{suffix}.bin` and `val_...bin`; documents keep their order within each.

    `before_commit` runs once every token is written under the temporary names and neither file is renamed
    into place: where a test pauses the process to kill it mid-write.
    """
    source = read_shard(tokens_path)
    ends, keys = load_index(index_path)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    lengths = ends - starts
    is_val = choose_val_documents(
        lengths, keys, block_size=block_size, val_fraction=val_fraction,
        min_val_windows=min_val_windows, seed=seed, stage=stage,
    )
    # Consecutive documents on the same side form one run: one slice copy per run, not per document.
    change = np.flatnonzero(np.diff(is_val.astype(np.int8))) + 1
    run_starts = np.concatenate([[0], change])
    run_ends = np.concatenate([change, [is_val.size]])
    vocab = int(source.meta["vocab_size"])
    inherited = {k: source.meta[k] for k in ("tokenizer", "eot_token") if k in source.meta}
    headers = {}
    with ShardWriter(train_path, vocab) as train, ShardWriter(val_path, vocab) as val:
        for first, last in zip(run_starts, run_ends, strict=True):
            writer = val if is_val[first] else train
            lo, hi = int(starts[first]), int(ends[last - 1])
            for pos in range(lo, hi, COPY_TOKENS):
                writer.write(np.asarray(source.tokens[pos : min(hi, pos + COPY_TOKENS)]))
        if before_commit is not None:
            before_commit()
        n_val_docs = int(is_val.sum())
        headers["train"] = train.commit(**inherited, **meta, split="train", n_documents=int(is_val.size) - n_val_docs)
        headers["val"] = val.commit(**inherited, **meta, split="val", n_documents=n_val_docs)
    return SplitSummary(
        train_tokens=int(headers["train"]["n_tokens"]),
        val_tokens=int(headers["val"]["n_tokens"]),
        train_documents=int(headers["train"]["n_documents"]),
        val_documents=int(headers["val"]["n_documents"]),
        train_sha256=headers["train"]["sha256"],
        val_sha256=headers["val"]["sha256"],
    )
