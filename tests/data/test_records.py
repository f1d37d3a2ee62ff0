"""The local-records source (data/records.py): JSON Lines and Parquet files of real book text, prepared into the same
shards; bad records skipped and counted; a wrong text_field named with the fields the file has; served runs confined
through the source registry (curriculum/sources.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curriculum.allowed_paths import PathNotAllowed, confine_paths
from curriculum.config import ConfigError, validate_run_config
from curriculum.prepare import fetch_stage, make_reader, shard_stage, tokenize_stage
from curriculum.sources import KINDS, LOCAL_RECORDS
from curriculum.stages import CurriculumStage
from data.config import DataConfig
from data.documents import SkipReport
from data.records import MissingField, NoRecordFiles, RecordsReader
from data.shards import read_shard
from data.text_files import TextFilesReader
from data.web.config import ScrapeConfig

ROOT = Path(__file__).resolve().parents[2]
BOOKS = ("austen_pride-and-prejudice_pg1342.txt", "stevenson_treasure-island_pg120.txt")


@pytest.fixture(scope="module")
def book_records(books) -> list[dict]:
    """Two real books as records: id, text and a field of another name, as a corpus dump has them."""
    documents = TextFilesReader([str(books / name) for name in BOOKS]).documents(SkipReport("books"))
    return [{"doc_id": doc.id, "body": doc.text, "source": "gutenberg"} for doc in documents]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, book_records) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    half = len(book_records) // 2
    with open(folder / "part-1.jsonl", "w", encoding="utf-8") as handle:
        for record in book_records[:half]:
            handle.write(json.dumps(record) + "\n")
    pq.write_table(pa.Table.from_pylist(book_records[half:]), folder / "part-2.parquet", row_group_size=50)
    everything = folder / "all"
    everything.mkdir()
    pq.write_table(pa.Table.from_pylist(book_records), everything / "books.parquet")
    with open(everything / "books.jsonl", "w", encoding="utf-8") as handle:
        for record in book_records:
            handle.write(json.dumps(record) + "\n")
    return folder


def records_stage(files: list[str], **options) -> CurriculumStage:
    return CurriculumStage(name="records", dataset_key=LOCAL_RECORDS, block_size=64, n_epochs=1, files=files,
                           text_field="body", **options)


def prepare(stage: CurriculumStage, data_dir: Path):
    data_cfg = DataConfig(data_dir=data_dir)
    documents = fetch_stage(stage, make_reader(stage, data_cfg, ScrapeConfig()), data_cfg)
    return documents, shard_stage(tokenize_stage(documents, data_cfg), stage, data_cfg)


def tokens_of(path: Path) -> np.ndarray:
    return np.asarray(read_shard(path).tokens)


def test_jsonl_and_parquet_of_the_same_records_prepare_into_the_same_shards(corpus, book_records, tmp_path):
    from_jsonl = prepare(records_stage([str(corpus / "all" / "books.jsonl")], id_field="doc_id"), tmp_path / "j")
    from_parquet = prepare(records_stage([str(corpus / "all" / "books.parquet")], id_field="doc_id"), tmp_path / "p")
    for (documents, shards) in (from_jsonl, from_parquet):
        assert documents.n_documents == len(book_records)
        assert shards.train_documents + shards.val_documents == len(book_records)
    for split in ("train_path", "val_path"):
        assert np.array_equal(tokens_of(getattr(from_jsonl[1], split)), tokens_of(getattr(from_parquet[1], split)))


def test_records_read_in_file_order_with_their_ids_and_text(corpus, book_records):
    reader = RecordsReader([str(corpus)], text_field="body", id_field="doc_id", stage="records")
    assert [p.name for p in reader.files] == ["books.jsonl", "books.parquet", "part-1.jsonl", "part-2.parquet"]
    report = SkipReport("records")
    documents = list(RecordsReader([str(corpus / "part-*")], text_field="body", id_field="doc_id").documents(report))
    assert [(d.id, d.text) for d in documents] == [(r["doc_id"], r["body"].strip()) for r in book_records]
    assert sum(report.counts.values()) == 0
    # Without id_field: <file name>#<line or row number>.
    plain = list(RecordsReader([str(corpus / "part-2.parquet")], text_field="body").documents(SkipReport("x")))
    assert plain[0].id == "part-2.parquet#1" and plain[-1].id == f"part-2.parquet#{len(plain)}"


def test_bad_records_are_skipped_with_their_reason_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = ['{"text": "A first good record."}', "{not json", '["a", "list"]', '{"text": 42}', '{"text": "   "}',
             '{"title": "no text here"}', "", '{"text": null}', '{"text": "The last good one."}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = SkipReport("records")
    documents = list(RecordsReader([str(path)]).documents(report))
    assert [d.text for d in documents] == ["A first good record.", "The last good one."]
    assert report.counts == {"unreadable": 1, "not an object": 1, "not text": 1, "empty": 2, "no text field": 1}
    assert report.examples["unreadable"] == [f"{path}:2"] and report.examples["no text field"] == [f"{path}:6"]


@pytest.mark.parametrize("name", ["books.jsonl", "books.parquet"])
def test_a_text_field_the_file_lacks_names_the_fields_it_has(corpus, name, tmp_path):
    stage = CurriculumStage(name="records", dataset_key=LOCAL_RECORDS, block_size=64, n_epochs=1,
                            files=[str(corpus / "all" / name)], text_field="content")
    with pytest.raises(MissingField) as refused:
        prepare(stage, tmp_path / "data")
    message = str(refused.value)
    assert "'content'" in message and "body, doc_id, source" in message and "text_field" in message, message
    assert "--set stages.records.text_field=NAME" in message
    # Nothing half-written where a reader could take it: no documents file, finished or temporary.
    left = [p.name for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert not [name for name in left if name.startswith("documents") or ".tmp-" in name], left


@pytest.mark.parametrize("name", ["books.jsonl", "books.parquet"])
def test_an_id_field_the_file_lacks_is_named_too(corpus, name):
    reader = RecordsReader([str(corpus / "all" / name)], text_field="body", id_field="uid", stage="mix.books")
    with pytest.raises(MissingField) as refused:
        list(reader.documents(SkipReport("records")))
    message = str(refused.value)
    assert "'uid'" in message and "body, doc_id, source" in message, message
    # A source of a mixed stage is set in the YAML file: --set addresses stages, not their sources.
    assert "source 'books' of stage 'mix' in the YAML file" in message and "--set" not in message, message


def test_the_data_folder_is_never_read_as_records(corpus, tmp_path):
    # A `files:` folder that holds the data folder would read the pipeline's own documents files (Parquet too).
    root = tmp_path / "project"
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "one.jsonl").write_text('{"text": "The only real record."}\n')
    stage = CurriculumStage(name="records", dataset_key=LOCAL_RECORDS, block_size=64, n_epochs=1, files=[str(root)])
    data_cfg = DataConfig(data_dir=root / "data")
    for _ in range(2):  # the second fetch finds the first's documents file under root/data/work
        documents = fetch_stage(stage, make_reader(stage, data_cfg, ScrapeConfig()), data_cfg)
        assert documents.n_documents == 1
    assert list((root / "data").rglob("*.parquet"))


def test_no_record_files_and_misplaced_options_are_refused_naming_what_to_do(tmp_path):
    with pytest.raises(NoRecordFiles, match="no .jsonl or .parquet files"):
        RecordsReader([str(tmp_path)], stage="records").fingerprint()
    with pytest.raises(ValueError, match="local-records.*give 'files'"):
        CurriculumStage(name="r", dataset_key=LOCAL_RECORDS, block_size=64, n_epochs=1)
    with pytest.raises(ValueError, match="'id_field' belongs to local-records stages"):
        CurriculumStage(name="r", dataset_key="local-files", block_size=64, n_epochs=1, id_field="id")
    with pytest.raises(ValueError, match="'split' belongs to hugging-face stages"):
        CurriculumStage(name="r", dataset_key=LOCAL_RECORDS, block_size=64, n_epochs=1, files=["x"], split="test")


def test_a_served_run_cannot_read_records_outside_the_allowed_folders(tmp_path, corpus):
    # The confinement comes from the registry's path options of the kind, not from a hand list.
    assert KINDS[LOCAL_RECORDS].paths == ("files",)
    inside, outside = tmp_path / "root", corpus / "all" / "books.jsonl"
    inside.mkdir()
    (inside / "ok.jsonl").write_text('{"body": "x"}\n')
    raw = {"stages": [{"name": "r", "dataset_key": LOCAL_RECORDS, "block_size": 64, "n_epochs": 1,
                       "text_field": "body", "files": [str(inside / "ok.jsonl")]}],
           "data": {"data_dir": str(inside / "data")}, "train": {"out_dir": str(inside / "run")}}
    confine_paths(validate_run_config(raw), [inside])
    for files, field in (([str(outside)], "stages.r.files[0]"), ([str(inside / "ok.jsonl"), str(corpus / "*.jsonl")],
                                                                  "stages.r.files[1]")):
        raw["stages"][0]["files"] = files
        with pytest.raises(PathNotAllowed, match=field.replace("[", r"\[").replace("]", r"\]")):
            confine_paths(validate_run_config(raw), [inside])


def test_a_records_stage_in_a_mixture_needs_its_files(tmp_path):
    raw = {"stages": [{"name": "mix", "block_size": 64, "n_epochs": 1, "sources": [
        {"dataset_key": "roneneldan/TinyStories", "weight": 1},
        {"dataset_key": LOCAL_RECORDS, "weight": 1}]}]}
    with pytest.raises(ConfigError, match="local-records"):
        validate_run_config(raw)


@pytest.mark.slow  # a flows/curriculum.py process with its temporary Prefect server
def test_the_cli_prepares_a_records_stage_mixed_with_tinystories(corpus, tmp_path, hub_mirror):
    config = tmp_path / "records.yaml"
    config.write_text(f"""
stages:
  - name: mix
    block_size: 64
    n_epochs: 1
    sources:
      - {{name: stories, dataset_key: roneneldan/TinyStories, n_items: 300, weight: 1}}
      - {{name: books, dataset_key: local-records, files: ["{corpus}/part-*"], text_field: body, id_field: doc_id,
         weight: 1}}
""")
    data = tmp_path / "data"
    env = {**os.environ, "CURRICULUM_HUB_MIRROR": str(hub_mirror)}
    done = subprocess.run([sys.executable, str(ROOT / "flows" / "curriculum.py"), "--config", str(config),
                           "--prepare-only", "--data-dir", str(data)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for split in ("train", "val"):
        assert read_shard(data / f"{split}_mix.books_pretrain.bin").n_tokens > 0
        assert read_shard(data / f"{split}_mix.stories_pretrain.bin").n_tokens > 0
