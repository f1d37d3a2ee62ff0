"""The `mixed` arm's data: every stage's train shard in one shard file, written once per comparison folder."""

from __future__ import annotations

import logging
from pathlib import Path

from curriculum.prepare import ShardsRecord
from data.shards import ShardError, ShardWriter, read_header, read_shard

log = logging.getLogger(__name__)


def mixed_record(shards: list[ShardsRecord], path: Path, block_size: int) -> ShardsRecord:
    """The stages' train shards concatenated, in stage order, into `path` (the trainer's seeded permutation of
    windows shuffles them): reused when its header names exactly these sources, else (re)written atomically.
    Its val set is the last stage's (the comparison's target)."""
    sources = [{"stage": s.stage, "sha256": s.train_sha256, "n_tokens": s.train_tokens} for s in shards]
    header = _header_if_same(path, sources)
    if header is None:
        first = read_header(shards[0].train_path)
        with ShardWriter(path, vocab_size=int(first["vocab_size"])) as writer:
            for record in shards:
                shard = read_shard(record.train_path, expect={"sha256": record.train_sha256})
                writer.write(shard.tokens)
            header = writer.commit(
                tokenizer=first["tokenizer"], eot_token=first.get("eot_token"), stage="mixed", block_size=block_size,
                sources=sources,
            )
        log.info("wrote the mixed arm's shard %s: %s tokens from stages %s", path, f"{header['n_tokens']:,}",
                 [s.stage for s in shards])
    last = shards[-1]
    return ShardsRecord(
        stage="mixed", shard_name="mixed", block_size=block_size, tokenizer=header["tokenizer"],
        vocab_size=header["vocab_size"], train_path=path, val_path=last.val_path, train_sha256=header["sha256"],
        val_sha256=last.val_sha256, train_tokens=header["n_tokens"], val_tokens=last.val_tokens,
        train_documents=sum(s.train_documents for s in shards), val_documents=last.val_documents,
    )


def _header_if_same(path: Path, sources: list[dict]) -> dict | None:
    if not path.is_file():
        return None
    try:
        header = read_header(path)
    except ShardError as error:
        log.warning("the mixed shard %s is damaged (%s); writing it again", path, error)
        return None
    if header.get("sources") != sources:
        log.info("the mixed shard %s was made from other shards; writing it again", path)
        return None
    return header
