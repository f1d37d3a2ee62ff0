"""Tokenize and shard real documents; the shards decode back to the source and refuse any damage."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tiktoken

from curriculum.prepare import fetch_stage, make_reader, shard_stage, tokenize_stage
from curriculum.stages import CurriculumStage
from data.config import DataConfig
from data.documents import Document, SkipReport, write_documents
from data.shards import HEADER_BYTES, ShardError, ShardWriter, read_header, read_shard
from data.split import SplitTooSmall, choose_val_documents
from data.tokenize import copy_of_encoding, thread_encoding, tokenize_documents
from data.web.config import ScrapeConfig

ENC = tiktoken.get_encoding("r50k_base")


def decode_documents(tokens: np.ndarray) -> list[str]:
    ends = np.flatnonzero(tokens == ENC.eot_token)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [ENC.decode(tokens[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, hub_mirror):
    data_cfg = DataConfig(data_dir=tmp_path_factory.mktemp("data"), hub_mirror=hub_mirror)
    stage = CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=64, n_epochs=1, n_items=400)
    reader = make_reader(stage, data_cfg, ScrapeConfig())
    documents = fetch_stage(stage, reader, data_cfg)
    tokens = tokenize_stage(documents, data_cfg)
    shards = shard_stage(tokens, stage, data_cfg)
    source = [doc.text for doc in reader.documents(SkipReport("x"))]
    return data_cfg, stage, documents, tokens, shards, source


def test_shards_decode_back_to_the_source_documents(prepared):
    data_cfg, _, documents, tokens, shards, source = prepared
    assert shards.train_path == data_cfg.data_dir / "train_warmup_pretrain.bin"
    assert shards.val_path == data_cfg.data_dir / "val_warmup_pretrain.bin"
    train = decode_documents(np.asarray(read_shard(shards.train_path).tokens))
    val = decode_documents(np.asarray(read_shard(shards.val_path).tokens))
    assert len(train) == shards.train_documents and len(val) == shards.val_documents
    assert sorted(train + val) == sorted(source)
    # Each split keeps the source order, and no document is cut between the two.
    assert train == [text for text in source if text in set(train)]
    assert not set(train) & set(val)
    assert shards.train_tokens + shards.val_tokens == tokens.n_tokens


def test_header_records_what_training_needs(prepared):
    _, _, documents, _, shards, _ = prepared
    meta = read_header(shards.train_path)
    assert meta["tokenizer"] == "r50k_base" and meta["vocab_size"] == 50257 and meta["eot_token"] == 50256
    assert meta["dtype"] == "uint16" and meta["n_tokens"] == shards.train_tokens
    assert meta["sha256"] == shards.train_sha256 and meta["split"] == "train"
    assert meta["source_fingerprint"] == read_header(shards.val_path)["source_fingerprint"]
    assert shards.is_intact()


def test_split_is_deterministic_and_seeded(tmp_path, prepared):
    data_cfg, stage, _, tokens, shards, _ = prepared
    again = shard_stage(tokens, stage, data_cfg.model_copy(update={"data_dir": tmp_path}))
    assert (again.train_sha256, again.val_sha256) == (shards.train_sha256, shards.val_sha256)
    other = shard_stage(tokens, stage, data_cfg.model_copy(update={"data_dir": tmp_path, "seed": 7}))
    assert other.val_sha256 != shards.val_sha256


def test_tokens_equal_plain_encode_ordinary(tmp_path, hub_mirror):
    texts = ["Hello world.", "A story with <|endoftext|> inside, kept as text.", "Ünïcödé ✓ 日本語"] * 300
    docs = tmp_path / "docs.parquet"
    write_documents((Document(id=str(i), text=t) for i, t in enumerate(texts)), docs)
    summary = tokenize_documents(docs, tmp_path / "t.bin", tmp_path / "t.index.npz", threads=2)
    expected = np.concatenate([np.array(ENC.encode_ordinary(t) + [ENC.eot_token]) for t in texts])
    assert np.array_equal(np.asarray(read_shard(tmp_path / "t.bin").tokens), expected)
    assert summary.n_documents == len(texts)


def test_each_thread_encodes_with_its_own_copy_and_the_same_tokens(hub_mirror):
    """tiktoken's regex caches are fast only for an encoding's first thread, so every encoding thread has its own
    copy; the copies must give the shared encoding's tokens."""
    text = "Once upon a time, <|endoftext|> Ünïcödé ✓ 日本語 tokens... 1234   spaces\n\nend"
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(lambda _: (threading.get_ident(), thread_encoding("r50k_base")), range(50)))
    by_thread = {}
    for ident, encoding in found:
        assert by_thread.setdefault(ident, encoding) is encoding  # one copy per thread, kept
    copies = list(by_thread.values()) + [thread_encoding("r50k_base")]
    assert len({id(copy) for copy in copies}) == len(copies) and all(copy is not ENC for copy in copies)
    for copy in copies:
        assert copy.encode_ordinary(text) == ENC.encode_ordinary(text)
        assert copy.encode(text, allowed_special="all") == ENC.encode(text, allowed_special="all")
        assert copy.n_vocab == ENC.n_vocab and copy.eot_token == ENC.eot_token


def test_an_encoding_with_gaps_in_its_ids_is_copied_too():
    """cl100k_base and o200k_base have ids no token uses; a copy must not check that ranks fill the vocabulary."""
    special = {"<|endoftext|>": ENC.n_vocab + 100}  # ids 50257..50356 unused
    gapped = tiktoken.Encoding("gapped", pat_str=ENC._pat_str, mergeable_ranks=ENC._mergeable_ranks,
                               special_tokens=special)
    copy = copy_of_encoding(gapped)
    text = "Once upon a time <|endoftext|> the end"
    assert copy is not gapped and copy.n_vocab == gapped.n_vocab == ENC.n_vocab + 101
    assert copy.encode(text, allowed_special="all") == gapped.encode(text, allowed_special="all")


def copy_of(path, tmp_path):
    target = tmp_path / path.name
    target.write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("damage", ["truncate", "zero-pad", "flip-token", "zero-header", "empty"])
def test_damaged_shards_are_refused(prepared, tmp_path, damage):
    shard = copy_of(prepared[4].train_path, tmp_path)
    raw = bytearray(shard.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 2]
    elif damage == "zero-pad":
        raw += b"\0" * 4096
    elif damage == "flip-token":
        raw[HEADER_BYTES + 100] ^= 0x01
    elif damage == "zero-header":
        raw[:HEADER_BYTES] = b"\0" * HEADER_BYTES
    else:
        raw = bytearray()
    shard.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="regenerate it: python flows/curriculum.py"):
        read_shard(shard)


def test_other_tokenizer_and_missing_file_are_refused(prepared, tmp_path):
    with pytest.raises(ShardError, match="tokenizer='r50k_base', this run expects 'cl100k_base'"):
        read_shard(prepared[4].train_path, expect={"tokenizer": "cl100k_base"})
    with pytest.raises(FileNotFoundError, match="Dataset file not found"):
        read_shard(tmp_path / "train_nope_pretrain.bin")


def test_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "train_x_pretrain.bin"
    with pytest.raises(RuntimeError):
        with ShardWriter(path, 50257) as writer:
            writer.write(np.arange(10))
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_small_dataset_val_grows_to_one_eval_batch():
    lengths = np.full(20, 100)
    keys = np.arange(20, dtype=np.uint64)
    is_val = choose_val_documents(lengths, keys, block_size=64, val_fraction=0.01, min_val_windows=4, seed=1, stage="s")
    assert lengths[is_val].sum() >= 4 * 64 + 1
    assert lengths[~is_val].sum() >= lengths[is_val].sum()


def test_too_small_dataset_names_the_stage():
    with pytest.raises(SplitTooSmall, match="stage 'tiny' has 300 tokens in 3 documents"):
        choose_val_documents(np.full(3, 100), np.arange(3, dtype=np.uint64), block_size=128,
                             val_fraction=0.1, min_val_windows=4, seed=1, stage="tiny")
