"""A stage tokenized in chunks of row groups, merged in order, is byte for byte the stage tokenized whole."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curriculum.prepare import ChunkFailed, DocumentsRecord, fetch_stage, make_reader, tokenize_plan, tokenize_stage
from curriculum.stages import CurriculumStage
from data.config import DataConfig
from data.tokenize import tokenize_documents
from data.web.config import ScrapeConfig


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stories(tmp_path_factory, hub_mirror):
    """5,000 TinyStories from the mirror: three row groups (2,048 documents each at most)."""
    data_cfg = DataConfig(data_dir=tmp_path_factory.mktemp("data"), hub_mirror=hub_mirror)
    stage = CurriculumStage(name="warmup", dataset_key="roneneldan/TinyStories", block_size=64, n_epochs=1,
                            n_items=5000)
    documents = fetch_stage(stage, make_reader(stage, data_cfg, ScrapeConfig()), data_cfg)
    assert pq.ParquetFile(documents.path).num_row_groups == 3
    return data_cfg, documents


@pytest.mark.parametrize("per_chunk", [1, 2, 8])
def test_any_chunking_writes_the_bytes_of_one_pass_over_the_whole_file(stories, tmp_path, per_chunk):
    data_cfg, documents = stories
    whole_tokens, whole_index = tmp_path / "whole.bin", tmp_path / "whole.index.npz"
    tokenize_documents(documents.path, whole_tokens, whole_index, threads=2,
                       meta={"stage": documents.stage, "documents_sha256": documents.sha256})
    chunked = data_cfg.model_copy(update={"chunk_row_groups": per_chunk})
    plan = tokenize_plan(documents, chunked)
    assert [(c.index, c.of, c.first, c.stop) for c in plan][0] == (1, -(-3 // per_chunk), 0, min(per_chunk, 3))
    record = tokenize_stage(documents, chunked)
    assert digest(record.path) == digest(whole_tokens) and digest(record.index_path) == digest(whole_index)
    assert record.is_intact() and record.n_documents == 5000
    # The chunks' files are gone once the stage's files are committed.
    left = sorted(p.name for p in record.path.parent.glob("tokens-*"))
    assert left == sorted([record.index_path.name, record.path.name])


def test_a_failing_chunk_is_named_and_the_other_chunks_are_kept(tmp_path):
    """A documents file whose second row group holds a document with no text (written around write_documents)."""
    docs = tmp_path / "work" / "web" / "documents.parquet"
    docs.parent.mkdir(parents=True)
    with pq.ParquetWriter(docs, pa.schema([("id", pa.string()), ("text", pa.string())])) as writer:
        for texts in (["one", "two"], ["three", None], ["five"]):
            writer.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))
    documents = DocumentsRecord(stage="web", path=docs, sha256=digest(docs), n_documents=5, n_chars=0, skipped={},
                                notes=[])
    with pytest.raises(ChunkFailed, match=r"^tokenize-web-2/3 failed: TypeError"):
        tokenize_stage(documents, DataConfig(data_dir=tmp_path, chunk_row_groups=1))
    kept = sorted(p.name.split("-rg")[1] for p in docs.parent.glob("tokens-*-rg*.bin"))
    assert kept == ["0-1.bin", "2-3.bin"]  # the chunks that did not fail, for a re-run to take from the cache
    assert not list(docs.parent.glob("tokens-*_base.bin"))  # no merged file
